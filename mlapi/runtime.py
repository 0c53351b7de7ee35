"""Wires the serving core into the app: this worker's slot and device, and its loaded models."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app

from mlapi import metrics, readiness
from mlapi.config import Settings
from mlapi.serving.cache import MemoryCache, PredictionCache, RedisCache
from mlapi.serving.devices import configure_torch_threads, device_for_slot, visible_devices, worker_slot
from mlapi.serving.engine import BatchingSettings, InferenceEngine, Observer
from mlapi.serving.registry import ModelRegistry
from mlapi.serving.store import ModelStore

logger = logging.getLogger("mlapi.runtime")
_View = TypeVar("_View", bound=Callable[..., Any])


def engine() -> InferenceEngine:
    found = current_app.extensions.get("mlapi_engine")
    if found is None:
        raise RuntimeError("models are not loaded in this process")
    return found


def registry() -> ModelRegistry:
    return engine().registry


def uses_models(view: _View) -> _View:
    """Announce the request to this worker's batchers as it starts, before auth and parsing.

    A runner that knows requests are on their way waits for them (up to the batching delay)
    rather than run a batch of one; see ``mlapi.serving.batcher.Arrivals``. The announcement is
    taken back when the request submits, or at teardown.
    """

    @functools.wraps(view)
    def announced(*args: Any, **kwargs: Any) -> Any:
        found = current_app.extensions.get("mlapi_engine")
        if found is not None:
            found.arrivals.announce()
        return view(*args, **kwargs)

    return announced  # type: ignore[return-value]


def prediction_cache(app: Flask, settings: Settings) -> PredictionCache | None:
    if settings.cache_ttl_s <= 0:
        return None
    client = app.extensions.get("mlapi_redis")
    if client is not None:
        return RedisCache(client, settings.cache_ttl_s)
    return MemoryCache(settings.cache_size, settings.cache_ttl_s)


def init_app(app: Flask, settings: Settings) -> None:
    """Load every model of the store on this worker's device (after fork, in Gunicorn workers)."""
    import torch

    slot = worker_slot()
    device = device_for_slot(visible_devices(settings.devices), slot)
    threads = configure_torch_threads(settings.torch_threads, settings.workers)
    loaded = ModelRegistry(ModelStore.open(settings.model_dir), device).load()
    batching = BatchingSettings(
        max_batch_size=settings.max_batch_size,
        max_delay_s=settings.max_batch_delay_ms / 1000,
        max_queue=settings.max_queue,
        timeout_s=settings.inference_timeout_s,
    )
    serving = InferenceEngine(
        loaded, batching, prediction_cache(app, settings), cache_prefix=settings.redis_prefix, observer=MetricsObserver()
    )
    app.extensions["mlapi_engine"] = serving
    # A request that announced itself and ends without reaching a model (an error, a cache hit).
    app.teardown_request(lambda _exc: serving.arrivals.withdraw())
    for handler in loaded.handlers.values():
        metrics.record_model(handler.manifest, handler.device, slot)
    gpu_available = torch.cuda.is_available()
    logger.info("serving %s on %s (slot %s, %d torch threads)", loaded.loaded(), device, slot, threads)

    app.extensions["mlapi_runtime_status"] = lambda: {
        "gpu_available": gpu_available,
        "models_loaded": loaded.loaded(),
        "device": device,
        "worker_slot": slot,
    }
    readiness.register_check(app, "models", lambda: _check_models(app.extensions["mlapi_engine"]))


class MetricsObserver(Observer):
    def batch(self, manifest, result):  # noqa: ANN001, ANN201 (Observer's signature)
        metrics.record_batch(manifest, result)

    def queued(self, manifest, queue_ms):  # noqa: ANN001, ANN201
        metrics.record_queue_wait(manifest, queue_ms)

    def depth(self, manifest, depth):  # noqa: ANN001, ANN201
        metrics.record_queue_depth(manifest, depth)

    def cache(self, hits, misses):  # noqa: ANN001, ANN201
        metrics.record_cache(hits, misses)


def shutdown(app: Flask) -> None:
    """Drain every model's queue before the worker exits (Gunicorn's worker_exit hook)."""
    found = app.extensions.get("mlapi_engine")
    if found is not None:
        found.close()


def _check_models(serving: InferenceEngine) -> None:
    if not serving.registry.handlers:
        raise RuntimeError("no models loaded")
    stopped = [model_id for model_id, batcher in serving.batchers.items() if not batcher.alive]
    if stopped:
        raise RuntimeError(f"runner stopped for {', '.join(stopped)}")
