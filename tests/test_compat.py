"""Each private API that mlapi.web.compat relies on, checked against the installed version."""

from __future__ import annotations

import flask_smorest
import pytest
from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from mlapi.web import compat


@pytest.fixture
def limited_app() -> tuple[Flask, Limiter]:
    app = Flask("compat")
    limiter = Limiter(key_func=get_remote_address, app=app, storage_uri="memory://")
    return app, limiter


def test_the_limiter_still_hooks_every_request_and_the_hook_can_be_dropped(limited_app):
    app, limiter = limited_app
    hook = type(limiter)._check_request_limit
    before = app.before_request_funcs.get(None, [])
    assert any(getattr(registered, "__func__", None) is hook for registered in before), (
        "flask-limiter no longer registers Limiter._check_request_limit: update compat.drop_limiter_before_request_pass"
    )
    compat.drop_limiter_before_request_pass(app, limiter)
    assert not any(getattr(registered, "__func__", None) is hook for registered in before)


def test_the_limiter_still_keeps_its_fallback_flag(limited_app):
    _, limiter = limited_app
    assert isinstance(limiter._storage_dead, bool), "flask-limiter renamed _storage_dead: update compat"
    assert compat.limiter_storage_is_down(limiter) is False


def test_flask_smorest_still_registers_its_error_handlers_through_the_hook():
    called = []

    class Recording(flask_smorest.Api):
        def _register_error_handlers(self) -> None:
            called.append(True)

    app = Flask("compat")
    app.config.update(API_TITLE="t", API_VERSION="1", OPENAPI_VERSION="3.0.3")
    Recording(app)
    assert called == [True], "flask-smorest no longer calls Api._register_error_handlers: update compat"


def test_the_api_without_smorest_handlers_leaves_errors_to_mlapi():
    app = Flask("compat")
    app.config.update(API_TITLE="t", API_VERSION="1", OPENAPI_VERSION="3.0.3")
    compat.ApiWithoutSmorestErrorHandlers(app)
    assert not app.error_handler_spec.get(None), "flask-smorest registered error handlers of its own"
