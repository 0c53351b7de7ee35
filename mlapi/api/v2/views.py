"""`/v2`: the Open Inference Protocol (KServe V2, as Triton, MLServer and TorchServe speak it).

Thin views over the same serving engine, authentication, limits and metrics as `/v1`; the
protocol's codec lives in `mlapi.api.v2.codec`. Errors keep the envelope's fields, but `error`
carries the message, as the protocol's clients expect (`{"error": "..."}`), and `code` the
machine-readable name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import marshmallow as ma
from flask import Response, g, request

from mlapi import __version__
from mlapi.api.inputs import INFERENCE_ERRORS, MAX_ITEMS, check_text, quota_cost
from mlapi.api.v2 import codec
from mlapi.serving.store import LATEST
from mlapi.serving.types import PredictInput
from mlapi.web import readiness
from mlapi.web.auth import requires_auth
from mlapi.web.errors import APIError, register_protocol_errors
from mlapi.web.metering import meter
from mlapi.web.model_lifecycle import note_served, routed_version
from mlapi.web.openapi import Blueprint
from mlapi.web.request_context import add_access_log_fields
from mlapi.web.runtime import cache_scope, engine, registry, uses_models

if TYPE_CHECKING:
    from mlapi.serving.handlers import Handler

blp = Blueprint(
    "v2",
    __name__,
    url_prefix="/v2",
    description="The Open Inference Protocol (KServe V2): server and model metadata, health, inference.",
)

SERVER_NAME = "mlapi"
HEADER_LENGTH = "Inference-Header-Content-Length"
BODY_TYPES = (None, "", "application/json", "application/octet-stream")


class ServerMetadataSchema(ma.Schema):
    name = ma.fields.String(required=True)
    version = ma.fields.String(required=True)
    extensions = ma.fields.List(ma.fields.String(), required=True)


class ServerLiveSchema(ma.Schema):
    live = ma.fields.Boolean(required=True)


class ServerReadySchema(ma.Schema):
    ready = ma.fields.Boolean(required=True)


class ModelReadySchema(ServerReadySchema):
    name = ma.fields.String(required=True)
    version = ma.fields.String(required=True)


class TensorMetadataSchema(ma.Schema):
    name = ma.fields.String(required=True)
    datatype = ma.fields.String(required=True, metadata={"enum": ["BYTES", "FP32"]})
    shape = ma.fields.List(ma.fields.Integer(), required=True, metadata={"description": "-1: any length."})


class ModelMetadataSchema(ma.Schema):
    name = ma.fields.String(required=True)
    versions = ma.fields.List(ma.fields.String(), required=True)
    platform = ma.fields.String(required=True)
    inputs = ma.fields.List(ma.fields.Nested(TensorMetadataSchema), required=True)
    outputs = ma.fields.List(ma.fields.Nested(TensorMetadataSchema), required=True)


class InferTensorSchema(TensorMetadataSchema):
    data = ma.fields.Raw(metadata={"description": "Row-major elements; absent when sent as binary data."})
    parameters = ma.fields.Dict(metadata={"description": "binary_data_size: bytes of this tensor after the JSON."})


class RequestedOutputSchema(ma.Schema):
    name = ma.fields.String(required=True, metadata={"enum": ["label", "confidence", "embedding"]})
    parameters = ma.fields.Dict(metadata={"description": "binary_data: send this output as binary data."})


class InferRequestSchema(ma.Schema):
    id = ma.fields.String()
    parameters = ma.fields.Dict(
        metadata={"description": "temperature and max_tokens (classifiers); binary_data_output."}
    )
    inputs = ma.fields.List(ma.fields.Nested(InferTensorSchema), required=True, metadata={"maxItems": 1})
    outputs = ma.fields.List(ma.fields.Nested(RequestedOutputSchema))


class InferResponseSchema(ma.Schema):
    model_name = ma.fields.String(required=True)
    model_version = ma.fields.String(required=True)
    id = ma.fields.String()
    parameters = ma.fields.Dict()
    outputs = ma.fields.List(ma.fields.Nested(InferTensorSchema), required=True)


MODEL_ERRORS = {404: INFERENCE_ERRORS[404]}
PROTOCOL_ERRORS = {
    **INFERENCE_ERRORS,
    400: "The request breaks the protocol or the model's signature; 'error' says how.",
    415: "The body is neither JSON nor binary tensor data.",
    422: "The request holds more texts than the account's whole quota (exceeds_quota).",
}


@blp.route("", methods=["GET"])
@blp.response(200, ServerMetadataSchema)
def server_metadata() -> dict:
    """Server metadata: name, version and the protocol extensions it supports."""
    return {"name": SERVER_NAME, "version": __version__, "extensions": codec.EXTENSIONS}


@blp.route("/health/live", methods=["GET"])
@blp.response(200, ServerLiveSchema)
def live() -> dict:
    """Liveness: the server answers (like `/health`)."""
    return {"live": True}


@blp.route("/health/ready", methods=["GET"])
@blp.response(200, ServerReadySchema)
@blp.alt_response(503, description="Not ready; 'checks' says which dependency failed.")
def ready():  # noqa: ANN201 (a dict or an error response)
    """Readiness: the database, Redis (if configured) and the models are usable (like `/ready`)."""
    failure = readiness.not_ready_response(readiness.run_checks(), ready=False)
    if failure is not None:
        return failure
    return {"ready": True}


@blp.route("/models/<name>", methods=["GET"], endpoint="model_metadata")
@blp.route("/models/<name>/versions/<version>", methods=["GET"], endpoint="model_version_metadata")
@requires_auth(blp, scope="models:read", model=lambda name, **_: name)
@blp.response(200, ModelMetadataSchema)
@blp.alt_responses(MODEL_ERRORS)
def model_metadata(name: str, version: str | None = None) -> dict:
    """A model's metadata: its versions and the name, datatype and shape of each input and output."""
    handler = registry().resolve(name, version or LATEST)
    model_signature = _signature(handler)
    return {
        "name": name,
        "versions": [handler.manifest.version] if version else registry().store.versions(name),
        "platform": "pytorch",
        "inputs": codec.tensor_metadata(model_signature.inputs),
        "outputs": codec.tensor_metadata(model_signature.outputs),
    }


