"""Wires the serving core into the app: this worker's slot and device, and its loaded models."""

from __future__ import annotations

import ctypes
import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, g

from mlapi.config import Settings
from mlapi.serving.batcher import BatchResult
from mlapi.serving.cache import SHARED, MemoryCache, PredictionCache, RedisCache
from mlapi.serving.devices import configure_torch_threads, device_for_slot, visible_devices, worker_slot
from mlapi.serving.engine import BatchingSettings, InferenceEngine, Observer
from mlapi.serving.manifest import Manifest
from mlapi.serving.registry import ModelRegistry
from mlapi.serving.store import ModelStore
from mlapi.web import metrics, readiness
from mlapi.web.errors import APIError
from mlapi.web.state import app_state, state_of

logger = logging.getLogger("mlapi.web.runtime")
_View = TypeVar("_View", bound=Callable[..., Any])


def engine() -> InferenceEngine:
    found = app_state().engine
    if found is None:
        raise models_unavailable()
    return found


def registry() -> ModelRegistry:
    return engine().registry


def cache_scope() -> str:
    """Whose prediction cache entries this request reads and writes (``MLAPI_CACHE_SCOPE``)."""
    if current_app.config["MLAPI_SETTINGS"].cache_scope == "global":
        return SHARED
    return f"account-{g.account.id}"


def models_unavailable() -> Exception:
    """503 + Retry-After while this worker's models load (or after they failed to)."""
    loading = model_loading(current_app)
    if loading is None:  # an app built without models (the admin CLI): a programming error
        return RuntimeError("models are not loaded in this process")
    if loading.state == FAILED:
        return APIError(
            503,
            "The models failed to load on this worker; its log says why.",
            error="models_unavailable",
            headers={"Retry-After": "30"},
        )
    return APIError(
        503,
        "The models are still loading on this worker; retry shortly.",
        error="models_loading",
        headers={"Retry-After": str(LOADING_RETRY_AFTER_S)},
    )


def uses_models(view: _View) -> _View:
    """Announce the request to this worker's batchers as it starts, before auth and parsing.

    A runner that knows requests are on their way waits for them (up to the batching delay)
    rather than run a batch of one; see ``mlapi.serving.batcher.Arrivals``. The announcement is
    taken back when the request submits, or at teardown.
    """

    @functools.wraps(view)
    def announced(*args: Any, **kwargs: Any) -> Any:
        found = app_state().engine
        if found is not None:
            found.arrivals.announce()
        elif model_loading(current_app) is not None:
            # Before auth and the quota: a request refused for want of models costs the caller nothing.
            raise models_unavailable()
        return view(*args, **kwargs)

    return announced  # type: ignore[return-value]


def prediction_cache(app: Flask, settings: Settings) -> PredictionCache | None:
    if settings.cache_ttl_s <= 0:
        return None
    client = state_of(app).redis
    if client is not None:
        return RedisCache(client, settings.cache_ttl_s)
    return MemoryCache(settings.cache_size, settings.cache_ttl_s)


LOADING, READY, FAILED = "loading", "ready", "failed"
LOADING_RETRY_AFTER_S = 2


class ModelLoading:
    """This worker's models on their way in: ``loading``, then ``ready`` or ``failed``, once."""

    def __init__(self) -> None:
        self.state = LOADING
        self.error: str | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._callbacks: list[Callable[[ModelLoading], None]] = []

    def run(self, load: Callable[[], None]) -> None:
        """Run ``load`` and record how it ended; its exception is re-raised."""
        try:
            load()
        except BaseException as exc:
            self._finish(FAILED, str(exc))
            raise
        self._finish(READY, None)

    def when_done(self, callback: Callable[[ModelLoading], None]) -> None:
        """Call ``callback(self)`` once loading has ended: at once if it has, else in the loading thread."""
        with self._lock:
            if self.state == LOADING:
                self._callbacks.append(callback)
                return
        callback(self)

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def _finish(self, state: str, error: str | None) -> None:
        with self._lock:
            self.state, self.error = state, error
            callbacks, self._callbacks = self._callbacks, []
        self._done.set()
        for callback in callbacks:
            callback(self)


def model_loading(app: Flask) -> ModelLoading | None:
    return state_of(app).model_loading


def init_app(app: Flask, settings: Settings, *, background: bool = False) -> None:
    """Load every model of the store on this worker's device (after fork, in Gunicorn workers).

    ``background=True`` (Gunicorn) returns at once and loads in a thread: meanwhile the worker
    answers ``/health``, ``/ready`` (503, ``loading``) and inference (503 + ``Retry-After``)
    instead of leaving connections unanswered. Otherwise a failure to load raises here.
    """
    loading = ModelLoading()
    state = state_of(app)
    status = state.model_status
    state.model_loading = loading
    state.runtime_status = lambda: {**status, "models_state": loading.state}
    readiness.register_check(app, "models", lambda: _check_models(app, loading))
    # A request that announced itself and ends without reaching a model (an error, a cache hit).
    app.teardown_request(lambda _exc: _withdraw_announcement(app))
    load = functools.partial(_load_models, app, settings, status)
    if not background:
        loading.run(load)
        return

    def load_logging_failure() -> None:
        try:
            loading.run(load)
        except Exception:
            logger.exception("cannot load the models")

    threading.Thread(target=load_logging_failure, name="mlapi-model-loader", daemon=True).start()


