"""``/v1/users``: the caller's own account."""

from __future__ import annotations

from mlapi.auth import current_account, requires_auth
from mlapi.extensions import db
from mlapi.openapi import Blueprint
from mlapi.schemas import UserSchema
from mlapi.store.models import User

blp = Blueprint("users", __name__, url_prefix="/v1/users", description="The caller's account.")


@blp.route("/me", methods=["GET"])
@requires_auth(blp)
@blp.response(200, UserSchema)
def me() -> User:
    """The account that the presented token or API key belongs to."""
    return db.session.get(User, current_account().id)
