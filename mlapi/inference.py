"""``/v1/predict``, ``/v1/predict/batch`` and ``/v1/embeddings``: thin views over the serving core."""

from __future__ import annotations

import base64
import time
from datetime import datetime, timezone

import marshmallow as ma
import numpy as np
from flask import g, request

from mlapi.auth import requires_auth
from mlapi.errors import APIError
from mlapi.openapi import Blueprint
from mlapi.request_context import add_access_log_fields
from mlapi.runtime import registry
from mlapi.serving.handlers import Handler
from mlapi.serving.types import PredictInput

blp = Blueprint("inference", __name__, url_prefix="/v1", description="Predictions and embeddings.")

DEFAULT_PREDICT_MODEL = "sentiment"
DEFAULT_EMBEDDING_MODEL = "minilm"
MAX_TEXT = 5000
MAX_ITEMS = 100


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ma.ValidationError("Must not be blank.")


def _unique(values: list) -> None:
    if len(set(values)) != len(values):
        raise ma.ValidationError("Labels must not repeat.")


TEXT = [ma.validate.Length(min=1, max=MAX_TEXT), _not_blank]


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
        ma.fields.String(validate=[ma.validate.Length(min=1, max=100), _not_blank]),
        validate=[ma.validate.Length(min=2, max=20), _unique],
        metadata={"description": "Zero-shot: classify into these labels instead of the model's own."},
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
    """OpenAI's ``input``: one string or a list of strings."""

    def _deserialize(self, value, attr, data, **kwargs):  # noqa: ANN001, ANN202 (marshmallow's signature)
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise ma.ValidationError("Must be a string or a list of strings.")
        if not 1 <= len(items) <= MAX_ITEMS:
            raise ma.ValidationError(f"Must hold 1 to {MAX_ITEMS} strings.")
        for item in items:
            if not 1 <= len(item) <= MAX_TEXT or not item.strip():
                raise ma.ValidationError(f"Each string must have 1 to {MAX_TEXT} characters, not all blank.")
        return items


class EmbeddingRequestSchema(_ModelArgs):
    input = StringOrStrings(required=True, metadata={"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]})
    encoding_format = ma.fields.String(load_default="float", validate=ma.validate.OneOf(["float", "base64"]))
    dimensions = ma.fields.Integer(strict=True, validate=ma.validate.Range(min=1))
    user = ma.fields.String(validate=ma.validate.Length(max=256))


class PredictionSchema(ma.Schema):
    result = ma.fields.String(required=True, metadata={"description": "The predicted label."})
    confidence = ma.fields.Float(required=True)
    scores = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Float(), required=True)


class PredictResponseSchema(PredictionSchema):
    request_id = ma.fields.String(required=True)
    latency_ms = ma.fields.Float(required=True, metadata={"description": "Time spent in the model."})
    model = ma.fields.String(required=True)
    model_version = ma.fields.String(required=True, metadata={"description": "The resolved version."})
    timestamp = ma.fields.DateTime(required=True)


class BatchPredictionSchema(PredictionSchema):
    index = ma.fields.Integer(required=True)


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


def _items_in_body(field: str) -> int:
    """What a request costs against the quota: one per input."""
    value = (request.get_json(silent=True) or {}).get(field) if request.is_json else None
    return len(value) if isinstance(value, list) and value else 1


def _resolve(args: dict, default_model: str) -> Handler:
    handler = registry().resolve(args.get("model") or default_model, args["model_version"])
    g.model = handler.manifest
    add_access_log_fields(model=handler.manifest.name, model_version=handler.manifest.version)
    return handler


def _options(args: dict) -> dict:
    labels = args.get("labels")
    return {
        "labels": tuple(labels) if labels else None,
        "temperature": args.get("temperature"),
        "max_tokens": args.get("max_tokens"),
    }


def _model_fields() -> dict:
    return {"model": g.model.name, "model_version": g.model.version}


@blp.route("/predict", methods=["POST"])
@requires_auth(blp)
@blp.arguments(PredictRequestSchema)
@blp.response(200, PredictResponseSchema)
@blp.alt_response(404, description="No such model or version; the detail names what exists.")
def predict(args: dict) -> dict:
    """Classify one text (sentiment by default; any labels zero-shot)."""
    handler = _resolve(args, DEFAULT_PREDICT_MODEL)
    started = time.perf_counter()
    (prediction,) = handler.predict([PredictInput(args["text"], **_options(args))])
    latency_ms = (time.perf_counter() - started) * 1000
    return {
        "request_id": g.request_id,
        "result": prediction.label,
        "confidence": prediction.confidence,
        "scores": prediction.scores,
        "latency_ms": round(latency_ms, 3),
        **_model_fields(),
        "timestamp": datetime.now(timezone.utc),
    }


@blp.route("/predict/batch", methods=["POST"])
@requires_auth(blp, cost=lambda: _items_in_body("inputs"))
@blp.arguments(BatchRequestSchema)
@blp.response(200, BatchResponseSchema)
@blp.alt_response(404, description="No such model or version; the detail names what exists.")
def predict_batch(args: dict) -> dict:
    """Classify up to 100 texts in one batched forward pass; results in input order. Costs one per input."""
    handler = _resolve(args, DEFAULT_PREDICT_MODEL)
    options = _options(args)
    started = time.perf_counter()
    predictions = handler.predict([PredictInput(text, **options) for text in args["inputs"]])
    latency_ms = (time.perf_counter() - started) * 1000
    return {
        "request_id": g.request_id,
        "predictions": [
            {"index": i, "result": p.label, "confidence": p.confidence, "scores": p.scores}
            for i, p in enumerate(predictions)
        ],
        "count": len(predictions),
        "latency_ms": round(latency_ms, 3),
        **_model_fields(),
    }


@blp.route("/embeddings", methods=["POST"])
@requires_auth(blp, cost=lambda: _items_in_body("input"))
@blp.arguments(EmbeddingRequestSchema)
@blp.response(200, EmbeddingResponseSchema)
@blp.alt_response(404, description="No such model or version; the detail names what exists.")
def embeddings(args: dict) -> dict:
    """Sentence embeddings, OpenAI-compatible. Costs one per input."""
    handler = _resolve(args, DEFAULT_EMBEDDING_MODEL)
    expected = handler.describe().get("dimensions")
    if args.get("dimensions") not in (None, expected):
        raise APIError(422, f"model {g.model.name!r} gives {expected} dimensions only", error="validation_error")
    results = handler.embed(args["input"])
    as_base64 = args["encoding_format"] == "base64"
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": i,
                "embedding": _base64(e.vector) if as_base64 else e.vector,
            }
            for i, e in enumerate(results)
        ],
        **_model_fields(),
        "usage": {"prompt_tokens": sum(e.tokens for e in results), "total_tokens": sum(e.tokens for e in results)},
    }


def _base64(vector: list[float]) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()

