"""Structured logs: one JSON object per line on stderr, with the request's context (stdout is for command output)."""

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


# flask-limiter reports a Redis outage (fallback to memory) and its recovery at WARNING/INFO.
LOGGERS = {"mlapi": None, "flask-limiter": "INFO"}


def configure_logging(level: str) -> None:
    """Route our loggers (and flask-limiter's) to stderr as JSON lines (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.mlapi_json = True  # type: ignore[attr-defined]
    handler.setFormatter(json_formatter())
    handler.addFilter(RequestContextFilter())
    for name, own_level in LOGGERS.items():
        logger = logging.getLogger(name)
        logger.setLevel(own_level or level)
        logger.propagate = False
        for old in [h for h in logger.handlers if getattr(h, "mlapi_json", False)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
