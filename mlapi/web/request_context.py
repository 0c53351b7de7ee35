"""Per-request plumbing: request IDs, the body limit, security headers, the access log, no cookie sessions."""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, after_this_request, g, request
from flask.sessions import SessionInterface
from werkzeug.exceptions import RequestEntityTooLarge

REQUEST_ID_HEADER = "X-Request-ID"
# Echo only IDs that are safe in logs and headers: bounded, no spaces or control characters.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/+=-]{0,127}$")

access_log = logging.getLogger("mlapi.access")


def incoming_request_id(value: str | None) -> str:
    if value and _SANE_REQUEST_ID.match(value):
        return value
    return uuid.uuid4().hex


def _begin_request() -> None:
    g.request_started = time.perf_counter()
    g.request_id = incoming_request_id(request.headers.get(REQUEST_ID_HEADER))


def _enforce_body_limit() -> None:
    # Werkzeug enforces MAX_CONTENT_LENGTH only when a view reads the body; refuse early for all.
    limit = request.max_content_length
    if limit is None:
        return
    if request.content_length is not None:
        too_large = request.content_length > limit
    elif "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        # No length up front, and Werkzeug silently cuts such a body at the limit (a view would
        # see truncated JSON): read it now, at most the limit, and look one byte beyond.
        too_large = len(request.get_data(cache=True)) >= limit and bool(request.environ["wsgi.input"].read(1))
    else:
        too_large = False
    if too_large:
        raise RequestEntityTooLarge(f"The request body exceeds the limit of {limit} bytes.")


def _finish_request(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = g.get("request_id") or incoming_request_id(None)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    started = g.get("request_started")
    latency_ms = round((time.perf_counter() - started) * 1000, 3) if started is not None else None
    fields = {"status": response.status_code, "latency_ms": latency_ms}
    fields.update(g.get("access_log_fields", {}))
    access_log.info("%s %s %s", request.method, request.path, response.status_code, extra=fields)
    return response


def add_access_log_fields(**fields: object) -> None:
    """Attach fields (account, model, ...) to this request's access-log line."""
    g.setdefault("access_log_fields", {}).update(fields)


def bearer_token() -> str | None:
    """The credential of ``Authorization: Bearer <credential>``, or None (another scheme, or none)."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    return credential.strip() or None if scheme.lower() == "bearer" else None


def no_store() -> None:
    """Keep this response (it carries credentials) out of every cache."""

    @after_this_request
    def _no_store(response: Response) -> Response:
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
        return response


class NoCookieSessions(SessionInterface):
    """Every request authenticates with a header: the API has no cookie sessions.

    Flask's default interface would build a signing serializer and look for a session cookie on
    every request (about 3.5% of the Python calls of a /v1/predict). ``flask.session`` is Flask's
    null session, which refuses writes.
    """

    def open_session(self, app: Flask, request: object) -> None:
        return None

    def save_session(self, app: Flask, session: object, response: Response) -> None:
        return None


def init_app(app: Flask) -> None:
    app.session_interface = NoCookieSessions()
    app.before_request(_begin_request)
    app.before_request(_enforce_body_limit)
    app.after_request(_finish_request)
