"""Breaking changes between two OpenAPI 3.0 documents: what would make a client of the old one fail.

What a request may carry must not narrow (the server keeps accepting what it accepted), what a response
holds must not widen or lose anything (clients keep getting what they were promised); additions pass.
Documented error statuses may come and go; success statuses may not.

Written here because no maintained checker fits: oasdiff (Go) ships on neither PyPI nor npm and needs
a newer Go than Debian's; Atlassian's openapi-diff (npm) ignores parameters, form bodies and enums,
and reports a new field in a closed (``additionalProperties: false``) response as breaking; Optic
brings about 500 npm packages, telemetry, and did not start with the dependencies npm resolved.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from mlapi.contract.snapshot import HTTP_METHODS

REQUEST = "request"
RESPONSE = "response"
_PATH_PARAMETER = re.compile(r"\{([^}]*)\}")
# In a request, a lower upper bound or a higher lower bound refuses values that were accepted.
_UPPER_BOUNDS = ("maximum", "maxLength", "maxItems", "maxProperties")
_LOWER_BOUNDS = ("minimum", "minLength", "minItems", "minProperties")
# Where a side has no schema: one object, so that comparing against it also ends (see _Comparison.schema).
_ANY_VALUE = MappingProxyType({})


def breaking_changes(old: dict, new: dict) -> list[str]:
    """One line for each change from ``old`` to ``new`` that breaks a client written against ``old``.

    Raises ValueError when a ``$ref`` cannot be resolved within its document.
    """
    return list(_Comparison(old, new).paths())


class _Comparison:
    def __init__(self, old: dict, new: dict) -> None:
        self.old, self.new = old, new
        self._compared: set[tuple[int, int, str]] = set()

    def paths(self) -> Iterator[str]:
        # Clients fill a path's parameters by position: renaming one breaks nobody.
        new_paths = {_PATH_PARAMETER.sub("{}", path): path for path in self.new.get("paths", {})}
        for path, old_item in self.old.get("paths", {}).items():
            new_path = new_paths.get(_PATH_PARAMETER.sub("{}", path))
            if new_path is None:
                yield f"{path}: path removed"
                continue
            renamed = dict(zip(_PATH_PARAMETER.findall(path), _PATH_PARAMETER.findall(new_path), strict=True))
            old_item, new_item = _resolve(self.old, old_item), _resolve(self.new, self.new["paths"][new_path])
            for method in HTTP_METHODS:
                if method not in old_item:
                    continue
                where = f"{method.upper()} {path}"
                if method not in new_item:
                    yield f"{where}: operation removed"
                    continue
                old_operation, new_operation = old_item[method], new_item[method]
                yield from _security(where, self.old, old_operation, self.new, new_operation)
                old_parameters = _parameters(self.old, old_item, old_operation, renamed)
                yield from self.parameters(where, old_parameters, _parameters(self.new, new_item, new_operation))
                yield from self.request_body(where, old_operation.get("requestBody"), new_operation.get("requestBody"))
                yield from self.responses(where, old_operation.get("responses", {}), new_operation.get("responses", {}))

    def parameters(self, where: str, old: dict, new: dict) -> Iterator[str]:
        for (location, name), parameter in old.items():
            label = f"{where} {location} parameter '{name}'"
            counterpart = new.get((location, name))
            if counterpart is None:
                yield f"{label}: removed"
                continue
            if counterpart.get("required") and not parameter.get("required"):
                yield f"{label}: became required"
            yield from self.schema(label, "", parameter.get("schema"), counterpart.get("schema"), REQUEST)
        for (location, name), parameter in new.items():
            if (location, name) not in old and parameter.get("required"):
                yield f"{where}: new required {location} parameter '{name}'"

    def request_body(self, where: str, old: dict | None, new: dict | None) -> Iterator[str]:
        where = f"{where} request body"
        old = _resolve(self.old, old) if old is not None else None
        new = _resolve(self.new, new) if new is not None else None
        if old is None:
            if new is not None and new.get("required"):
                yield f"{where}: is new and required"
            return
        if new is None:
            yield f"{where}: removed"
            return
        if new.get("required") and not old.get("required"):
            yield f"{where}: became required"
        yield from self.content(where, old, new, REQUEST)

    def responses(self, where: str, old: dict, new: dict) -> Iterator[str]:
        for status, response in old.items():
            label = f"{where} response {status}"
            if status not in new:
                if str(status).startswith("2"):
                    yield f"{label}: removed"
                continue
            yield from self.content(label, _resolve(self.old, response), _resolve(self.new, new[status]), RESPONSE)

    def content(self, where: str, old: Mapping, new: Mapping, direction: str) -> Iterator[str]:
        for media_type, old_media in old.get("content", {}).items():
            new_media = new.get("content", {}).get(media_type)
            if new_media is None:
                yield f"{where}: media type {media_type} removed"
                continue
            label = f"{where} ({media_type})"
            yield from self.schema(label, "", old_media.get("schema"), new_media.get("schema"), direction)

    def schema(self, where: str, path: str, old: Any, new: Any, direction: str) -> Iterator[str]:
        """Changes within one schema; ``path`` locates it in the body (``predictions[].index``)."""
        old = _resolve(self.old, old) if old is not None else _ANY_VALUE
        new = _resolve(self.new, new) if new is not None else _ANY_VALUE
        # Each pair of schemas is compared once: a change to a shared component (the error envelope)
        # is one line, at the first place it is used, and recursive schemas end.
        pair = (id(old), id(new), direction)
        if pair in self._compared:
            return
        self._compared.add(pair)
        changes = [_line(where, path, what) for what in _keyword_changes(old, new, direction)]
        yield from changes
        if changes and _ANY_VALUE in (old, new):  # gained or lost every constraint: one line says it
            return
        yield from self.properties(where, path, old, new, direction)
        if "items" in old or "items" in new:
            yield from self.schema(where, path + "[]", old.get("items"), new.get("items"), direction)
        old_values, new_values = old.get("additionalProperties"), new.get("additionalProperties")
        if isinstance(old_values, dict) and isinstance(new_values, dict):  # a map's values
            yield from self.schema(where, _join(path, "*"), old_values, new_values, direction)
        yield from self.alternatives(where, path, old, new, direction)

    def properties(self, where: str, path: str, old: Mapping, new: Mapping, direction: str) -> Iterator[str]:
        old_properties, new_properties = _carried(old, direction), _carried(new, direction)
        old_required = set(old.get("required", [])) & old_properties.keys()
        new_required = set(new.get("required", [])) & new_properties.keys()
        for name, old_property in old_properties.items():
            if name not in new_properties:
                yield _line(where, _join(path, name), "removed")
            else:
                yield from self.schema(where, _join(path, name), old_property, new_properties[name], direction)
        if direction == REQUEST:
            for name in sorted(new_required - old_required):
                what = "became required" if name in old_properties else "is new and required"
                yield _line(where, _join(path, name), what)
            if new.get("additionalProperties") is False and old.get("additionalProperties") is not False:
                yield _line(where, path, "no longer accepts undocumented properties")
        else:
            for name in sorted(old_required - new_required):
                if name in new_properties:
                    yield _line(where, _join(path, name), "no longer required (may be missing)")

    def alternatives(self, where: str, path: str, old: Mapping, new: Mapping, direction: str) -> Iterator[str]:
        for keyword in ("oneOf", "anyOf", "allOf"):
            old_parts, new_parts = old.get(keyword), new.get(keyword)
            if old_parts is None and new_parts is None:
                continue
            if old_parts is None or new_parts is None:  # reshaped: this checker cannot tell how, so it objects
                yield _line(where, path, f"'{keyword}' {'added' if old_parts is None else 'removed'}")
                continue
            # More oneOf/anyOf alternatives accept more values; more allOf parts accept fewer.
            wider = len(new_parts) > len(old_parts) if keyword != "allOf" else len(new_parts) < len(old_parts)
            narrower = len(new_parts) != len(old_parts) and not wider
            if direction == REQUEST and narrower or direction == RESPONSE and wider:
                yield _line(where, path, f"'{keyword}' went from {len(old_parts)} to {len(new_parts)} schemas")
            for index, (old_part, new_part) in enumerate(zip(old_parts, new_parts, strict=False)):
                yield from self.schema(where, f"{path}<{keyword}[{index}]>", old_part, new_part, direction)


def _keyword_changes(old: Mapping, new: Mapping, direction: str) -> Iterator[str]:
    """Changes to the keywords that constrain a value itself (not its parts)."""
    old_types, new_types = _types(old), _types(new)
    accepted, offered = (old_types, new_types) if direction == REQUEST else (new_types, old_types)
    if not _covers(offered, accepted):
        yield f"type changed from {_describe(old_types)} to {_describe(new_types)}"
    old_format, new_format = old.get("format"), new.get("format")
    if old_format != new_format and (old_format if direction == RESPONSE else new_format):
        yield f"format changed from {old_format or 'none'} to {new_format or 'none'}"
    if direction == REQUEST and old.get("nullable") and not new.get("nullable"):
        yield "no longer accepts null"
    if direction == RESPONSE and new.get("nullable") and not old.get("nullable"):
        yield "may now be null"
    old_enum, new_enum = old.get("enum"), new.get("enum")
    if old_enum is not None and new_enum is not None:
        removed = [value for value in old_enum if value not in new_enum]
        if removed:
            yield f"enum value(s) removed: {', '.join(json.dumps(value) for value in removed)}"
    elif direction == REQUEST and new_enum is not None:
        yield f"now restricted to {', '.join(json.dumps(value) for value in new_enum)}"
    elif direction == RESPONSE and old_enum is not None:
        yield "no longer restricted to its enum values"
    if direction == REQUEST:
        for keyword in _UPPER_BOUNDS:
            if keyword in new and (keyword not in old or new[keyword] < old[keyword]):
                yield f"{keyword} tightened from {old.get(keyword, 'none')} to {new[keyword]}"
        for keyword in _LOWER_BOUNDS:
            if keyword in new and (keyword not in old or new[keyword] > old[keyword]):
                yield f"{keyword} tightened from {old.get(keyword, 'none')} to {new[keyword]}"
        for keyword in ("exclusiveMinimum", "exclusiveMaximum", "uniqueItems"):
            if new.get(keyword) is True and old.get(keyword) is not True:
                yield f"now {keyword}"
        if new.get("pattern") is not None and new.get("pattern") != old.get("pattern"):
            yield f"pattern changed to {new['pattern']!r}"


def _security(where: str, old_document: dict, old: dict, new_document: dict, new: dict) -> Iterator[str]:
    """Each way of authenticating (or none) that the old operation accepted must still be accepted."""
    old_ways, new_ways = _ways_in(old_document, old), _ways_in(new_document, new)
    for way in sorted(old_ways - new_ways, key=sorted):
        yield f"{where}: no longer accepts {' + '.join(sorted(way)) or 'anonymous requests'}"


def _ways_in(document: dict, operation: dict) -> set[frozenset[str]]:
    requirements = operation.get("security", document.get("security")) or [{}]
    return {frozenset(requirement) for requirement in requirements}


def _parameters(document: dict, item: dict, operation: dict, renamed: dict | None = None) -> dict:
    """The operation's parameters by ``(in, name)``, the path item's included (the operation's win)."""
    found = {}
    for parameter in [*item.get("parameters", []), *operation.get("parameters", [])]:
        parameter = _resolve(document, parameter)
        name, location = parameter["name"], parameter["in"]
        if location == "path":
            name = (renamed or {}).get(name, name)
        elif location == "header":
            name = name.lower()
        found[(location, name)] = parameter
    return found


def _carried(schema: Mapping, direction: str) -> dict:
    """The properties that travel in ``direction``: readOnly ones are never sent, writeOnly never returned."""
    hidden = "readOnly" if direction == REQUEST else "writeOnly"
    return {name: value for name, value in schema.get("properties", {}).items() if not value.get(hidden)}


def _types(schema: Mapping) -> set[str] | None:
    """The JSON types a schema allows; None for any."""
    declared = schema.get("type")
    if declared is None:
        return None
    return set(declared) if isinstance(declared, list) else {declared}


def _covers(wide: set[str] | None, narrow: set[str] | None) -> bool:
    if wide is None:
        return True
    if narrow is None:
        return False
    return all(kind in wide or kind == "integer" and "number" in wide for kind in narrow)


def _describe(types: set[str] | None) -> str:
    return "any" if types is None else "|".join(sorted(types))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _line(where: str, path: str, what: str) -> str:
    return f"{where}: '{path}' {what}" if path else f"{where}: {what}"


def _resolve(document: dict, node: Any) -> Any:
    seen = set()
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/") or ref in seen:
            raise ValueError(f"cannot resolve $ref {ref!r}: only local, non-circular references are supported")
        seen.add(ref)
        node = document
        for token in ref[2:].split("/"):
            try:
                node = node[token.replace("~1", "/").replace("~0", "~")]
            except (KeyError, TypeError, IndexError):
                raise ValueError(f"cannot resolve $ref {ref!r}: nothing at that location") from None
    return node
