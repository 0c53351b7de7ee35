"""Readiness checks: each subsystem registers a probe; ``/ready`` runs them all."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, current_app

logger = logging.getLogger("mlapi.readiness")

Check = Callable[[], object]  # raises when the dependency is unusable


def register_check(app: Flask, name: str, check: Check) -> None:
    app.extensions.setdefault("mlapi_ready_checks", {})[name] = check


def run_checks() -> dict[str, dict[str, str]]:
    results: dict[str, dict[str, str]] = {}
    for name, check in current_app.extensions.get("mlapi_ready_checks", {}).items():
        try:
            check()
        except Exception as exc:  # noqa: BLE001 (any failure means "not ready")
            logger.warning("readiness check %s failed: %s", name, exc)
            # The class name tells operators what failed without leaking hosts or credentials.
            results[name] = {"status": "fail", "detail": type(exc).__name__}
        else:
            results[name] = {"status": "ok"}
    return results