def _load_models(app: Flask, settings: Settings, status: dict[str, Any]) -> None:
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
        loaded,
        batching,
        prediction_cache(app, settings),
        cache_prefix=settings.redis_prefix,
        observer=MetricsObserver(),
    )
    for handler in loaded.handlers.values():
        metrics.record_model(handler.manifest, handler.device, slot)
    status.update(
        gpu_available=torch.cuda.is_available(), models_loaded=loaded.loaded(), device=device, worker_slot=slot
    )
    # Last: requests see either no engine (503, loading) or a complete one.
    state_of(app).engine = serving
    logger.info("serving %s on %s (slot %s, %d torch threads)", loaded.loaded(), device, slot, threads)


_RELOADING = threading.Lock()  # one reload at a time in a process


def reload_models(app: Flask) -> list[str]:
    """Read the store again and switch to it (see mlapi.web.model_reload); the versions now served.

    A worker still loading its models finishes that first (a load that began after the request
    already reads the new store, but reloading once more is harmless). Raises, and changes
    nothing, if the store or a new version cannot be loaded.
    """
    state = state_of(app)
    settings = app.config["MLAPI_SETTINGS"]
    loading = state.model_loading
    if loading is not None:
        loading.wait()
    with _RELOADING:
        current = state.engine
        if current is None:
            raise RuntimeError(f"this worker's models failed to load: {loading.error if loading else 'not loaded'}")
        old_registry = current.registry
        store = ModelStore.open(settings.model_dir)
        loaded = ModelRegistry(store, old_registry.device).load(previous=old_registry)
        serving = InferenceEngine(
            loaded,
            current.settings,
            current.cache,
            cache_prefix=current.cache_prefix,
            observer=current.observer,
            previous=current,
        )
        retired = current.retired_by(serving)
        state.engine = serving  # the switch: requests from now on see the new set
        slot = worker_slot()
        for model_id in retired:
            handler = old_registry.handlers[model_id]
            if model_id not in loaded.handlers or loaded.handlers[model_id] is not handler:
                metrics.forget_model(handler.manifest, handler.device, slot)
        for handler in loaded.handlers.values():
            metrics.record_model(handler.manifest, handler.device, slot)
        state.model_status["models_loaded"] = loaded.loaded()
    # Requests that took the old set finish on it: its retired runners stop once they are past
    # any deadline such a request can have (then nothing holds their models).
    if retired:
        deadlines = [current.batching_for(old_registry.handlers[i].manifest).timeout_s for i in retired]
        grace_s = max([current.settings.timeout_s, *deadlines]) + RETIRE_MARGIN_S
        # In a list that _retire empties: the timer must not keep the old engine alive after it.
        timer = threading.Timer(grace_s, _retire, args=(app, [current], retired))
        timer.daemon = True
        timer.start()
    return loaded.loaded()


RETIRE_MARGIN_S = 5.0


def _retire(app: Flask, retiring: list[InferenceEngine], model_ids: list[str]) -> None:
    """Stop the runners of versions a reload retired, drop the networks no model uses any more,
    and collect what they held (the memory goes back)."""
    import gc

    from mlapi.serving.encoder import forget_encoders_except

    if not retiring:
        return
    previous = retiring.pop()
    previous.close_models(model_ids)
    with _RELOADING:  # what serves now, not what served when this reload ran
        serving = state_of(app).engine
        in_use = [h.encoder for h in serving.registry.handlers.values() if hasattr(h, "encoder")] if serving else []
        dropped = forget_encoders_except(in_use)
    del previous
    # gunicorn.conf.py froze what the first load made (no collection walks it); what a reload
    # retired may sit there. One full collection, then everything alive is frozen again.
    frozen = gc.get_freeze_count() > 0
    gc.unfreeze()
    gc.collect()
    if frozen:
        gc.freeze()
    _return_freed_memory()
    logger.info("retired %s; %d network(s) no model uses were dropped", ", ".join(model_ids), dropped)


def _return_freed_memory() -> None:
    """Hand the heap that the retired model freed back to the system (glibc keeps it otherwise)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the allocator keeps it for later use
        pass


def _withdraw_announcement(app: Flask) -> None:
    found = state_of(app).engine
    if found is not None:
        found.arrivals.withdraw()


class MetricsObserver(Observer):
    def batch(self, manifest: Manifest, result: BatchResult) -> None:
        metrics.record_batch(manifest, result)

    def queued(self, manifest: Manifest, queue_ms: float) -> None:
        metrics.record_queue_wait(manifest, queue_ms)

    def depth(self, manifest: Manifest, depth: int) -> None:
        metrics.record_queue_depth(manifest, depth)

    def cache(self, hits: int, misses: int) -> None:
        metrics.record_cache(hits, misses)


def shutdown(app: Flask) -> None:
    """Drain every model's queue before the worker exits (Gunicorn's worker_exit hook)."""
    found = state_of(app).engine
    if found is not None:
        found.close()


def _check_models(app: Flask, loading: ModelLoading) -> None:
    if loading.state != READY:
        raise readiness.NotReady(loading.state)
    serving = state_of(app).engine
    assert serving is not None  # checked only once loading has ended well
    if not serving.registry.handlers:
        raise readiness.NotReady("no models loaded")
    stopped = [model_id for model_id, batcher in serving.batchers.items() if not batcher.alive]
    if stopped:
        raise readiness.NotReady(f"runner stopped for {', '.join(stopped)}")
