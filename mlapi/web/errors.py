"""One JSON error envelope for every error the service returns.

``{error, detail, status_code, request_id, timestamp}`` plus ``errors`` per field on
validation failures. Never an HTML page, never a stack trace to the client.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Flask, g, has_request_context, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.http import HTTP_STATUS_CODES

from mlapi.accounts.errors import Busy, Conflict, Forbidden, InvalidValue, NotFound, StoreError
from mlapi.serving.batcher import DeadlineExceeded, QueueFull, ShuttingDown
from mlapi.serving.errors import InvalidInput, ServingError, UnknownModel, UnsupportedTask, VersionSunset
from mlapi.web.state import app_state, state_of

logger = logging.getLogger("mlapi.web.errors")

# Headers of the exception that describe the error body, not the response: ours is JSON.
_BODY_HEADERS = {"content-type", "content-length"}


class APIError(HTTPException):
    """An HTTP error with a machine-readable code, a message and optional headers.

    Raise it anywhere in the web layer; the envelope handler renders it.
    """

    def __init__(
        self,
        status_code: int,
        detail: str,
        *,
        error: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(description=detail)
        self.code = status_code
        self.error = error
        self.extra_headers = dict(headers or {})
        self.extra = dict(extra or {})

    def get_headers(self, environ=None, scope=None) -> list[tuple[str, str]]:  # noqa: ANN001 (werkzeug's signature)
        return list(self.extra_headers.items())


def field_error(field: str, message: str) -> APIError:
    """A 422 for one field that only the view can check, shaped like the validator's own."""
    return APIError(422, message, error="validation_error", extra={"errors": {field: [message]}})


def error_code(status_code: int) -> str:
    """``404`` -> ``not_found``: a stable, machine-readable name for a status."""
    phrase = HTTP_STATUS_CODES.get(status_code, "error")
    return phrase.lower().replace("-", "_").replace(" ", "_").replace("'", "")


