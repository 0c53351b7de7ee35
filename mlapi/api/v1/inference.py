"""`/v1/predict`, `/v1/predict/batch` and `/v1/embeddings`: thin views over the serving core."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime

import marshmallow as ma
import numpy as np
from flask import g, request

from mlapi.api.inputs import INFERENCE_ERRORS, MAX_ITEMS, NOT_BLANK, TEXT, TEXT_SCHEMA, quota_cost
from mlapi.serving.manifest import Manifest
from mlapi.serving.store import LATEST
from mlapi.serving.types import PredictInput
from mlapi.web.auth import requires_auth
from mlapi.web.errors import field_error
from mlapi.web.metering import meter
from mlapi.web.model_lifecycle import note_served, routed_version
from mlapi.web.openapi import Blueprint
from mlapi.web.request_context import add_access_log_fields
from mlapi.web.runtime import cache_scope, engine, uses_models
from mlapi.web.state import app_state

blp = Blueprint("inference", __name__, url_prefix="/v1", description="Predictions and embeddings.")

DEFAULT_PREDICT_MODEL = "sentiment"
MAX_LABELS = 20
MAX_LABEL_LENGTH = 100
DEFAULT_EMBEDDING_MODEL = "minilm"


def _unique(values: list) -> None:
    if len(set(values)) != len(values):
        raise ma.ValidationError("Labels must not repeat.")


class _ModelArgs(ma.Schema):
    model = ma.fields.String(validate=ma.validate.Length(min=1, max=64))
    model_version = ma.fields.String(load_default="latest", validate=ma.validate.Length(min=1, max=64))


class _PredictOptions(_ModelArgs):
    temperature = ma.fields.Float(
        allow_nan=False, validate=ma.validate.Range(0, 2), metadata={"description": "Softmax temperature."}
    )
    max_tokens = ma.fields.Integer(
        strict=True, validate=ma.validate.Range(1, 2048), metadata={"description": "Truncates the model input."}
    )
    labels = ma.fields.List(
        ma.fields.String(validate=[ma.validate.Length(min=1, max=MAX_LABEL_LENGTH), NOT_BLANK]),
        validate=[ma.validate.Length(min=2, max=MAX_LABELS), _unique],
        metadata={
            "description": "Zero-shot: classify into these labels instead of the model's own.",
            "uniqueItems": True,
        },
    )


class PredictRequestSchema(_PredictOptions):
    text = ma.fields.String(required=True, validate=TEXT, metadata={"example": "The support team fixed it in minutes."})

    @ma.post_load
    def strip(self, data: dict, **_: object) -> dict:
        return {**data, "text": data["text"].strip()}


class BatchRequestSchema(_PredictOptions):
    inputs = ma.fields.List(
        ma.fields.String(validate=TEXT), required=True, validate=ma.validate.Length(min=1, max=MAX_ITEMS)
    )

    @ma.post_load
    def strip(self, data: dict, **_: object) -> dict:
        return {**data, "inputs": [text.strip() for text in data["inputs"]]}


class StringOrStrings(ma.fields.Field):
    """OpenAI's `input`: one string or a list of strings."""

    def _deserialize(self, value, attr, data, **kwargs):  # noqa: ANN001, ANN003, ANN202 (marshmallow's signature)
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise ma.ValidationError("Must be a string or a list of strings.")
        if not 1 <= len(items) <= MAX_ITEMS:
            raise ma.ValidationError(f"Must hold 1 to {MAX_ITEMS} strings.")
        for item in items:
            for validate in TEXT:  # the same rules as /v1/predict's text
                validate(item)
        return items


class EmbeddingRequestSchema(_ModelArgs):
    input = StringOrStrings(
        required=True,
        metadata={
            "oneOf": [TEXT_SCHEMA, {"type": "array", "items": TEXT_SCHEMA, "minItems": 1, "maxItems": MAX_ITEMS}]
        },
    )
    encoding_format = ma.fields.String(load_default="float", validate=ma.validate.OneOf(["float", "base64"]))
    dimensions = ma.fields.Integer(strict=True, validate=ma.validate.Range(min=1))
    user = ma.fields.String(validate=ma.validate.Length(max=256))


class PredictionSchema(ma.Schema):
    result = ma.fields.String(required=True, metadata={"description": "The predicted label."})
    confidence = ma.fields.Float(required=True)
    scores = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Float(), required=True)


