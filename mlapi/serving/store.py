"""The model store: every ``<name>/<version>/manifest.json`` under one directory.

``latest`` resolves to the highest version (PEP 440 ordering) unless ``<name>/LATEST``
holds the version to pin.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from packaging.version import InvalidVersion, Version

from mlapi.serving.errors import ManifestError, UnknownModel, VersionSunset
from mlapi.serving.manifest import MANIFEST_FILE, Manifest, load_manifest

LATEST = "latest"
PIN_FILE = "LATEST"


def version_order(version: str) -> tuple[int, Version | str]:
    """Sort key of versions: PEP 440 order, names that are not versions first."""
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


@dataclass(frozen=True)
class ModelStore:
    root: Path
    manifests: dict[str, dict[str, Manifest]]
    latest: dict[str, str]

    @classmethod
    def open(cls, root: Path) -> ModelStore:
        """Read every manifest under ``root``; raises ManifestError naming the first broken file."""
        if not root.is_dir():
            raise ManifestError(f"{root}: the model directory does not exist")
        manifests: dict[str, dict[str, Manifest]] = {}
        for path in sorted(root.glob(f"*/*/{MANIFEST_FILE}")):
            manifest = load_manifest(path)
            manifests.setdefault(manifest.name, {})[manifest.version] = manifest
        latest = {}
        for name, versions in manifests.items():
            pin = root / name / PIN_FILE
            if pin.is_file():
                pinned = pin.read_text().strip()
                if pinned not in versions:
                    raise ManifestError(f"{pin}: pins version {pinned!r}, which has no manifest")
                latest[name] = pinned
            else:
                latest[name] = max(versions, key=version_order)
        return cls(root=root, manifests=manifests, latest=latest)

    def names(self) -> list[str]:
        return sorted(self.manifests)

    def versions(self, name: str) -> list[str]:
        return sorted(self.manifests.get(name, {}), key=version_order)

    def all(self) -> list[Manifest]:
        return [self.manifests[name][version] for name in self.names() for version in self.versions(name)]

    def resolve(self, name: str, version: str = LATEST, today: date | None = None) -> Manifest:
        """The manifest of ``version`` (or of what ``latest`` means today: the pinned or highest
        version, or, once that one's sunset has come, the highest version whose sunset has not).

        ``UnknownModel`` for no such model or version; ``VersionSunset`` for a version past its sunset.
        """
        if name not in self.manifests:
            available = ", ".join(self.names()) or "none"
            raise UnknownModel(f"no model {name!r}; available models: {available}", others=self.names())
        today = today or datetime.now(UTC).date()
        if version == LATEST:
            return self._latest_live(name, today)
        if version not in self.manifests[name]:
            available = ", ".join(self.versions(name))
            raise UnknownModel(f"model {name!r} has no version {version!r}; available versions: {available}, latest")
        manifest = self.manifests[name][version]
        if manifest.is_sunset(today):
            raise VersionSunset(
                f"version {version!r} of model {name!r} reached its sunset on {manifest.sunset}; "
                f"use 'latest' ({self._latest_live(name, today).version})"
            )
        return manifest

    def live_versions(self, name: str, today: date) -> list[str]:
        """The versions of ``name`` not past their sunset, in version order."""
        return [v for v in self.versions(name) if not self.manifests[name][v].is_sunset(today)]

    def _latest_live(self, name: str, today: date) -> Manifest:
        pinned = self.manifests[name][self.latest[name]]
        if not pinned.is_sunset(today):
            return pinned
        live = self.live_versions(name, today)
        if not live:
            raise VersionSunset(f"every version of model {name!r} has reached its sunset")
        return self.manifests[name][live[-1]]
