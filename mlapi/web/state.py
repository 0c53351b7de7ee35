"""What mlapi keeps per app, typed, in one place (``app.extensions["mlapi"]``).

Every module reads and writes it through ``state_of(app)`` or ``app_state()``, never through a
string key of its own, so two apps in one process (the tests build many) never share a piece
of it by accident and a reader sees at once what exists and of which type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

from mlapi.web.costs import PaidLabels
from mlapi.web.credential_cache import RefusedKeys

if TYPE_CHECKING:
    import redis

    from mlapi.serving.engine import InferenceEngine
    from mlapi.usage.meter import UsageMeter
    from mlapi.usage.quotas import MonthlyQuotas
    from mlapi.web.credential_cache import CredentialCache
    from mlapi.web.model_lifecycle import RouteTable
    from mlapi.web.runtime import ModelLoading

_KEY = "mlapi"


@dataclass
class AppState:
    # The shared Redis client (MLAPI_REDIS_URL), and the credential epoch kept in it.
    redis: redis.Redis | None = None
    credentials: CredentialCache | None = None
    # Keys this worker refused for good, and the labels each account paid for here.
    refused_keys: RefusedKeys = field(default_factory=RefusedKeys)
    paid_labels: PaidLabels = field(default_factory=PaidLabels)
    # The models: on their way in, then served by the engine; what /health reports of them.
    model_loading: ModelLoading | None = None
    engine: InferenceEngine | None = None
    runtime_status: Callable[[], dict[str, Any]] | None = None
    model_status: dict[str, Any] = field(default_factory=dict)  # device, slot, models loaded
    # What /ready checks, by name; each raises when its dependency is unusable.
    ready_checks: dict[str, Callable[[], object]] = field(default_factory=dict)
    # URL prefixes whose errors put the message in "error" (the Open Inference Protocol).
    protocol_error_prefixes: list[str] = field(default_factory=list)
    # Every model's routing of 'latest', as this worker last read it.
    routes: RouteTable | None = None
    # This worker's usage counts on their way to the rollups, and the monthly quotas.
    meter: UsageMeter | None = None
    quotas: MonthlyQuotas | None = None
    # Called after a commit of this app that revoked a key or changed a user: broadcast it.
    on_credentials_changed: Callable[[], None] | None = None


def init_state(app: Flask) -> AppState:
    state = app.extensions[_KEY] = AppState()
    return state


def state_of(app: Flask) -> AppState:
    return app.extensions[_KEY]


def app_state() -> AppState:
    """The state of the app handling this request (or of the app context)."""
    return current_app.extensions[_KEY]
