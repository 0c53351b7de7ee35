"""Extension objects, created unattached; the app factory binds them with ``init_app``."""

from flask_cors import CORS
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from mlapi.accounts.database import Database
from mlapi.web.openapi import Api

api = Api()
cors = CORS()
db = Database()
jwt = JWTManager()
# Storage, strategy and headers are configured per app in mlapi.web.ratelimit.init_app.
limiter = Limiter(key_func=get_remote_address, in_memory_fallback_enabled=True)
