"""Liveness (`/health`) and readiness (`/ready`) probes: unauthenticated and cheap."""

from __future__ import annotations

import time

import marshmallow as ma

from mlapi import __version__
from mlapi.web import readiness
from mlapi.web.openapi import Blueprint
from mlapi.web.state import app_state

blp = Blueprint("health", __name__, description="Liveness and readiness probes.")

_PROCESS_STARTED = time.monotonic()


class HealthSchema(ma.Schema):
    status = ma.fields.String(required=True)
    version = ma.fields.String(required=True)
    uptime_seconds = ma.fields.Float(required=True)
    gpu_available = ma.fields.Boolean(required=True)
    models_loaded = ma.fields.List(ma.fields.String(), required=True)
    models_state = ma.fields.String(
        required=True,
        metadata={
            "enum": ["loading", "ready", "failed", "not_loaded"],
            "description": "This worker's models: `loading` in the seconds after start.",
        },
    )
    device = ma.fields.String(required=True)
    worker_slot = ma.fields.Integer(allow_none=True, required=True)


class CheckSchema(ma.Schema):
    status = ma.fields.String(required=True, metadata={"enum": ["ok", "fail"]})
    detail = ma.fields.String()


class ReadySchema(ma.Schema):
    status = ma.fields.String(required=True)
    checks = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(CheckSchema), required=True)


def runtime_status() -> dict:
    """What this worker serves; the serving layer replaces the defaults once models load."""
    status = {
        "gpu_available": False,
        "models_loaded": [],
        "models_state": "not_loaded",
        "device": "cpu",
        "worker_slot": None,
    }
    provider = app_state().runtime_status
    if provider is not None:
        status.update(provider())
    return status


@blp.route("/health", methods=["GET"])
@blp.response(200, HealthSchema)
def health() -> dict:
    """Liveness: the process answers. Does not touch the database or Redis."""
    return {
        "status": "ok",
        "version": __version__,
        "uptime_seconds": round(time.monotonic() - _PROCESS_STARTED, 3),
        **runtime_status(),
    }


@blp.route("/ready", methods=["GET"])
@blp.response(200, ReadySchema)
@blp.alt_response(503, description="Not ready: the envelope plus the status of each check.")
def ready():  # noqa: ANN201 (a dict or an error response)
    """Readiness: 200 only when the database, Redis (if configured) and the models are usable."""
    checks = readiness.run_checks()
    failure = readiness.not_ready_response(checks, status="not_ready")
    if failure is not None:
        return failure
    return {"status": "ready", "checks": checks}
