"""Structured logs: one JSON object per line on stdout, with the request's context."""

from __future__ import annotations

import logging
import sys

from flask import g, has_request_context, request
from pythonjsonlogger.json import JsonFormatter

LOG_FORMAT = "%(levelname)s %(name)s %(process)d %(message)s"
RENAMED_FIELDS = {"levelname": "level", "name": "logger", "process": "pid"}


class RequestContextFilter(logging.Filter):
    """Adds request_id, method, path and remote_addr to records logged during a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            record.request_id = g.get("request_id")
            record.method = request.method
            record.path = request.path
            record.remote_addr = request.remote_addr
        return True


def json_formatter() -> JsonFormatter:
    return JsonFormatter(LOG_FORMAT, rename_fields=RENAMED_FIELDS, timestamp=True)


def configure_logging(level: str) -> None:
    """Route the ``mlapi`` loggers to stdout as JSON lines (idempotent)."""
    root = logging.getLogger("mlapi")
    root.setLevel(level)
    root.propagate = False
    for handler in list(root.handlers):
        if getattr(handler, "mlapi_json", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    handler.mlapi_json = True  # type: ignore[attr-defined]
    handler.setFormatter(json_formatter())
    handler.addFilter(RequestContextFilter())
    root.addHandler(handler)
