"""The prediction cache: Redis when configured (shared by all workers), else an in-process LRU.

Keys cover the model, its resolved version, the manifest's fingerprint (so a changed manifest
never serves old entries), the request's parameters and a hash of the text. A Redis outage
turns the cache into a pass-through: no errors, just misses, retried after a short pause.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import redis
from cachetools import TTLCache

from mlapi.serving.manifest import Manifest
from mlapi.serving.redis_backoff import RedisBackoff
from mlapi.serving.types import PredictInput, Prediction

logger = logging.getLogger("mlapi.cache")


SHARED = "shared"  # the scope of entries every caller may read


def cache_key(prefix: str, manifest: Manifest, item: PredictInput, scope: str) -> str:
    """The entry for ``item``'s prediction, readable only by requests of the same ``scope``."""
    parameters = json.dumps([item.text, item.labels, item.temperature, item.max_tokens], ensure_ascii=False)
    digest = hashlib.sha256(parameters.encode()).hexdigest()
    return f"{prefix}:prediction:{scope}:{manifest.name}:{manifest.version}:{manifest.fingerprint}:{digest}"


def _dump(prediction: Prediction) -> str:
    return json.dumps([prediction.label, prediction.confidence, prediction.scores])


def _load(raw: str | bytes) -> Prediction:
    label, confidence, scores = json.loads(raw)
    return Prediction(label, confidence, scores)


class PredictionCache(Protocol):
    def get_many(self, keys: Sequence[str]) -> list[Prediction | None]: ...

    def set_many(self, entries: dict[str, Prediction]) -> None: ...


class MemoryCache:
    """Per worker process: an LRU with a time to live."""

    def __init__(self, size: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: TTLCache[str, str] = TTLCache(maxsize=size, ttl=ttl_s, timer=clock)
        self._lock = threading.Lock()  # cachetools caches are not thread-safe

    def get_many(self, keys: Sequence[str]) -> list[Prediction | None]:
        with self._lock:
            found = [self._entries.get(key) for key in keys]
        return [_load(raw) if raw is not None else None for raw in found]

    def set_many(self, entries: dict[str, Prediction]) -> None:
        with self._lock:
            for key, prediction in entries.items():
                self._entries[key] = _dump(prediction)


class RedisCache:
    """Shared by every worker and instance; bypassed (all misses) while Redis is unreachable."""

    def __init__(self, client: redis.Redis, ttl_s: float, backoff: RedisBackoff | None = None) -> None:
        self.client = client
        self.ttl_ms = int(ttl_s * 1000)
        self.backoff = backoff or RedisBackoff()

    def _usable(self) -> bool:
        return self.backoff.usable()

    def _failed(self, exc: redis.RedisError) -> None:
        if self.backoff.failed():
            logger.warning("prediction cache bypassed, Redis unreachable: %s", exc)

    def get_many(self, keys: Sequence[str]) -> list[Prediction | None]:
        if not keys or not self._usable():
            return [None] * len(keys)
        try:
            found = self.client.mget(list(keys))
        except redis.RedisError as exc:
            self._failed(exc)
            return [None] * len(keys)
        return [_load(raw) if raw is not None else None for raw in found]

    def set_many(self, entries: dict[str, Prediction]) -> None:
        if not entries or not self._usable():
            return
        try:
            pipeline = self.client.pipeline(transaction=False)
            for key, prediction in entries.items():
                pipeline.set(key, _dump(prediction), px=self.ttl_ms)
            pipeline.execute()
        except redis.RedisError as exc:
            self._failed(exc)
