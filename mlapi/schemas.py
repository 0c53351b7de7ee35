"""Schemas shared by more than one blueprint: users, API keys, page envelopes and input texts."""

from __future__ import annotations

import marshmallow as ma

from mlapi.config import TIERS
from mlapi.store.passwords import MAX_PASSWORD, MIN_PASSWORD

USERNAME = ma.validate.Regexp(r"^[A-Za-z0-9_.-]{3,64}$", error="3 to 64 letters, digits, '.', '_' or '-'.")
PASSWORD = ma.validate.Length(min=MIN_PASSWORD, max=MAX_PASSWORD)
TIER = ma.validate.OneOf(TIERS)

# Inference inputs, the same under /v1 and /v2.
MAX_TEXT = 5000
MAX_ITEMS = 100


def quota_cost(items: int | None) -> int:
    """What a request of ``items`` inputs costs against the quota: one per input, at least one.

    A request over ``MAX_ITEMS`` costs one: validation refuses it next, naming the real cap, and no
    model runs; charged in full it would meet the quota's message first (101 items on a 100/minute
    tier read "more than the whole quota").
    """
    return items if items is not None and 1 <= items <= MAX_ITEMS else 1


class Contains(ma.validate.Regexp):
    """Passes when the pattern matches anywhere, as JSON Schema's ``pattern`` does (``Regexp`` anchors
    at the start); the OpenAPI document shows the pattern."""

    def __call__(self, value: str) -> str:
        if self.regex.search(value) is None:
            raise ma.ValidationError(self._format_error(value))
        return value


# Python's whitespace (str.strip, str.isspace) spelled out: JSON Schema's \s (ECMA-262) is another
# set, and the documented pattern must accept exactly what the server accepts.
_WHITESPACE = r"\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK = Contains(f"[^{_WHITESPACE}]", error="Must not be blank.")


TEXT = [ma.validate.Length(min=1, max=MAX_TEXT), NOT_BLANK]
# The same rules as JSON Schema, for fields that marshmallow cannot describe itself.
TEXT_SCHEMA = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT, "pattern": NOT_BLANK.regex.pattern}


class UserSchema(ma.Schema):
    id = ma.fields.Integer(dump_only=True)
    username = ma.fields.String(dump_only=True)
    email = ma.fields.String(dump_only=True, allow_none=True)
    full_name = ma.fields.String(dump_only=True, allow_none=True)
    tier = ma.fields.String(dump_only=True, metadata={"enum": list(TIERS)})
    is_admin = ma.fields.Boolean(dump_only=True)
    disabled = ma.fields.Boolean(dump_only=True)
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
