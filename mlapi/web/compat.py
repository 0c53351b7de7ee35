"""Every use of a dependency's private API, in one place.

Each is a choice the public API does not offer; tests/test_compat.py checks each against the
installed version, so that an upgrade that changes one fails there, by name, instead of
silently changing behaviour. One more dependency on internals lives where it works:
mlapi.web.limits_storage writes limits' moving-window layout in Redis from its own Lua script;
tests/test_limits_storage.py checks that limits' own reader sees what it writes.
"""

from __future__ import annotations

import flask_smorest
from flask import Flask
from flask_limiter import Limiter


def drop_limiter_before_request_pass(app: Flask, limiter: Limiter) -> None:
    """Remove flask-limiter's before-request hook (``Limiter._check_request_limit``).

    It applies default and application-wide limits, of which this service has none; the limits of
    a decorated view are checked by its decorator either way. On every request it would only
    cost CPU (about 0.1 ms).
    """
    hook = type(limiter)._check_request_limit
    hooks = app.before_request_funcs.get(None, [])
    hooks[:] = [registered for registered in hooks if getattr(registered, "__func__", None) is not hook]


def limiter_storage_is_down(limiter: Limiter) -> bool:
    """Whether flask-limiter counts in its in-memory fallback because its storage failed.

    flask-limiter has no public flag for it; it keeps it in ``Limiter._storage_dead``.
    """
    return bool(limiter._storage_dead)


class ApiWithoutSmorestErrorHandlers(flask_smorest.Api):
    """flask-smorest's Api, minus its error handlers: mlapi.web.errors renders every error in the
    one envelope. ``_register_error_handlers`` is the hook flask-smorest calls from ``init_app``."""

    def _register_error_handlers(self) -> None:
        pass
