"""`/v1/api-keys`: the caller's own API keys.

A password login manages every key of its account. A key (with the `keys:write` scope) sees,
creates and revokes only its own lineage: itself and the keys created from it, each holding no
more than its parent.
"""

from __future__ import annotations

import marshmallow as ma

from mlapi.accounts import api_keys
from mlapi.accounts.tables import DEFAULT_SCOPES, SCOPES, User
from mlapi.api.v1.schemas import ApiKeySchema
from mlapi.extensions import db
from mlapi.web.auth import current_account, current_actor, requires_auth
from mlapi.web.openapi import Blueprint
from mlapi.web.request_context import no_store

blp = Blueprint("api_keys", __name__, url_prefix="/v1/api-keys", description="Create, list and revoke API keys.")


class NewApiKeySchema(ma.Schema):
    label = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=100))
    expires_in_days = ma.fields.Integer(
        validate=ma.validate.Range(min=1, max=3650),
        allow_none=True,
        metadata={"description": "Never, by default; a key created by a key expires no later than it."},
    )
    scopes = ma.fields.List(
        ma.fields.String(validate=ma.validate.OneOf(SCOPES)),
        validate=ma.validate.Length(min=1, max=len(SCOPES)),
        metadata={
            "description": "What the key may do; `admin` for administrators' keys only. A key creating "
            "a key grants only scopes it holds. Default: "
            + ", ".join(f"`{scope}`" for scope in DEFAULT_SCOPES)
            + " (for a key's child, those of them its parent holds).",
            "uniqueItems": True,
        },
    )
    models = ma.fields.List(
        ma.fields.String(validate=ma.validate.Regexp(api_keys.MODEL_NAME.pattern + "|^\\*$")),
        validate=ma.validate.Length(min=1, max=api_keys.MAX_MODELS_PER_KEY),
        metadata={
            "description": "The models the key may use, or `*` for every model. Default: `*` (for a "
            "key's child, its parent's models).",
            "uniqueItems": True,
        },
    )


class CreatedApiKeySchema(ApiKeySchema):
    key = ma.fields.String(dump_only=True, metadata={"description": "Shown once; store it now."})


class ApiKeyListSchema(ma.Schema):
    data = ma.fields.List(ma.fields.Nested(ApiKeySchema))


def _owner() -> User:
    return db.session.get(User, current_account().id)


@blp.route("", methods=["GET"])
@requires_auth(blp, scope="keys:write")
@blp.response(200, ApiKeyListSchema)
def list_keys() -> dict:
    """The caller's keys, revoked ones included; never the keys themselves.

    An API key lists itself and the keys created from it."""
    return {"data": api_keys.list_api_keys(db.session, _owner(), within=current_account().api_key_id)}


@blp.route("", methods=["POST"])
@requires_auth(blp, scope="keys:write")
@blp.arguments(NewApiKeySchema)
@blp.response(201, CreatedApiKeySchema)
@blp.alt_response(409, description="The key making the request was revoked meanwhile.")
def create_key(body: dict) -> dict:
    """Create a key for the caller. The response holds the key; it cannot be shown again.

    A key created by an API key records it as its parent, holds a subset of its scopes and models
    (403 `insufficient_scope` or `model_not_allowed` otherwise), expires no later than it, and is
    revoked with it. A key created by a password login is revoked if that login's refresh token
    is ever used twice (a stolen session)."""
    no_store()
    record, key = api_keys.create_api_key(
        db.session,
        _owner(),
        body["label"],
        body.get("expires_in_days"),
        scopes=body.get("scopes"),
        models=body.get("models"),
        parent_key_id=current_account().api_key_id,
        login_session_id=current_account().login_session_id,
        actor=current_actor(),
    )
    return {**{name: getattr(record, name) for name in ApiKeySchema().fields}, "key": key}


@blp.route("/<int(max=2147483647):key_id>", methods=["DELETE"])
@requires_auth(blp, scope="keys:write")
@blp.response(204)
@blp.alt_response(404, description="No such key among the caller's keys (for an API key: its own lineage).")
def revoke_key(key_id: int) -> None:
    """Revoke one of the caller's keys, and every key created from it.

    Refused by every worker and host at once, or, if the change could not be broadcast (a `Warning`
    header then says so), within `MLAPI_CREDENTIAL_CACHE_TTL_S`. An API key may revoke only itself
    and the keys created from it."""
    api_keys.revoke_api_key(
        db.session, key_id, owner=_owner(), within=current_account().api_key_id, actor=current_actor()
    )
