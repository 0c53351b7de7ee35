"""`/v1/users`: the caller's own account."""

from __future__ import annotations

import marshmallow as ma

from mlapi.accounts import user_accounts
from mlapi.accounts.tables import User
from mlapi.api.v1.schemas import PASSWORD, UserSchema
from mlapi.extensions import db
from mlapi.web.auth import current_account, current_actor, requires_auth
from mlapi.web.openapi import Blueprint
from mlapi.web.ratelimit import limit_password_guesses

blp = Blueprint("users", __name__, url_prefix="/v1/users", description="The caller's account.")


class PasswordChangeSchema(ma.Schema):
    current_password = ma.fields.String(required=True, load_only=True, validate=ma.validate.Length(min=1, max=1024))
    new_password = ma.fields.String(required=True, load_only=True, validate=PASSWORD)
    revoke_api_keys = ma.fields.Boolean(
        load_default=False, metadata={"description": "Also revoke every API key of the account."}
    )


@blp.route("/me", methods=["GET"])
@requires_auth(blp)
@blp.response(200, UserSchema)
def me() -> User:
    """The account that the presented token or API key belongs to."""
    return db.session.get(User, current_account().id)


@blp.route("/me/password", methods=["POST"])
@requires_auth(blp, password_login=True, forbidden_also="the current password is wrong (wrong_password)")
@limit_password_guesses
@blp.arguments(PasswordChangeSchema)
@blp.response(204)
def change_password(body: dict) -> None:
    """Change the caller's password, ending every login session of the account.

    Every access and refresh token of the account, this request's included, is refused from now
    on; API keys stay valid unless `revoke_api_keys` is true. Every attempt counts against the
    login limit for this username and address (`MLAPI_LOGIN_LIMIT`)."""
    user_accounts.change_password(
        db.session,
        current_account().username,
        body["new_password"],
        current_password=body["current_password"],
        revoke_api_keys=body["revoke_api_keys"],
        actor=current_actor(),
    )
