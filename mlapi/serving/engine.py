"""The inference engine of one worker: registry + one batcher per model + the prediction cache."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from mlapi.serving.batcher import Arrivals, Batcher, BatchResult
from mlapi.serving.cache import PredictionCache, cache_key
from mlapi.serving.manifest import Manifest
from mlapi.serving.registry import ModelRegistry
from mlapi.serving.types import Embedding, PredictInput, Prediction


@dataclass(frozen=True)
class BatchingSettings:
    max_batch_size: int = 32
    max_delay_s: float = 0.005
    max_queue: int = 256
    timeout_s: float = 10.0


class Observer:
    """Hooks the web layer uses to count what the engine does (the core knows no metrics library)."""

    def batch(self, manifest: Manifest, result: BatchResult) -> None: ...

    def queued(self, manifest: Manifest, queue_ms: float) -> None: ...

    def depth(self, manifest: Manifest, depth: int) -> None: ...

    def cache(self, hits: int, misses: int) -> None: ...


@dataclass(frozen=True)
class PredictOutcome:
    manifest: Manifest
    predictions: list[Prediction]
    cached: list[bool]
    model_ms: float  # 0 when every prediction came from the cache
    batch_size: int

    @property
    def cached_items(self) -> int:
        return sum(self.cached)

    @property
    def tokens(self) -> int:
        """Input tokens the model read: those of the predictions it computed (a cache hit reads none)."""
        return sum(p.tokens for p, hit in zip(self.predictions, self.cached, strict=True) if not hit)


@dataclass(frozen=True)
class EmbedOutcome:
    manifest: Manifest
    embeddings: list[Embedding]
    model_ms: float
    batch_size: int

    cached_items = 0  # embeddings are never cached

    @property
    def tokens(self) -> int:
        return sum(e.tokens for e in self.embeddings)


class InferenceEngine:
    def __init__(
        self,
        registry: ModelRegistry,
        settings: BatchingSettings,
        cache: PredictionCache | None = None,
        cache_prefix: str = "mlapi",
        observer: Observer | None = None,
        *,
        previous: InferenceEngine | None = None,
    ) -> None:
        """``previous``: the engine this one replaces (a reload). Its announcements carry over, and
        so do the batchers of the versions it loaded that ``registry`` still serves unchanged."""
        self.registry = registry
        self.settings = settings
        self.cache = cache
        self.cache_prefix = cache_prefix
        self.observer = observer or Observer()
        # Shared by every model's batcher: a request announces itself before it knows its model.
        self.arrivals = previous.arrivals if previous else Arrivals()
        # Each version's batching, worked out once (every request's deadline is read from it).
        self._batching = {model_id: self._batching_of(h.manifest) for model_id, h in registry.handlers.items()}
        self.batchers: dict[str, Batcher] = {}
        for model_id, handler in registry.handlers.items():
            if previous and previous.registry.handlers.get(model_id) is handler:
                self.batchers[model_id] = previous.batchers[model_id]
                continue
            run = handler.predict if "predict" in handler.capabilities else handler.embed
            batching = self.batching_for(handler.manifest)
            self.batchers[model_id] = Batcher(
                run,
                name=model_id,
                max_batch_size=batching.max_batch_size,
                max_delay_s=batching.max_delay_s,
                max_queue=batching.max_queue,
                # The observer, not the engine: a runner a reload keeps must not keep its first engine alive.
                on_batch=lambda result, manifest=handler.manifest, seen=self.observer: seen.batch(manifest, result),
                on_depth=lambda depth, manifest=handler.manifest, seen=self.observer: seen.depth(manifest, depth),
                arrivals=self.arrivals,
            )

    def predict(self, name: str, version: str, items: Sequence[PredictInput], *, cache_scope: str) -> PredictOutcome:
        """Predictions for ``items``; cached ones are read and written under ``cache_scope`` only
        (an account's, or ``cache.SHARED`` for entries every caller may read)."""
        handler = self.registry.resolve(name, version)
        manifest = handler.manifest
        handler.require("predict")
        keys = [cache_key(self.cache_prefix, manifest, item, cache_scope) for item in items] if self.cache else []
        found = self.cache.get_many(keys) if self.cache else [None] * len(items)
        missing = [i for i, prediction in enumerate(found) if prediction is None]
        model_ms, batch_size = 0.0, 0
        if self.cache:
            self.observer.cache(len(items) - len(missing), len(missing))
        if missing:
            result = self._submit(manifest, [items[i] for i in missing])
            model_ms, batch_size = result.model_ms, result.batch_size
            for i, prediction in zip(missing, result.outputs, strict=True):
                found[i] = prediction
            if self.cache:
                self.cache.set_many({keys[i]: found[i] for i in missing})
        computed = set(missing)
        cached = [i not in computed for i in range(len(items))]
        return PredictOutcome(manifest, list(found), cached, model_ms, batch_size)

    def embed(self, name: str, version: str, texts: Sequence[str]) -> EmbedOutcome:
        handler = self.registry.resolve(name, version)
        handler.require("embed")
        result = self._submit(handler.manifest, list(texts))
        return EmbedOutcome(handler.manifest, result.outputs, result.model_ms, result.batch_size)

    def describe(self, name: str) -> dict:
        """The registry's description, each version with the batching it is served with."""
        described = self.registry.describe(name)
        for entry in described["versions"]:
            batching = self.batching_for(self.registry.store.manifests[name][entry["version"]])
            entry["serving"] = {
                "max_batch_size": batching.max_batch_size,
                "max_delay_ms": round(batching.max_delay_s * 1000, 3),
                "timeout_s": batching.timeout_s,
                "max_queue": batching.max_queue,
            }
        return described

    def catalog(self) -> list[dict]:
        return [self.describe(name) for name in self.registry.store.names()]

    def batching_for(self, manifest: Manifest) -> BatchingSettings:
        """The batching this engine serves ``manifest``'s version with."""
        return self._batching[manifest.id]

    def _batching_of(self, manifest: Manifest) -> BatchingSettings:
        """The defaults, overridden by the manifest's ``serving`` section."""
        overrides = dict(manifest.serving)
        if "max_delay_ms" in overrides:
            overrides["max_delay_s"] = overrides.pop("max_delay_ms") / 1000
        return replace(self.settings, **overrides)

    def _submit(self, manifest: Manifest, inputs: list) -> BatchResult:
        result = self.batchers[manifest.id].submit(inputs, self.batching_for(manifest).timeout_s)
        self.observer.queued(manifest, result.queue_ms)
        return result

    def queue_depths(self) -> dict[str, int]:
        return {model_id: batcher.depth for model_id, batcher in self.batchers.items()}

    def close(self, timeout_s: float = 30.0) -> None:
        """Drain every queue, then stop the runners (on worker shutdown)."""
        for batcher in self.batchers.values():
            batcher.close(timeout_s)

    def retired_by(self, successor: InferenceEngine) -> list[str]:
        """The model versions this engine serves that ``successor`` does not (or serves anew)."""
        return [
            model_id for model_id, batcher in self.batchers.items() if successor.batchers.get(model_id) is not batcher
        ]

    def close_models(self, model_ids: list[str], timeout_s: float = 30.0) -> None:
        """Drain and stop the runners of these versions (retired by a reload)."""
        for model_id in model_ids:
            self.batchers[model_id].close(timeout_s)
