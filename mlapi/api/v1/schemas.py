"""Schemas shared by more than one /v1 blueprint: users, API keys and page envelopes."""

from __future__ import annotations

import marshmallow as ma

from mlapi.accounts.passwords import MAX_PASSWORD, MIN_PASSWORD
from mlapi.config import TIERS

USERNAME = ma.validate.Regexp(r"^[A-Za-z0-9_.-]{3,64}$", error="3 to 64 letters, digits, '.', '_' or '-'.")
PASSWORD = ma.validate.Length(min=MIN_PASSWORD, max=MAX_PASSWORD)
TIER = ma.validate.OneOf(TIERS)


class UserSchema(ma.Schema):
    id = ma.fields.Integer(dump_only=True)
    username = ma.fields.String(dump_only=True)
    email = ma.fields.String(dump_only=True, allow_none=True)
    full_name = ma.fields.String(dump_only=True, allow_none=True)
    tier = ma.fields.String(dump_only=True, metadata={"enum": list(TIERS)})
    is_admin = ma.fields.Boolean(dump_only=True)
    disabled = ma.fields.Boolean(dump_only=True)
    monthly_quota = ma.fields.Integer(
        dump_only=True, allow_none=True, metadata={"description": "The account's own monthly quota; null: its tier's."}
    )
    rate_limit = ma.fields.String(
        dump_only=True, allow_none=True, metadata={"description": "The account's own rate limit; null: its tier's."}
    )
    created_at = ma.fields.DateTime(dump_only=True)


class ApiKeySchema(ma.Schema):
    """A key as listed: never the key itself."""

    id = ma.fields.Integer(dump_only=True)
    label = ma.fields.String(dump_only=True)
    prefix = ma.fields.String(dump_only=True, metadata={"description": "The key's first characters."})
    created_at = ma.fields.DateTime(dump_only=True)
    expires_at = ma.fields.DateTime(dump_only=True, allow_none=True)
    last_used_at = ma.fields.DateTime(dump_only=True, allow_none=True)
    revoked_at = ma.fields.DateTime(dump_only=True, allow_none=True)
    scopes = ma.fields.List(ma.fields.String(), dump_only=True)
    models = ma.fields.List(ma.fields.String(), dump_only=True, metadata={"description": "`*`: every model."})
    parent_key_id = ma.fields.Integer(
        dump_only=True, allow_none=True, metadata={"description": "The key that created this one; revoked with it."}
    )


class PageArgsSchema(ma.Schema):
    page = ma.fields.Integer(load_default=1, validate=ma.validate.Range(min=1, max=1_000_000))
    page_size = ma.fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=100))


class PaginationSchema(ma.Schema):
    page = ma.fields.Integer()
    page_size = ma.fields.Integer()
    total = ma.fields.Integer()
    pages = ma.fields.Integer()


def pagination(page: int, page_size: int, total: int) -> dict[str, int]:
    return {"page": page, "page_size": page_size, "total": total, "pages": -(-total // page_size)}
