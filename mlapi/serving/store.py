"""The model store: every ``<name>/<version>/manifest.json`` under one directory.

``latest`` resolves to the highest version (PEP 440 ordering) unless ``<name>/LATEST``
holds the version to pin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from mlapi.serving.errors import ManifestError, UnknownModel
from mlapi.serving.manifest import MANIFEST_FILE, Manifest, load_manifest

LATEST = "latest"
PIN_FILE = "LATEST"


def _version_key(version: str) -> tuple[int, Version | str]:
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
                latest[name] = max(versions, key=_version_key)
        return cls(root=root, manifests=manifests, latest=latest)

    def names(self) -> list[str]:
        return sorted(self.manifests)

    def versions(self, name: str) -> list[str]:
        return sorted(self.manifests.get(name, {}), key=_version_key)

    def all(self) -> list[Manifest]:
        return [self.manifests[name][version] for name in self.names() for version in self.versions(name)]

    def resolve(self, name: str, version: str = LATEST) -> Manifest:
        if name not in self.manifests:
            available = ", ".join(self.names()) or "none"
            raise UnknownModel(f"no model {name!r}; available models: {available}", others=self.names())
        resolved = self.latest[name] if version == LATEST else version
        if resolved not in self.manifests[name]:
            available = ", ".join(self.versions(name))
            raise UnknownModel(f"model {name!r} has no version {version!r}; available versions: {available}, latest")
        return self.manifests[name][resolved]
