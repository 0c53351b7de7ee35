"""The HTTP API: the /v1 and /v2 blueprints, and the endpoints outside them (health, docs).

Each blueprint is a thin view over the serving core and the accounts store; what every request
passes through (authentication, limits, errors, versioning) lives in mlapi.web.
"""

from __future__ import annotations

from flask import Flask

from mlapi.api import docs, health
from mlapi.api.v1 import admin, catalogue, inference, keys, model_admin, tokens, usage, users
from mlapi.api.v2 import views
from mlapi.extensions import api


def register_blueprints(app: Flask) -> None:
    app.register_blueprint(docs.blp)
    for blueprint in (
        health.blp,
        tokens.blp,
        users.blp,
        keys.blp,
        admin.blp,
        usage.blp,
        model_admin.blp,
        inference.blp,
        catalogue.blp,
        views.blp,
    ):
        api.register_blueprint(blueprint)
    views.init_app(app)
