"""The models one worker serves: every manifest of the store, loaded on this worker's device."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from mlapi.serving.errors import ManifestError, ServingError
from mlapi.serving.store import LATEST, ModelStore

if TYPE_CHECKING:
    from mlapi.serving.handlers import Handler

logger = logging.getLogger("mlapi.serving")


class ModelRegistry:
    def __init__(self, store: ModelStore, device: str) -> None:
        self.store = store
        self.device = device
        self.handlers: dict[str, Handler] = {}

    def load(self) -> ModelRegistry:
        """Load and warm up every model; a broken one stops start-up with a message naming its file."""
        # The handlers bring torch (1.4 s to import): only a process that loads models pays for it.
        from mlapi.serving.handlers import handler_class

        for manifest in self.store.all():
            started = time.perf_counter()
            handler = handler_class(manifest)(manifest, self.device)
            try:
                handler.load()
                handler.warmup()
            except ServingError:
                raise
            except Exception as exc:
                raise ManifestError(f"{manifest.path}: cannot load model {manifest.id}: {exc}") from exc
            self.handlers[manifest.id] = handler
            logger.info("loaded model %s on %s in %.2fs", manifest.id, handler.device, time.perf_counter() - started)
        return self

    def resolve(self, name: str, version: str = LATEST) -> Handler:
        return self.handlers[self.store.resolve(name, version).id]

    def loaded(self) -> list[str]:
        return sorted(self.handlers)

    def describe(self, name: str) -> dict:
        self.store.resolve(name)  # raises UnknownModel naming what exists
        versions = [
            {"version": version, **self.handlers[f"{name}:{version}"].describe()}
            for version in self.store.versions(name)
        ]
        first = self.store.manifests[name][self.store.latest[name]]
        return {
            "id": name,
            "object": "model",
            "owned_by": "mlapi",
            "name": name,
            "task": first.task,
            "description": first.description,
            "latest": self.store.latest[name],
            "versions": versions,
        }

    def catalog(self) -> list[dict]:
        return [self.describe(name) for name in self.store.names()]
