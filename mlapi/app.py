"""The application factory: a short list of ``register_*`` steps, nothing heavy at import."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis
from flask import Flask
from redis.backoff import NoBackoff
from redis.retry import Retry
from werkzeug.middleware.proxy_fix import ProxyFix

from mlapi import __version__
from mlapi.accounts import passwords
from mlapi.api import register_blueprints
from mlapi.cli import register_commands
from mlapi.config import Settings, refuse_debug_in_production, resolve_settings
from mlapi.extensions import api, cors, db
from mlapi.web import (
    auth,
    errors,
    metering,
    metrics,
    model_lifecycle,
    ratelimit,
    readiness,
    request_context,
    runtime,
    versioning,
)
from mlapi.web.credential_cache import CredentialCache, credential_change_hook
from mlapi.web.logs import configure_logging
from mlapi.web.openapi import OPENAPI_CONFIG
from mlapi.web.state import init_state, state_of


def create_app(
    config: Settings | Mapping[str, Any] | None = None, *, load_models: bool = True, background_loading: bool = False
) -> Flask:
    """Build the app from the environment, overlaid with ``config`` (``MLAPI_*`` names).

    ``load_models=False`` (the admin CLI) skips loading the model weights. ``background_loading``
    (Gunicorn, in wsgi.py) returns before they are loaded: the app answers 503 until they are.
    """
    settings = resolve_settings(config)
    app = Flask("mlapi", instance_relative_config=True, static_folder=None)
    init_state(app)
    configure(app, settings)
    configure_logging(settings.log_level)
    request_context.init_app(app)
    versioning.init_app(app)
    register_extensions(app, settings)
    if load_models:
        runtime.init_app(app, settings, background=background_loading)
    register_blueprints(app)
    errors.register_errorhandlers(app)
    register_commands(app)
    return app


def configure(app: Flask, settings: Settings) -> None:
    refuse_debug_in_production(settings, debug=app.debug)
    app.config.update(
        MLAPI_SETTINGS=settings,
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        MAX_FORM_MEMORY_SIZE=settings.max_body_bytes,
        API_TITLE="mlapi",
        API_VERSION=__version__,
        **OPENAPI_CONFIG,
    )
    if settings.proxy_hops:
        hops = settings.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)  # type: ignore[method-assign]


def default_database_url(app: Flask) -> str:
    instance = Path(app.instance_path)
    instance.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{instance / 'mlapi.db'}"


def register_extensions(app: Flask, settings: Settings) -> None:
    db.bind(settings.database_url or default_database_url(app))
    passwords.limit_concurrent_hashes(settings.max_concurrent_hashes)
    app.teardown_appcontext(lambda _exc: db.session.remove())
    readiness.register_check(app, "database", db.ping)
    state = state_of(app)
    credentials = None
    if settings.redis_url:
        # No retries: redis-py's default (3, with back-off) makes each call on a dead Redis take 3.5 s,
        # and every request would wait that long. Its users step aside on their own failures.
        client = redis.Redis.from_url(
            settings.redis_url, socket_connect_timeout=0.5, socket_timeout=0.5, retry=Retry(NoBackoff(), 0)
        )
        state.redis = client
        readiness.register_check(app, "redis", client.ping)
        # Built whatever the TTL: with 0 this process remembers no key but still tells the others.
        credentials = CredentialCache(
            client, f"{settings.redis_prefix}:credentials-epoch", settings.credential_cache_ttl_s
        )
        state.credentials = credentials
    state.on_credentials_changed = credential_change_hook(credentials, settings.credential_cache_ttl_s)
    metering.init_app(app, settings)
    model_lifecycle.init_app(app)
    if settings.cors_origins:
        cors.init_app(
            app,
            origins=list(settings.cors_origins),
            # Clients authenticate with headers, never cookies: credentials stay off, so a
            # wildcard origin can never be combined with them.
            supports_credentials=False,
            send_wildcard=settings.cors_origins == ("*",),
            allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Request-ID"],
            expose_headers=[
                "X-Request-ID",
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
                "X-Quota-Limit",
                "X-Quota-Remaining",
                "X-Quota-Reset",
                "Retry-After",
                "API-Version",
                "Deprecation",
                "Sunset",
                "Link",
            ],
            max_age=600,
        )
    api.init_app(app)
    metrics.init_app(app)
    auth.init_app(app)
    ratelimit.init_app(app)