def envelope(status_code: int, detail: str, *, error: str | None = None, **extra: Any) -> dict[str, Any]:
    body = {
        "error": error or error_code(status_code),
        "detail": detail,
        "status_code": status_code,
        "request_id": g.get("request_id"),
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    if _message_in_error():
        body["code"], body["error"] = body["error"], detail
    body.update(extra)
    return body


def register_protocol_errors(app: Flask, url_prefix: str) -> None:
    """Under ``url_prefix``, ``error`` carries the message and ``code`` the name.

    Protocols such as KServe V2 define errors as ``{"error": "<message>"}``; their clients show
    that field. The envelope's other fields stay, so every error still carries its request ID.
    """
    state_of(app).protocol_error_prefixes.append(url_prefix.rstrip("/"))


def _message_in_error() -> bool:
    if not has_request_context():
        return False
    path = request.path
    return any(path == prefix or path.startswith(prefix + "/") for prefix in app_state().protocol_error_prefixes)


def error_response(
    status_code: int,
    detail: str,
    *,
    error: str | None = None,
    headers: Mapping[str, str] | list[tuple[str, str]] | None = None,
    **extra: Any,
) -> ResponseReturnValue:
    response = jsonify(envelope(status_code, detail, error=error, **extra))
    response.status_code = status_code
    items = headers.items() if isinstance(headers, Mapping) else (headers or [])
    for name, value in items:
        if name.lower() not in _BODY_HEADERS:
            response.headers[name] = value
    return response


def _validation_errors(exc: HTTPException) -> dict[str, Any] | None:
    """Field messages of a webargs/flask-smorest validation error, without the location level."""
    data = getattr(exc, "data", None)
    messages = data.get("messages") if isinstance(data, dict) else None
    if not isinstance(messages, dict):
        return None
    flat: dict[str, Any] = {}
    for location_messages in messages.values():
        if isinstance(location_messages, dict):
            flat.update(location_messages)
        else:
            flat.setdefault("_body", location_messages)
    return flat


def handle_http_exception(exc: HTTPException) -> ResponseReturnValue:
    status_code = exc.code or 500
    if status_code >= 500:
        logger.error("%s: %s", status_code, exc.description)
    extra = dict(getattr(exc, "extra", {}) or {})
    error = getattr(exc, "error", None)
    field_errors = _validation_errors(exc)
    if field_errors is not None:
        extra["errors"] = field_errors
        if status_code == 422:
            error = error or "validation_error"
            detail = "The request failed validation; see 'errors' for each field."
        else:
            detail = _first_message(field_errors) or exc.description or ""
    else:
        detail = exc.description or HTTP_STATUS_CODES.get(status_code, "Error")
    headers = exc.get_headers()
    webargs_headers = getattr(exc, "data", {}).get("headers") if isinstance(getattr(exc, "data", None), dict) else None
    if webargs_headers:
        headers = list(headers) + list(webargs_headers.items())
    return error_response(status_code, detail, error=error, headers=headers, **extra)


def _first_message(errors: Mapping[str, Any]) -> str | None:
    for value in errors.values():
        if isinstance(value, list) and value and isinstance(value[0], str):
            return value[0]
    return None


def handle_unexpected_exception(exc: Exception) -> ResponseReturnValue:
    if isinstance(exc, HTTPException):
        return handle_http_exception(exc)
    logger.exception("unhandled error", exc_info=exc)
    return handle_http_exception(InternalServerError("An internal error occurred; it has been logged."))


# Failures of the store and the serving core, whose messages are safe to show:
# status, error code, headers. 503 is overload (429 stays for quotas).
_RETRY_SOON = {"Retry-After": "1"}
_DOMAIN_ERRORS: dict[type[Exception], tuple[int, str | None, dict[str, str]]] = {
    NotFound: (404, None, {}),
    Conflict: (409, None, {}),
    InvalidValue: (422, "validation_error", {}),
    Forbidden: (403, "forbidden", {}),  # the exception's own code, where it has one
    Busy: (503, "overloaded", _RETRY_SOON),
    UnknownModel: (404, "model_not_found", {}),
    VersionSunset: (410, "model_version_sunset", {}),
    UnsupportedTask: (422, "unsupported_task", {}),
    InvalidInput: (422, "validation_error", {}),
    QueueFull: (503, "overloaded", _RETRY_SOON),
    ShuttingDown: (503, "shutting_down", _RETRY_SOON),
    DeadlineExceeded: (504, "inference_timeout", {}),
}


def handle_domain_error(exc: StoreError | ServingError) -> ResponseReturnValue:
    if type(exc) not in _DOMAIN_ERRORS:
        return handle_unexpected_exception(exc)
    status, error, headers = _DOMAIN_ERRORS[type(exc)]
    detail = str(exc)
    if isinstance(exc, UnknownModel) and exc.others is not None and g.get("account") is not None:
        # A key limited to some models learns of those only, not of the whole catalogue.
        grant = g.account.grant
        detail = f"{detail.partition(';')[0]}; available models: "
        detail += ", ".join(name for name in exc.others if grant.allows_model(name)) or "none"
    return error_response(status, detail, error=getattr(exc, "code", error), headers=headers)


def handle_database_unavailable(exc: OperationalError | InterfaceError | PoolTimeout) -> ResponseReturnValue:
    # Connection refused, server restarting, SQLite locked past its timeout, every pooled connection
    # busy past the pool's timeout: worth a retry.
    logger.warning("database unavailable: %s", exc.orig if getattr(exc, "orig", None) else exc)
    return error_response(
        503,
        "The database is unavailable; try again shortly.",
        error="database_unavailable",
        headers={"Retry-After": "1"},
    )


def handle_value_refused_by_database(exc: DataError) -> ResponseReturnValue:
    # A value the database cannot hold or compare (a NUL in a URL path segment on PostgreSQL, a
    # number out of the column's range): the request's fault, not the service's.
    logger.warning("database refused a value: %s", exc.orig if getattr(exc, "orig", None) else exc)
    return error_response(422, "A value in the request cannot be stored or looked up.", error="validation_error")


def register_errorhandlers(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(StoreError, handle_domain_error)
    app.register_error_handler(ServingError, handle_domain_error)
    app.register_error_handler(OperationalError, handle_database_unavailable)
    app.register_error_handler(InterfaceError, handle_database_unavailable)
    app.register_error_handler(PoolTimeout, handle_database_unavailable)
    app.register_error_handler(DataError, handle_value_refused_by_database)
    app.register_error_handler(Exception, handle_unexpected_exception)
