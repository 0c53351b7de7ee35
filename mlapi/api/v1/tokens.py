"""`/v1/token`: obtain (OAuth2 password form), refresh (rotating) and revoke JWTs.

Each login starts a login session (mlapi.accounts.sessions) whose id every token carries as `sid`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import marshmallow as ma
from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token, get_jwt

from mlapi.accounts import sessions, user_accounts
from mlapi.accounts.revoked_tokens import prune_revoked_tokens, revoke_token
from mlapi.accounts.tables import User, utcnow
from mlapi.extensions import db
from mlapi.web.auth import SECURITY, actor_of, unauthorized, verified_token_user
from mlapi.web.openapi import Blueprint
from mlapi.web.ratelimit import limit_by_account_or_ip, limit_logins
from mlapi.web.request_context import no_store

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
    refresh_token = ma.fields.String(
        metadata={"description": "The next refresh token; the one presented to POST /v1/token/refresh is spent."}
    )


def issue_tokens(user: User, issued: sessions.Issued) -> dict:
    """An access token and the session's next refresh token, neither outliving the login session."""
    claims = {"sid": issued.session_id}
    remaining = issued.expires_at - utcnow()
    access_lifetime = min(current_app.config["JWT_ACCESS_TOKEN_EXPIRES"], remaining)
    return {
        "access_token": create_access_token(identity=user, additional_claims=claims, expires_delta=access_lifetime),
        "token_type": "bearer",
        "expires_in": int(access_lifetime.total_seconds()),
        "refresh_token": create_refresh_token(
            identity=user, additional_claims={**claims, "jti": issued.refresh_jti}, expires_delta=remaining
        ),
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
    user = user_accounts.authenticate(db.session, form["username"], form["password"])
    if user is None:
        raise unauthorized("invalid_credentials", "Incorrect username or password.")
    if user.disabled:
        raise unauthorized("disabled_user", "The account is disabled.")
    prune_revoked_tokens(db.session)
    sessions.prune(db.session)
    try:
        issued = sessions.start(db.session, user, current_app.config["JWT_REFRESH_TOKEN_EXPIRES"])
    except sessions.SessionEnded as exc:
        raise unauthorized("invalid_credentials", str(exc)) from None
    return issue_tokens(user, issued)


@blp.route("/refresh", methods=["POST"])
@blp.doc(security=[{"bearerAuth": []}])
@blp.response(200, TokenSchema)
@blp.alt_response(
    401,
    description="Missing, invalid, expired or revoked refresh token; or one already spent "
    "(refresh_token_reused), which ends its login session.",
)
@blp.alt_response(429, description="Too many requests from this address.")
@limit_by_account_or_ip()
def refresh() -> dict:
    """Exchange the refresh token for an access token and the next refresh token.

    Send the refresh token as `Authorization: Bearer`. It is spent: presenting it again ends the
    whole login session (`refresh_token_reused`), since a copy of it must exist."""
    no_store()
    user = verified_token_user(refresh=True)
    claims = get_jwt()
    try:
        issued = sessions.rotate(
            db.session, claims["sid"], claims["jti"], username=user.username, actor=actor_of(user.username)
        )
    except sessions.RefreshTokenReused as exc:
        raise unauthorized("refresh_token_reused", str(exc)) from None
    except sessions.SessionEnded as exc:
        raise unauthorized("revoked_token", str(exc)) from None
    return issue_tokens(user, issued)


@blp.route("/revoke", methods=["POST"])
@blp.doc(security=SECURITY[:1])
@blp.response(204)
@blp.alt_response(401, description="Missing, invalid, expired or already revoked token.")
@blp.alt_response(429, description="Too many requests from this address.")
@limit_by_account_or_ip()
def revoke() -> None:
    """Revoke the token sent as `Authorization: Bearer`, for every worker at once.

    A refresh token ends its whole login session (a logout): the access tokens issued from it are
    refused too."""
    verified_token_user(verify_type=False)
    claims = get_jwt()
    if claims["type"] == "refresh":
        sessions.end(db.session, claims["sid"], sessions.EndReason.LOGOUT)
    else:
        revoke_token(db.session, claims["jti"], datetime.fromtimestamp(claims["exp"], UTC))
