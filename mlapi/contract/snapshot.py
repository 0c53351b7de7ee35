"""The part of an OpenAPI document under one version prefix, rendered the same way every time."""

from __future__ import annotations

import json
from typing import Any

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
COMPONENTS_REF = "#/components/"


def versioned_document(spec: dict, prefix: str = "/v1") -> dict:
    """``spec`` reduced to the paths under ``prefix`` and the components, security schemes and tags
    they use: another version added to the same document leaves the result unchanged."""
    # A JSON round trip copies the document and turns apispec's integer status codes into strings.
    spec = json.loads(json.dumps(spec))
    paths = {path: item for path, item in spec.get("paths", {}).items() if path.startswith(prefix + "/")}
    operations = [item[method] for item in paths.values() for method in HTTP_METHODS if method in item]
    components = spec.get("components", {})
    kept: dict[str, dict] = {}
    for kind, name in _referenced_components(components, paths):
        kept.setdefault(kind, {})[name] = components[kind][name]
    requirements = [way for operation in operations for way in operation.get("security", spec.get("security", []))]
    schemes = {name for way in requirements for name in way}
    if schemes:
        kept["securitySchemes"] = {name: components["securitySchemes"][name] for name in schemes}
    tags_used = {tag for operation in operations for tag in operation.get("tags", [])}
    document = {key: value for key, value in spec.items() if key not in ("paths", "components", "tags")}
    document["paths"] = paths
    if kept:
        document["components"] = kept
    tags = [tag for tag in spec.get("tags", []) if tag.get("name") in tags_used]
    if tags:
        document["tags"] = tags
    return document


def render(document: dict) -> str:
    """The snapshot's text: sorted keys and ASCII only, so that a diff shows real changes only."""
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def _referenced_components(components: dict, root: Any) -> set[tuple[str, str]]:
    """Every ``(kind, name)`` reachable through ``$ref`` from ``root``, following refs within components."""
    found: set[tuple[str, str]] = set()
    pending = [root]
    while pending:  # a loop, not recursion: schemas may refer to themselves
        node = pending.pop()
        if isinstance(node, list):
            pending.extend(node)
        elif isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(COMPONENTS_REF):
                kind, _, name = ref.removeprefix(COMPONENTS_REF).partition("/")
                name = name.replace("~1", "/").replace("~0", "~")
                if (kind, name) not in found:
                    found.add((kind, name))
                    pending.append(components[kind][name])
            pending.extend(node.values())
    return found
