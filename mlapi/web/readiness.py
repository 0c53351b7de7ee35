"""Readiness checks: each subsystem registers a probe; ``/ready`` runs them all."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask
from flask.typing import ResponseReturnValue

from mlapi.web.errors import error_response
from mlapi.web.state import app_state, state_of

logger = logging.getLogger("mlapi.web.readiness")

Check = Callable[[], object]  # raises when the dependency is unusable


class NotReady(Exception):
    """A check's failure whose message is safe to show on /ready (a state, never a host or secret)."""


def register_check(app: Flask, name: str, check: Check) -> None:
    state_of(app).ready_checks[name] = check


def run_checks() -> dict[str, dict[str, str]]:
    results: dict[str, dict[str, str]] = {}
    for name, check in app_state().ready_checks.items():
        try:
            check()
        except Exception as exc:  # noqa: BLE001 (any failure means "not ready")
            logger.warning("readiness check %s failed: %s", name, exc)
            # The class name tells operators what failed without leaking hosts or credentials.
            detail = str(exc) if isinstance(exc, NotReady) else type(exc).__name__
            results[name] = {"status": "fail", "detail": detail}
        else:
            results[name] = {"status": "ok"}
    return results


def not_ready_response(checks: dict[str, dict[str, str]], **extra: object) -> ResponseReturnValue | None:
    """None when every check passed, else the 503 envelope naming the failures, with ``checks``."""
    failed = sorted(name for name, result in checks.items() if result["status"] != "ok")
    if not failed:
        return None
    return error_response(
        503,
        f"Not ready: {', '.join(failed)} unavailable.",
        error="not_ready",
        headers={"Retry-After": "5"},
        checks=checks,
        **extra,
    )