@blp.route("/models/<name>/ready", methods=["GET"], endpoint="model_ready")
@blp.route("/models/<name>/versions/<version>/ready", methods=["GET"], endpoint="model_version_ready")
@requires_auth(blp, scope="models:read", model=lambda name, **_: name)
@blp.response(200, ModelReadySchema)
@blp.alt_responses(MODEL_ERRORS)
@blp.alt_response(503, description="The model is loaded but its runner has stopped.")
def model_ready(name: str, version: str | None = None) -> dict:
    """Whether the model (version) is loaded and its runner is serving."""
    serving = engine()  # once: a reload may switch it meanwhile
    manifest = serving.registry.resolve(name, version or LATEST).manifest
    if not serving.batchers[manifest.id].alive:
        raise APIError(503, f"model {manifest.id} is loaded but not serving", error="model_not_ready")
    return {"name": name, "version": manifest.version, "ready": True}


def _raw_request() -> codec.RawRequest:
    """The request body's JSON, parsed once: the quota's cost and the view both need it."""
    if "oip_raw_request" not in g:
        g.oip_raw_request = codec.read_body(request.get_data(cache=True), _header_length())
    return g.oip_raw_request


def _requested_items() -> int:
    """What an inference request costs against the quota: the texts its input declares (at least 1).

    A body it cannot read costs one (requires_auth); the view reports the body's problem itself.
    """
    if "oip_cost" not in g:
        g.oip_cost = quota_cost(_raw_request().declared_texts(MAX_ITEMS))
    return g.oip_cost


@blp.route("/models/<name>/infer", methods=["POST"], endpoint="infer")
@blp.route("/models/<name>/versions/<version>/infer", methods=["POST"], endpoint="infer_version")
@uses_models
@requires_auth(blp, scope="inference", model=lambda name, **_: name, cost=_requested_items, metered=True)
@blp.doc(
    requestBody={
        "required": True,
        "description": (
            "JSON; or, with the Inference-Header-Content-Length header, JSON followed by binary tensor data."
        ),
        "content": {"application/json": {"schema": InferRequestSchema}},
    }
)
@blp.response(200, InferResponseSchema)
@blp.alt_responses(PROTOCOL_ERRORS)
def infer(name: str, version: str | None = None) -> Response:
    """Run inference: a `BYTES` input `text` of 1 to 100 strings, batched with concurrent requests."""
    if request.mimetype not in BODY_TYPES:
        raise APIError(415, f"Expected application/json or binary tensor data, got {request.mimetype}.")
    handler = registry().resolve(name, routed_version(name, version or LATEST))
    model_signature = _signature(handler)
    try:
        infer_request = codec.decode_request(
            _raw_request(), model_signature, max_items=MAX_ITEMS, validate_text=check_text
        )
        if "predict" in handler.capabilities:
            options = codec.predict_options(infer_request.parameters)
    except codec.ProtocolError as exc:
        raise APIError(400, str(exc), error="invalid_request") from None
    if "predict" in handler.capabilities:
        items = [PredictInput(text.strip(), **options) for text in infer_request.texts]
        outcome = engine().predict(name, handler.manifest.version, items, cache_scope=cache_scope())
        meter("v2", outcome)
        count = len(outcome.predictions)
        outputs = {
            "label": ("BYTES", [count], [p.label for p in outcome.predictions]),
            "confidence": ("FP32", [count], [p.confidence for p in outcome.predictions]),
        }
        manifest, model_ms = outcome.manifest, outcome.model_ms
    else:
        embedded = engine().embed(name, handler.manifest.version, infer_request.texts)
        meter("v2", embedded)
        vectors = [e.vector for e in embedded.embeddings]
        outputs = {"embedding": ("FP32", [len(vectors), len(vectors[0])], vectors)}
        manifest, model_ms = embedded.manifest, embedded.model_ms
    add_access_log_fields(model=manifest.name, model_version=manifest.version)
    note_served(manifest)
    body, header_length = codec.encode_response(
        manifest.name, manifest.version, infer_request, outputs, {"latency_ms": round(model_ms, 3)}
    )
    response = Response(body, content_type="application/json" if header_length is None else "application/octet-stream")
    if header_length is not None:
        response.headers[HEADER_LENGTH] = str(header_length)
    return response


def _signature(handler: Handler) -> codec.Signature:
    return codec.signature(handler.capabilities, handler.describe().get("dimensions"))


def _header_length() -> int | None:
    value = request.headers.get(HEADER_LENGTH)
    if value is None:
        return None
    # ASCII digits only (str.isdigit also takes "²"), and few of them: int() of thousands of digits raises.
    if not (value.isascii() and value.isdigit() and len(value) <= 12):
        raise APIError(400, f"{HEADER_LENGTH} must be a whole number of bytes", error="invalid_request")
    return int(value)


def init_app(app) -> None:  # noqa: ANN001 (a Flask app)
    register_protocol_errors(app, blp.url_prefix)
