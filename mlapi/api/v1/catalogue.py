"""`/v1/models`: what this server serves (OpenAI-style list, with versions and devices)."""

from __future__ import annotations

import marshmallow as ma

from mlapi.web.auth import current_account, requires_auth
from mlapi.web.openapi import Blueprint
from mlapi.web.runtime import engine
from mlapi.web.state import app_state

blp = Blueprint("models", __name__, url_prefix="/v1/models", description="The models and their versions.")


class ServingSchema(ma.Schema):
    max_batch_size = ma.fields.Integer()
    max_delay_ms = ma.fields.Float()
    timeout_s = ma.fields.Float()
    max_queue = ma.fields.Integer()


class ModelVersionSchema(ma.Schema):
    version = ma.fields.String(required=True)
    task = ma.fields.String(required=True)
    device = ma.fields.String(required=True)
    labels = ma.fields.List(ma.fields.String(), required=True)
    dimensions = ma.fields.Integer()
    max_tokens = ma.fields.Integer()
    quantization = ma.fields.String(allow_none=True)
    default_temperature = ma.fields.Float()
    deprecated = ma.fields.Date(
        allow_none=True, metadata={"description": "From this day (UTC) responses carry Deprecation and Sunset."}
    )
    sunset = ma.fields.Date(
        allow_none=True, metadata={"description": "From this day the version is refused (410) and never routed to."}
    )
    serving = ma.fields.Nested(ServingSchema, metadata={"description": "The batching this version is served with."})


class ModelSchema(ma.Schema):
    id = ma.fields.String(required=True)
    object = ma.fields.String(required=True)
    owned_by = ma.fields.String(required=True)
    name = ma.fields.String(required=True)
    task = ma.fields.String(required=True)
    description = ma.fields.String(required=True)
    latest = ma.fields.String(
        required=True,
        metadata={"description": "The version 'latest' resolves to (skipping versions past their sunset)."},
    )
    versions = ma.fields.List(ma.fields.Nested(ModelVersionSchema), required=True)
    routing = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Integer(),
        allow_none=True,
        metadata={
            "description": "How `latest` is shared out among the versions, sticky per account; null: not routed."
        },
    )


class ModelListSchema(ma.Schema):
    object = ma.fields.String(required=True)
    data = ma.fields.List(ma.fields.Nested(ModelSchema), required=True)


@blp.route("", methods=["GET"])
@requires_auth(blp, scope="models:read")
@blp.response(200, ModelListSchema)
def list_models() -> dict:
    """Every model the caller may use, with its versions, the one `latest` resolves to, and where each runs."""
    grant = current_account().grant
    models = [model for model in engine().catalog() if grant.allows_model(model["name"])]
    return {"object": "list", "data": [_with_routing(model) for model in models]}


@blp.route("/<name>", methods=["GET"])
@requires_auth(blp, scope="models:read", model=lambda name: name)
@blp.response(200, ModelSchema)
@blp.alt_response(404, description="No such model; the detail names the models that exist.")
def get_model(name: str) -> dict:
    """One model: its versions, labels, devices and options."""
    return _with_routing(engine().describe(name))


def _with_routing(model: dict) -> dict:
    return {**model, "routing": app_state().routes.weights(model["name"])}
