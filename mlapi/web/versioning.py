"""API versions: negotiation through ``Accept`` on unversioned paths, and the deprecation policy.

- ``/predict`` with ``Accept: application/vnd.mlapi.v1+json`` is served exactly as ``/v1/predict``:
  a WSGI middleware rewrites the path before Flask routes it, so auth, limits, metrics and logs all
  see the versioned route. Without a vendor media type the default version serves the alias. Paths
  the app serves unversioned (``/health``, ``/ready``, ``/metrics``), ``/vN/...`` and paths that no
  version has are left alone.
- A version that ``MLAPI_DEPRECATED_VERSIONS`` marks deprecated announces it on every response
  (``Deprecation``, RFC 9745; ``Sunset``, RFC 8594; ``Link`` to its successor) and answers 410 from
  its sunset on, except its documentation, which also describes the successor.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from apispec import APISpec, BasePlugin
from flask import Flask, Response, request
from werkzeug.datastructures import MIMEAccept
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.http import http_date, parse_accept_header
from werkzeug.routing import Map, MapAdapter

from mlapi.config import API_VERSIONS, Settings, VersionDeprecation
from mlapi.web.errors import APIError
from mlapi.web.request_context import add_access_log_fields

EXTENSION = "mlapi_versioning"
_SELECTION = "mlapi.api_version"
VERSION_HEADER = "API-Version"
_VERSION_IN_PATH = re.compile(r"^/(v\d+)(?:/|$)")
_VENDOR_TYPE = re.compile(r"^application/vnd\.mlapi(?:\.(v\d+))?\+json$")
_VENDOR_FAMILY = re.compile(r"^application/vnd\.mlapi[.+]")
# A sunset version keeps its documentation: the one spec describes its successor too.
_DOCUMENTATION = ("openapi.json", "docs", "redoc")


def media_type(version: str) -> str:
    return f"application/vnd.mlapi.{version}+json"


def successor(version: str) -> str | None:
    index = API_VERSIONS.index(version)
    return API_VERSIONS[index + 1] if index + 1 < len(API_VERSIONS) else None


class NotAcceptable(Exception):
    """The Accept header names only versions this server does not serve."""

    def __init__(self, requested: Iterable[str]) -> None:
        super().__init__()
        self.requested = tuple(dict.fromkeys(requested))


def negotiate(accept: str | None, default: str) -> str:
    """The version an ``Accept`` header selects.

    Only ``application/vnd.mlapi.vN+json`` types choose (``application/vnd.mlapi+json`` means the
    default); other types, ``application/json`` and ``*/*`` included, leave the choice to the server.
    The highest quality wins; between equal qualities, the newest version. A header that names
    versions, none of them served here, is refused rather than answered in another version whose
    contract the client did not ask for.
    """
    named: list[tuple[str, float]] = []  # (version or the unknown vendor type, quality)
    for value, quality in parse_accept_header(accept, MIMEAccept):
        mime = value.partition(";")[0].strip().lower()
        if not _VENDOR_FAMILY.match(mime):
            continue
        match = _VENDOR_TYPE.match(mime)
        named.append(((match.group(1) or default) if match else mime, quality))
    wanted = [
        (quality, API_VERSIONS.index(version), version)
        for version, quality in named
        if quality > 0 and version in API_VERSIONS
    ]
    if wanted:
        return max(wanted)[2]
    unknown = [version for version, quality in named if quality > 0]
    refused = {version for version, quality in named if quality == 0}
    if unknown or default in refused:  # 'q=0' on the default alone refuses the only choice left
        raise NotAcceptable(unknown)
    return default


@dataclass(frozen=True)
class Selection:
    """Which version serves a request, decided before routing."""

    version: str | None  # None: not a request to the versioned API
    alias: str | None = None  # the unversioned path the client sent, when negotiation applied
    requested: tuple[str, ...] | None = None  # versions asked for that are not served here (406)


class NegotiatingMiddleware:
    """Rewrites an unversioned API path to the version its ``Accept`` header selects."""

    def __init__(self, wsgi_app: Callable[..., Any], url_map: Map, default_version: str) -> None:
        self.wsgi_app = wsgi_app
        self.url_map = url_map
        self.default_version = default_version

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        environ[_SELECTION] = self.select(environ)
        return self.wsgi_app(environ, start_response)

    def select(self, environ: dict[str, Any]) -> Selection:
        path = environ.get("PATH_INFO") or "/"
        in_path = _VERSION_IN_PATH.match(path)
        if in_path:
            version = in_path.group(1)
            return Selection(version if version in API_VERSIONS else None)
        routes = self.url_map.bind("localhost")
        method = environ.get("REQUEST_METHOD", "GET")
        # Paths the app serves unversioned stay its own; paths no version has are plain 404s.
        if _routed(routes, path, method) or not any(_routed(routes, f"/{v}{path}", method) for v in API_VERSIONS):
            return Selection(None)
        try:
            version = negotiate(environ.get("HTTP_ACCEPT"), self.default_version)
        except NotAcceptable as refusal:
            return Selection(None, alias=path, requested=refusal.requested)
        environ["PATH_INFO"] = f"/{version}{path}"
        return Selection(version, alias=path)


def _routed(routes: MapAdapter, path: str, method: str) -> bool:
    # PATH_INFO is WSGI's latin-1 rendering of the raw bytes; routes are matched on the UTF-8 text.
    text = path.encode("latin-1", "replace").decode("utf-8", "replace")
    try:
        routes.match(text, method=method)
    except NotFound:
        return False
    except HTTPException:  # 405, or a redirect to the canonical URL: the path exists
        return True
    return True


@dataclass(frozen=True)
class Retirement:
    """A deprecated version's schedule, as headers and as the 410 it turns into."""

    version: str
    deprecated_at: datetime
    sunset_at: datetime
    docs_url: str

    @classmethod
    def of(cls, version: str, deprecation: VersionDeprecation, docs_url: str) -> Retirement:
        return cls(version, midnight_utc(deprecation.deprecated_on), midnight_utc(deprecation.sunset_on), docs_url)

    def headers(self) -> dict[str, str]:
        links = [f'<{self.docs_url}>; rel="deprecation"; type="text/html"']
        following = successor(self.version)
        if following:
            links.insert(0, f'</{following}>; rel="successor-version"')
        return {
            "Deprecation": deprecation_header(self.deprecated_at),
            "Sunset": http_date(self.sunset_at),
            "Link": ", ".join(links),
        }

    def gone(self) -> APIError:
        following = successor(self.version)
        instead = f"use {following} (/{following})" if following else "it has no successor"
        return APIError(
            410,
            f"API {self.version} reached its sunset on {self.sunset_at.date().isoformat()} and is no longer "
            f"served; {instead}.",
            error="version_sunset",
        )


def midnight_utc(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def deprecation_header(at: datetime) -> str:
    """The Deprecation header's value (RFC 9745): ``@`` and the Unix time."""
    return f"@{int(at.timestamp())}"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Versioning:
    """The app's versions policy; ``clock`` may be replaced (tests set the date without sleeping)."""

    def __init__(self, settings: Settings, docs_url: str) -> None:
        self.default_version = settings.default_api_version
        self.retirements = {
            version: Retirement.of(version, deprecation, docs_url)
            for version, deprecation in settings.deprecated_versions.items()
        }
        self.clock: Callable[[], datetime] = _utc_now

    def check(self) -> None:
        """Before the view (and before auth and limits): refuse unknown or retired versions."""
        selection: Selection = request.environ.get(_SELECTION, Selection(None))
        if selection.alias is not None:
            add_access_log_fields(requested_path=selection.alias)
        if selection.requested is not None:
            raise self.not_acceptable(selection.requested)
        if selection.version is None:
            return
        add_access_log_fields(api_version=selection.version)
        retirement = self.retirements.get(selection.version)
        if retirement and self.clock() >= retirement.sunset_at and not _is_documentation(request.path):
            raise retirement.gone()

    def not_acceptable(self, requested: tuple[str, ...]) -> APIError:
        # Echo only well-formed version names: the header is the client's, of any length.
        asked = [version for version in requested if re.fullmatch(r"v\d{1,4}", version)][:5]
        what = f"asks for API {', '.join(asked)}, not served here" if asked else "accepts no API version served here"
        return APIError(
            406,
            f"The Accept header {what}; this server serves {', '.join(API_VERSIONS)}: send Accept: "
            f"{media_type(self.default_version)} (or another version), or application/json for "
            f"{self.default_version}.",
            error="unsupported_api_version",
            extra={"supported_versions": list(API_VERSIONS)},
        )

    def announce(self, response: Response) -> Response:
        """After every response, errors included: say which version served it and its schedule."""
        selection: Selection = request.environ.get(_SELECTION, Selection(None))
        if selection.alias is not None:
            response.vary.add("Accept")
        if selection.version is None:
            return response
        response.headers[VERSION_HEADER] = selection.version
        retirement = self.retirements.get(selection.version)
        if retirement:
            headers = retirement.headers()
            if response.headers.get("Link"):  # keep the view's own links
                headers["Link"] = f"{response.headers['Link']}, {headers['Link']}"
            response.headers.update(headers)
        return response


def _is_documentation(path: str) -> bool:
    rest = path.split("/", 2)[2] if path.count("/") >= 2 else ""
    return any(rest == page or rest.startswith(page + "/") for page in _DOCUMENTATION)


class DeprecatedOperationsPlugin(BasePlugin):
    """Marks the operations of deprecated versions ``deprecated: true`` in the OpenAPI document.

    Reads the settings of the app the ``Api`` is being initialised for (``api.config``).
    """

    def __init__(self, api: Any) -> None:
        self.api = api
        self.versions: tuple[str, ...] = ()

    def init_spec(self, spec: APISpec) -> None:
        settings = self.api.config.get("MLAPI_SETTINGS") if self.api.config is not None else None
        versions = settings.deprecated_versions if settings is not None else {}
        self.versions = tuple(versions)

    def operation_helper(self, path: str | None = None, operations: dict | None = None, **kwargs: Any) -> None:
        in_path = _VERSION_IN_PATH.match(path or "")
        if in_path and in_path.group(1) in self.versions:
            for operation in (operations or {}).values():
                operation["deprecated"] = True


def versioning(app: Flask) -> Versioning:
    return app.extensions[EXTENSION]


def init_app(app: Flask) -> None:
    """Call before the extensions that hook requests, so a 406 or 410 costs no quota or auth look-up."""
    settings: Settings = app.config["MLAPI_SETTINGS"]
    docs_url = "/".join(
        (app.config.get("OPENAPI_URL_PREFIX", "/v1").rstrip("/"), app.config.get("OPENAPI_SWAGGER_UI_PATH", "docs"))
    )
    policy = Versioning(settings, docs_url)
    app.extensions[EXTENSION] = policy
    app.wsgi_app = NegotiatingMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, app.url_map, settings.default_api_version
    )
    app.before_request(policy.check)
    app.after_request(policy.announce)
