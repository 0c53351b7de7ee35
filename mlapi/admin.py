"""``/v1/admin``: user and key administration, for accounts with the admin role."""

from __future__ import annotations

import marshmallow as ma

from mlapi.auth import requires_auth
from mlapi.extensions import db
from mlapi.openapi import Blueprint
from mlapi.schemas import PASSWORD, TIER, USERNAME, PageArgsSchema, PaginationSchema, UserSchema, pagination
from mlapi.store import accounts, api_keys
from mlapi.store.models import User

blp = Blueprint("admin", __name__, url_prefix="/v1/admin", description="Administer users and keys (admins only).")


class NewUserSchema(ma.Schema):
    username = ma.fields.String(required=True, validate=USERNAME)
    password = ma.fields.String(required=True, load_only=True, validate=PASSWORD)
    tier = ma.fields.String(load_default="free", validate=TIER)
    is_admin = ma.fields.Boolean(load_default=False)
    email = ma.fields.Email(allow_none=True, validate=ma.validate.Length(max=254))
    full_name = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=128))


class UserPatchSchema(ma.Schema):
    tier = ma.fields.String(validate=TIER)
    disabled = ma.fields.Boolean()
    is_admin = ma.fields.Boolean()


class UserPageSchema(ma.Schema):
    data = ma.fields.List(ma.fields.Nested(UserSchema))
    pagination = ma.fields.Nested(PaginationSchema)


@blp.route("/users", methods=["GET"])
@requires_auth(blp, admin=True)
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, UserPageSchema)
def list_users(args: dict) -> dict:
    """All users, a page at a time (at most 100 a page)."""
    page, size = args["page"], args["page_size"]
    users, total = accounts.list_users(db.session, offset=(page - 1) * size, limit=size)
    return {"data": users, "pagination": pagination(page, size, total)}


@blp.route("/users", methods=["POST"])
@requires_auth(blp, admin=True)
@blp.arguments(NewUserSchema)
@blp.response(201, UserSchema)
@blp.alt_response(409, description="The username is taken.")
def create_user(body: dict) -> User:
    """Create a user."""
    return accounts.create_user(db.session, **body)


@blp.route("/users/<username>", methods=["PATCH"])
@requires_auth(blp, admin=True)
@blp.arguments(UserPatchSchema)
@blp.response(200, UserSchema)
@blp.alt_response(404, description="No such user.")
def update_user(body: dict, username: str) -> User:
    """Change a user's tier, disabled flag or admin role; applies on their next request."""
    return accounts.update_user(db.session, username, **body)


@blp.route("/users/<username>/api-keys/<int(max=2147483647):key_id>", methods=["DELETE"])
@requires_auth(blp, admin=True)
@blp.response(204)
@blp.alt_response(404, description="No such user, or no such key of theirs.")
def revoke_user_key(username: str, key_id: int) -> None:
    """Revoke one of a user's API keys."""
    api_keys.revoke_api_key(db.session, key_id, owner=accounts.get_user(db.session, username))
