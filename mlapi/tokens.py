"""``/v1/token``: obtain (OAuth2 password form), refresh and revoke JWTs."""

from __future__ import annotations

from datetime import datetime, timezone

import marshmallow as ma
from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token, get_jwt

from mlapi.auth import SECURITY, unauthorized, verified_token_user
from mlapi.extensions import db
from mlapi.openapi import Blueprint
from mlapi.ratelimit import limit_by_account_or_ip, limit_logins
from mlapi.request_context import no_store
from mlapi.store import accounts
from mlapi.store.models import User
from mlapi.store.tokens import prune_revoked_tokens, revoke_token

blp = Blueprint("tokens", __name__, url_prefix="/v1/token", description="Obtain, refresh and revoke tokens.")


class LoginFormSchema(ma.Schema):
    """The OAuth2 password grant form (what OAuth2 clients and the seed's clients send)."""

    username = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    password = ma.fields.String(required=True, load_only=True, validate=ma.validate.Length(min=1, max=1024))
    grant_type = ma.fields.String(validate=ma.validate.Equal("password"))
    scope = ma.fields.String(validate=ma.validate.Length(max=1024))
    client_id = ma.fields.String(validate=ma.validate.Length(max=256))
    client_secret = ma.fields.String(load_only=True, validate=ma.validate.Length(max=256))


class TokenSchema(ma.Schema):
    access_token = ma.fields.String(required=True)
    token_type = ma.fields.String(required=True, metadata={"example": "bearer"})
    expires_in = ma.fields.Integer(required=True, metadata={"description": "Seconds the access token lives."})
    refresh_token = ma.fields.String(metadata={"description": "Only from POST /v1/token."})


def _access_token(user: User) -> dict:
    lifetime = current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]
    return {
        "access_token": create_access_token(identity=user),
        "token_type": "bearer",
        "expires_in": int(lifetime.total_seconds()),
    }


@blp.route("", methods=["POST"])
@blp.arguments(LoginFormSchema, location="form")
@blp.response(200, TokenSchema)
@blp.alt_response(401, description="Incorrect username or password, or a disabled account.")
@blp.alt_response(429, description="Too many logins for this username or from this address.")
@limit_logins
def login(form: dict) -> dict:
    """Exchange a username and password for an access token and a refresh token."""
    no_store()
    user = accounts.authenticate(db.session, form["username"], form["password"])
    if user is None:
        raise unauthorized("invalid_credentials", "Incorrect username or password.")
    if user.disabled:
        raise unauthorized("disabled_user", "The account is disabled.")
    prune_revoked_tokens(db.session)
    return {**_access_token(user), "refresh_token": create_refresh_token(identity=user)}


@blp.route("/refresh", methods=["POST"])
@blp.doc(security=[{"bearerAuth": []}])
@blp.response(200, TokenSchema)
@blp.alt_response(401, description="Missing, invalid, expired or revoked refresh token.")
@blp.alt_response(429, description="Too many requests from this address.")
@limit_by_account_or_ip()
def refresh() -> dict:
    """A new access token, for the refresh token sent as ``Authorization: Bearer``."""
    no_store()
    return _access_token(verified_token_user(refresh=True))


@blp.route("/revoke", methods=["POST"])
@blp.doc(security=SECURITY[:1])
@blp.response(204)
@blp.alt_response(401, description="Missing, invalid, expired or already revoked token.")
@blp.alt_response(429, description="Too many requests from this address.")
@limit_by_account_or_ip()
def revoke() -> None:
    """Revoke the token (access or refresh) sent as ``Authorization: Bearer``, for every worker at once."""
    verified_token_user(verify_type=False)
    claims = get_jwt()
    revoke_token(db.session, claims["jti"], datetime.fromtimestamp(claims["exp"], timezone.utc))
