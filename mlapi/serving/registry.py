"""The models one worker serves: every manifest of the store, loaded on this worker's device."""

from __future__ import annotations

import logging
import time
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from mlapi.serving.errors import ManifestError, ServingError
from mlapi.serving.store import LATEST, ModelStore

if TYPE_CHECKING:
    from mlapi.serving.handlers import Handler
    from mlapi.serving.manifest import Manifest

logger = logging.getLogger("mlapi.serving")


class ModelRegistry:
    def __init__(self, store: ModelStore, device: str) -> None:
        self.store = store
        self.device = device
        self.handlers: dict[str, Handler] = {}

    def load(self, previous: ModelRegistry | None = None) -> ModelRegistry:
        """Load and warm up every model; a broken one stops start-up with a message naming its file.

        ``previous`` (a reload): a version whose manifest is unchanged keeps its loaded handler.
        """
        # The handlers bring torch (1.4 s to import): only a process that loads models pays for it.
        from mlapi.serving.handlers import handler_class

        for manifest in self.store.all():
            loaded = previous.handlers.get(manifest.id) if previous else None
            if loaded is not None and (loaded.manifest.path, loaded.manifest.fingerprint) == (
                manifest.path,
                manifest.fingerprint,
            ):
                self.handlers[manifest.id] = loaded
                continue
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

    def describe(self, name: str, today: date | None = None) -> dict:
        if name not in self.store.manifests:
            self.store.resolve(name)  # raises UnknownModel naming what exists
        today = today or datetime.now(UTC).date()
        versions = [
            {"version": version, **self.handlers[f"{name}:{version}"].describe(), **_lifecycle(manifest)}
            for version in self.store.versions(name)
            for manifest in (self.store.manifests[name][version],)
        ]
        live = self.store.live_versions(name, today)
        first = self.store.manifests[name][self.store.latest[name]]
        return {
            "id": name,
            "object": "model",
            "owned_by": "mlapi",
            "name": name,
            "task": first.task,
            "description": first.description,
            # What 'latest' serves today; with every version past its sunset, the store's latest (refused).
            "latest": self.store.resolve(name, today=today).version if live else self.store.latest[name],
            "versions": versions,
        }

    def catalog(self) -> list[dict]:
        return [self.describe(name) for name in self.store.names()]


def _lifecycle(manifest: Manifest) -> dict:
    return {
        "deprecated": manifest.deprecated,
        "sunset": manifest.sunset,
    }
