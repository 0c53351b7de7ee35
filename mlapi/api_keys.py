"""``/v1/api-keys``: the caller's own API keys."""

from __future__ import annotations

import marshmallow as ma

from mlapi.auth import current_account, current_actor, requires_auth
from mlapi.extensions import db
from mlapi.openapi import Blueprint
from mlapi.request_context import no_store
from mlapi.schemas import ApiKeySchema
from mlapi.store import api_keys
from mlapi.store.models import User

blp = Blueprint("api_keys", __name__, url_prefix="/v1/api-keys", description="Create, list and revoke API keys.")


class NewApiKeySchema(ma.Schema):
    label = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=100))
    expires_in_days = ma.fields.Integer(validate=ma.validate.Range(min=1, max=3650), allow_none=True)


class CreatedApiKeySchema(ApiKeySchema):
    key = ma.fields.String(dump_only=True, metadata={"description": "Shown once; store it now."})


class ApiKeyListSchema(ma.Schema):
    data = ma.fields.List(ma.fields.Nested(ApiKeySchema))


def _owner() -> User:
    return db.session.get(User, current_account().id)


@blp.route("", methods=["GET"])
@requires_auth(blp)
@blp.response(200, ApiKeyListSchema)
def list_keys() -> dict:
    """The caller's keys, revoked ones included; never the keys themselves."""
    return {"data": api_keys.list_api_keys(db.session, _owner())}


@blp.route("", methods=["POST"])
@requires_auth(blp)
@blp.arguments(NewApiKeySchema)
@blp.response(201, CreatedApiKeySchema)
def create_key(body: dict) -> dict:
    """Create a key for the caller. The response holds the key; it cannot be shown again."""
    no_store()
    record, key = api_keys.create_api_key(
        db.session, _owner(), body["label"], body.get("expires_in_days"), actor=current_actor()
    )
    return {**{name: getattr(record, name) for name in ApiKeySchema().fields}, "key": key}


@blp.route("/<int(max=2147483647):key_id>", methods=["DELETE"])
@requires_auth(blp)
@blp.response(204)
@blp.alt_response(404, description="No such key among the caller's keys.")
def revoke_key(key_id: int) -> None:
    """Revoke one of the caller's keys: refused by every worker and host at once, or, if the change
    could not be broadcast (a `Warning` header then says so), within `MLAPI_CREDENTIAL_CACHE_TTL_S`."""
    api_keys.revoke_api_key(db.session, key_id, owner=_owner(), actor=current_actor())
