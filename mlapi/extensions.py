"""Extension objects, created unattached; the app factory binds them with ``init_app``."""

from flask_cors import CORS
from flask_jwt_extended import JWTManager

from mlapi.openapi import Api
from mlapi.store.database import Database

api = Api()
cors = CORS()
db = Database()
jwt = JWTManager()
