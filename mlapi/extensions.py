"""Extension objects, created unattached; the app factory binds them with ``init_app``."""

from flask import current_app, has_app_context
from flask_cors import CORS
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from mlapi.accounts.database import Database
from mlapi.web.openapi import Api


def _announce_credential_change() -> None:
    """Hand a credential change to the app it happened in: its own hook, in its typed state."""
    if has_app_context():
        from mlapi.web.state import state_of  # the state imports what imports this module

        hook = state_of(current_app).on_credentials_changed
        if hook is not None:
            hook()


api = Api()
cors = CORS()
db = Database(on_credentials_changed=_announce_credential_change)
jwt = JWTManager()
# Storage, strategy and headers are configured per app in mlapi.web.ratelimit.init_app.
limiter = Limiter(key_func=get_remote_address, in_memory_fallback_enabled=True)
