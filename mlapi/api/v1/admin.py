"""`/v1/admin`: user and key administration, and its audit log, for accounts with the admin role."""

from __future__ import annotations

import marshmallow as ma

from mlapi.accounts import api_keys, audit, user_accounts
from mlapi.accounts.errors import InvalidValue
from mlapi.accounts.tables import User
from mlapi.api.v1.schemas import PASSWORD, TIER, USERNAME, PageArgsSchema, PaginationSchema, UserSchema, pagination
from mlapi.config import MAX_MONTHLY_QUOTA
from mlapi.extensions import db
from mlapi.web.auth import current_actor, requires_auth
from mlapi.web.openapi import Blueprint

blp = Blueprint(
    "admin",
    __name__,
    url_prefix="/v1/admin",
    description="Administer users and keys, read the audit log (admins only).",
)


class NewUserSchema(ma.Schema):
    username = ma.fields.String(required=True, validate=USERNAME)
    password = ma.fields.String(required=True, load_only=True, validate=PASSWORD)
    tier = ma.fields.String(load_default="free", validate=TIER)
    is_admin = ma.fields.Boolean(load_default=False)
    email = ma.fields.Email(allow_none=True, validate=ma.validate.Length(max=254))
    full_name = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=128))


def _rate_limit(value: str) -> None:
    try:
        user_accounts.check_rate_limit(value)
    except InvalidValue as exc:
        raise ma.ValidationError(str(exc)) from None


class UserPatchSchema(ma.Schema):
    tier = ma.fields.String(validate=TIER)
    disabled = ma.fields.Boolean()
    is_admin = ma.fields.Boolean()
    monthly_quota = ma.fields.Integer(
        strict=True,
        allow_none=True,
        validate=ma.validate.Range(0, MAX_MONTHLY_QUOTA),
        metadata={"description": "Items per calendar month (UTC) for this account; null: its tier's."},
    )
    rate_limit = ma.fields.String(
        allow_none=True,
        validate=[ma.validate.Length(min=1, max=user_accounts.MAX_RATE_LIMIT_LENGTH), _rate_limit],
        metadata={"description": "Such as `500/minute`, for this account; null: its tier's.", "example": "500/minute"},
    )


class UserPageSchema(ma.Schema):
    data = ma.fields.List(ma.fields.Nested(UserSchema))
    pagination = ma.fields.Nested(PaginationSchema)


class AuditQuerySchema(PageArgsSchema):
    action = ma.fields.String(validate=ma.validate.OneOf(audit.ACTIONS))
    actor = ma.fields.String(validate=ma.validate.Length(min=1, max=128))
    target = ma.fields.String(validate=ma.validate.Length(min=1, max=64))


class AuditEventSchema(ma.Schema):
    id = ma.fields.Integer(dump_only=True)
    occurred_at = ma.fields.DateTime(dump_only=True)
    actor = ma.fields.String(dump_only=True, metadata={"description": "A username, or cli:<OS user>."})
    action = ma.fields.String(dump_only=True, metadata={"enum": list(audit.ACTIONS)})
    target = ma.fields.String(dump_only=True, metadata={"description": "The username acted on."})
    source = ma.fields.String(dump_only=True, metadata={"enum": ["api", "cli"]})
    actor_key_id = ma.fields.Integer(
        dump_only=True,
        allow_none=True,
        metadata={"description": "The API key the actor used; null for a password login or the CLI."},
    )
    request_id = ma.fields.String(dump_only=True, allow_none=True)
    ip_address = ma.fields.String(dump_only=True, allow_none=True)
    detail = ma.fields.Dict(dump_only=True, allow_none=True, metadata={"description": "What changed; never a secret."})


class AuditPageSchema(ma.Schema):
    data = ma.fields.List(ma.fields.Nested(AuditEventSchema))
    pagination = ma.fields.Nested(PaginationSchema)


@blp.route("/users", methods=["GET"])
@requires_auth(blp, admin=True)
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, UserPageSchema)
def list_users(args: dict) -> dict:
    """All users, a page at a time (at most 100 a page)."""
    page, size = args["page"], args["page_size"]
    users, total = user_accounts.list_users(db.session, offset=(page - 1) * size, limit=size)
    return {"data": users, "pagination": pagination(page, size, total)}


@blp.route("/users", methods=["POST"])
@requires_auth(blp, admin=True)
@blp.arguments(NewUserSchema)
@blp.response(201, UserSchema)
@blp.alt_response(409, description="The username is taken.")
def create_user(body: dict) -> User:
    """Create a user."""
    return user_accounts.create_user(db.session, **body, actor=current_actor())


@blp.route("/users/<username>", methods=["PATCH"])
@requires_auth(blp, admin=True)
@blp.arguments(UserPatchSchema)
@blp.response(200, UserSchema)
@blp.alt_response(404, description="No such user.")
def update_user(body: dict, username: str) -> User:
    """Change a user's tier, disabled flag, admin role, monthly quota or rate limit; applies on their
    next request, on every worker.

    Disabling ends every login session of the user for good; their API keys are refused while the
    account is disabled."""
    return user_accounts.update_user(db.session, username, **body, actor=current_actor())


@blp.route("/users/<username>/api-keys/<int(max=2147483647):key_id>", methods=["DELETE"])
@requires_auth(blp, admin=True)
@blp.response(204)
@blp.alt_response(404, description="No such user, or no such key of theirs.")
def revoke_user_key(username: str, key_id: int) -> None:
    """Revoke one of a user's API keys."""
    owner = user_accounts.get_user(db.session, username)
    api_keys.revoke_api_key(db.session, key_id, owner=owner, actor=current_actor())


@blp.route("/audit", methods=["GET"])
@requires_auth(blp, admin=True)
@blp.arguments(AuditQuerySchema, location="query")
@blp.response(200, AuditPageSchema)
def list_audit_events(args: dict) -> dict:
    """The audit log of administrative actions, newest first, optionally filtered by action, actor or target."""
    page, size = args.pop("page"), args.pop("page_size")
    events, total = audit.list_events(db.session, **args, offset=(page - 1) * size, limit=size)
    return {"data": events, "pagination": pagination(page, size, total)}
