"""Model versions as requests meet them: ``latest`` routed by weight (sticky per account), and the
Deprecation and Sunset headers of a response served by a deprecated version.

Routes live in the database (mlapi.accounts.model_routes); each worker reads them all at most every
``ROUTES_TTL_S`` seconds, so a change applies on every worker and instance within that.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from flask import Flask, Response, g
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from werkzeug.http import http_date

from mlapi.accounts import model_routes
from mlapi.accounts.tables import utcnow
from mlapi.extensions import db
from mlapi.serving.manifest import Manifest
from mlapi.serving.routing import pick_version
from mlapi.serving.store import LATEST
from mlapi.web.runtime import registry
from mlapi.web.state import app_state, state_of
from mlapi.web.versioning import deprecation_header, midnight_utc

logger = logging.getLogger("mlapi.web.model_lifecycle")
ROUTES_TTL_S = 2.0


class RouteTable:
    """Every model's routing weights, read from the database at most every ``ttl_s`` seconds."""

    def __init__(
        self,
        open_session: Callable[[], Session],
        ttl_s: float = ROUTES_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open_session = open_session
        self._ttl_s = ttl_s
        self._clock = clock
        self._routes: dict[str, dict[str, int]] = {}
        self._read_at = float("-inf")
        self._refreshing = False
        self._lock = threading.Lock()

    def weights(self, model: str) -> dict[str, int] | None:
        """The model's weights as last read; a stale table is read again by one request, while the
        others go on with what was read last (a slow database never holds them up)."""
        with self._lock:
            refresh = not self._refreshing and self._clock() - self._read_at >= self._ttl_s
            self._refreshing = self._refreshing or refresh
        if refresh:
            try:
                with self._open_session() as session:
                    routes = model_routes.all_routes(session)
            except SQLAlchemyError as exc:  # keep serving the routes read last; try again after the TTL
                logger.warning("model routes not refreshed, the database failed: %s", exc)
                routes = None
            with self._lock:
                if routes is not None:
                    self._routes = routes
                self._read_at, self._refreshing = self._clock(), False
        return self._routes.get(model)

    def forget(self) -> None:
        """Read again on the next request (this worker changed a route)."""
        with self._lock:
            self._read_at = float("-inf")


def routed_version(name: str, version: str) -> str:
    """The version that serves this request: the one named, or for ``latest`` the account's share
    of the model's routing (versions past their sunset never get one)."""
    if version != LATEST:
        return version
    weights, store = app_state().routes.weights(name), registry().store
    if not weights or name not in store.manifests:
        return LATEST
    live = store.live_versions(name, utcnow().date())
    return pick_version(weights, g.account.id, name, live) or LATEST


def note_served(manifest: Manifest) -> None:
    """The response comes from this version: it says so if the version is deprecated."""
    g.served_manifest = manifest


def _deprecation_headers(response: Response) -> Response:
    manifest = g.pop("served_manifest", None)
    if manifest is None:
        return response
    # An API version's own deprecation headers (mlapi.web.versioning), if any, are kept. A sunset
    # is announced from the day it is set, deprecation or not (RFC 8594).
    if manifest.is_deprecated(utcnow().date()):
        response.headers.setdefault("Deprecation", deprecation_header(midnight_utc(manifest.deprecated)))
    if manifest.sunset is not None:
        response.headers.setdefault("Sunset", http_date(midnight_utc(manifest.sunset)))
    return response


def init_app(app: Flask) -> None:
    engine = db.engine  # this app's (see mlapi.web.metering)
    state_of(app).routes = RouteTable(lambda: Session(engine))
    app.after_request(_deprecation_headers)