class PredictResponseSchema(PredictionSchema):
    request_id = ma.fields.String(required=True)
    cached = ma.fields.Boolean(required=True, metadata={"description": "Served from the prediction cache."})
    latency_ms = ma.fields.Float(required=True, metadata={"description": "Time spent in the model."})
    model = ma.fields.String(required=True)
    model_version = ma.fields.String(required=True, metadata={"description": "The resolved version."})
    timestamp = ma.fields.DateTime(required=True)


class BatchPredictionSchema(PredictionSchema):
    index = ma.fields.Integer(required=True)
    cached = ma.fields.Boolean(required=True)


class BatchResponseSchema(ma.Schema):
    request_id = ma.fields.String(required=True)
    predictions = ma.fields.List(ma.fields.Nested(BatchPredictionSchema), required=True)
    count = ma.fields.Integer(required=True)
    latency_ms = ma.fields.Float(required=True)
    model = ma.fields.String(required=True)
    model_version = ma.fields.String(required=True)


class EmbeddingSchema(ma.Schema):
    object = ma.fields.String(required=True)
    index = ma.fields.Integer(required=True)
    embedding = ma.fields.Raw(required=True, metadata={"description": "Floats, or base64 of little-endian float32."})


class UsageSchema(ma.Schema):
    prompt_tokens = ma.fields.Integer(required=True)
    total_tokens = ma.fields.Integer(required=True)


class EmbeddingResponseSchema(ma.Schema):
    object = ma.fields.String(required=True)
    data = ma.fields.List(ma.fields.Nested(EmbeddingSchema), required=True)
    model = ma.fields.String(required=True)
    model_version = ma.fields.String(required=True)
    usage = ma.fields.Nested(UsageSchema, required=True)


def _json_body() -> dict:
    """The body as the quota's cost sees it: {} unless it is a readable JSON object. Never raises: the
    cost runs inside the limiter, which takes any error for a storage outage (the view reports the
    body's problem itself)."""
    try:
        body = request.get_json(silent=True) if request.is_json else None
    except Exception:  # noqa: BLE001 (a client that hangs up, a chunked body over the limit)
        return {}
    return body if isinstance(body, dict) else {}


def _items_in_body(field: str) -> int:
    """One per input (at least one, whatever the body)."""
    value = _json_body().get(field)
    return quota_cost(len(value) if isinstance(value, list) else None)


def _labels_to_pay(body: dict) -> list[str]:
    """The request's own labels that this account has not paid for on this worker: each costs one.

    Embedding a label's descriptions (four short texts) runs in the shared runner and costs about
    what one input does. What was paid for is remembered per account, never shared between accounts:
    the price never depends on other tenants' traffic, so it cannot tell one what labels another
    used. The model's own labels are free (embedded at load); a request the validator will refuse
    (bad labels) pays for none.
    """
    labels, model = body.get("labels"), body.get("model") or DEFAULT_PREDICT_MODEL
    valid = (
        isinstance(labels, list)
        and 2 <= len(labels) <= MAX_LABELS
        and len(set(map(str, labels))) == len(labels)
        and all(isinstance(x, str) and 1 <= len(x) <= MAX_LABEL_LENGTH and x.strip() for x in labels)
        and isinstance(model, str)
    )
    if not valid or g.get("account") is None:
        return []
    # An unknown model or version raises: the request then costs one, and the view answers 404.
    own = set(engine().registry.resolve(model, body.get("model_version") or LATEST).manifest.labels)
    return [label for label in app_state().paid_labels.unpaid(g.account.id, model, labels) if label not in own]


def _named_model(default: str) -> Callable[..., object]:
    """The model a request body names (the endpoint's default when it names none), for the key's model check."""
    return lambda **_: _json_body().get("model") or default


def _predict_cost() -> int:
    return 1 + len(_labels_to_pay(_json_body()))


def _batch_cost() -> int:
    return _items_in_body("inputs") + len(_labels_to_pay(_json_body()))


def _paid_for_labels(args: dict) -> None:
    """After a successful prediction: this account's labels are paid for on this worker."""
    if args.get("labels"):
        app_state().paid_labels.paid(g.account.id, args.get("model") or DEFAULT_PREDICT_MODEL, list(args["labels"]))


def _model(args: dict, default: str) -> tuple[str, str]:
    """The model and version that serve this request (``latest`` routed by the model's weights)."""
    name = args.get("model") or default
    return name, routed_version(name, args["model_version"])


def _served_by(manifest: Manifest) -> dict:
    add_access_log_fields(model=manifest.name, model_version=manifest.version)
    note_served(manifest)
    return {"model": manifest.name, "model_version": manifest.version}


def _options(args: dict) -> dict:
    labels = args.get("labels")
    return {
        "labels": tuple(labels) if labels else None,
        "temperature": args.get("temperature"),
        "max_tokens": args.get("max_tokens"),
    }


@blp.route("/predict", methods=["POST"])
@uses_models
@requires_auth(blp, scope="inference", model=_named_model(DEFAULT_PREDICT_MODEL), cost=_predict_cost, metered=True)
@blp.arguments(PredictRequestSchema)
@blp.response(200, PredictResponseSchema)
@blp.alt_responses(INFERENCE_ERRORS)
def predict(args: dict) -> dict:
    """Classify one text (sentiment by default; any labels zero-shot). Batched with concurrent requests.

    Costs one, plus one per label of your own that your account has not used on the serving worker
    before (embedding its descriptions is work too)."""
    name, version = _model(args, DEFAULT_PREDICT_MODEL)
    outcome = engine().predict(name, version, [PredictInput(args["text"], **_options(args))], cache_scope=cache_scope())
    meter("predict", outcome)
    _paid_for_labels(args)
    (prediction,) = outcome.predictions
    return {
        "request_id": g.request_id,
        "result": prediction.label,
        "confidence": prediction.confidence,
        "scores": prediction.scores,
        "cached": outcome.cached[0],
        "latency_ms": round(outcome.model_ms, 3),
        **_served_by(outcome.manifest),
        "timestamp": datetime.now(UTC),
    }


@blp.route("/predict/batch", methods=["POST"])
@uses_models
@requires_auth(blp, scope="inference", model=_named_model(DEFAULT_PREDICT_MODEL), cost=_batch_cost, metered=True)
@blp.arguments(BatchRequestSchema)
@blp.response(200, BatchResponseSchema)
@blp.alt_responses(INFERENCE_ERRORS)
def predict_batch(args: dict) -> dict:
    """Classify up to 100 texts in one batched forward pass; results in input order. Costs one per input,
    plus one per label of your own that your account has not used on the serving worker before."""
    options = _options(args)
    items = [PredictInput(text, **options) for text in args["inputs"]]
    name, version = _model(args, DEFAULT_PREDICT_MODEL)
    outcome = engine().predict(name, version, items, cache_scope=cache_scope())
    meter("batch", outcome)
    _paid_for_labels(args)
    return {
        "request_id": g.request_id,
        "predictions": [
            {"index": i, "result": p.label, "confidence": p.confidence, "scores": p.scores, "cached": hit}
            for i, (p, hit) in enumerate(zip(outcome.predictions, outcome.cached, strict=True))
        ],
        "count": len(outcome.predictions),
        "latency_ms": round(outcome.model_ms, 3),
        **_served_by(outcome.manifest),
    }


@blp.route("/embeddings", methods=["POST"])
@uses_models
@requires_auth(
    blp,
    scope="inference",
    model=_named_model(DEFAULT_EMBEDDING_MODEL),
    cost=lambda: _items_in_body("input"),
    metered=True,
)
@blp.arguments(EmbeddingRequestSchema)
@blp.response(200, EmbeddingResponseSchema)
@blp.alt_responses(INFERENCE_ERRORS)
def embeddings(args: dict) -> dict:
    """Sentence embeddings, OpenAI-compatible. Costs one per input."""
    name, version = _model(args, DEFAULT_EMBEDDING_MODEL)
    expected = engine().registry.resolve(name, version).describe().get("dimensions")
    if args.get("dimensions") not in (None, expected):
        message = f"model {name!r} gives {expected} dimensions only"
        raise field_error("dimensions", message)
    outcome = engine().embed(name, version, args["input"])
    meter("embeddings", outcome)
    as_base64 = args["encoding_format"] == "base64"
    tokens = outcome.tokens
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _base64(e.vector) if as_base64 else e.vector}
            for i, e in enumerate(outcome.embeddings)
        ],
        **_served_by(outcome.manifest),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _base64(vector: list[float]) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
