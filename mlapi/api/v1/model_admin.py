"""`/v1/admin/models`: reload the model store, and share a model's `latest` among its versions (admins only)."""

from __future__ import annotations

import marshmallow as ma
from flask import current_app

from mlapi.accounts import model_reloads, model_routes
from mlapi.accounts.tables import utcnow
from mlapi.extensions import db
from mlapi.serving.manifest import NAME_PATTERN
from mlapi.web.auth import current_account, current_actor, requires_auth
from mlapi.web.errors import APIError, field_error
from mlapi.web.model_reload import request_reload
from mlapi.web.openapi import Blueprint
from mlapi.web.runtime import registry
from mlapi.web.state import app_state

blp = Blueprint(
    "model_admin",
    __name__,
    url_prefix="/v1/admin/models",
    description="Reload the model store without a restart; route a model's `latest` among its versions by "
    "weight, sticky per account (admins only).",
)

MAX_VERSIONS = 32
RELOAD_ID_LENGTH = 36  # a UUID
MAX_WEIGHT = 1_000_000


class RoutingSchema(ma.Schema):
    weights = ma.fields.Dict(
        keys=ma.fields.String(validate=ma.validate.Regexp(NAME_PATTERN)),
        values=ma.fields.Integer(strict=True, validate=ma.validate.Range(0, MAX_WEIGHT)),
        required=True,
        validate=ma.validate.Length(min=1, max=MAX_VERSIONS),
        metadata={
            "description": "Version → weight (whole numbers, a positive sum).",
            "example": {"1.0": 90, "1.1": 10},
        },
    )

    @ma.validates("weights")
    def positive_sum(self, weights: dict, **_: object) -> None:
        if sum(weights.values()) <= 0:
            raise ma.ValidationError("The weights must add up to more than 0.")


class RouteSchema(ma.Schema):
    model = ma.fields.String(required=True)
    weights = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Integer(),
        required=True,
        allow_none=True,
        metadata={"description": "null: no routing, `latest` is the store's latest version."},
    )
    updated_at = ma.fields.DateTime(allow_none=True)


def _known_model(name: str) -> None:
    """404 naming the models that exist, unless ``name`` is one (503 while the models load)."""
    if name not in registry().store.manifests:
        registry().store.resolve(name)  # raises UnknownModel (404) naming the models that exist


@blp.route("/<name>/routing", methods=["GET"])
@requires_auth(blp, admin=True)
@blp.response(200, RouteSchema)
@blp.alt_response(404, description="No such model.")
def get_routing(name: str) -> dict:
    """How the model's `latest` is routed: weights by version, or null for the store's latest."""
    _known_model(name)
    route = model_routes.get_route(db.session, name)
    return {
        "model": name,
        "weights": route.weights if route else None,
        "updated_at": route.updated_at if route else None,
    }


@blp.route("/<name>/routing", methods=["PUT"])
@requires_auth(blp, admin=True)
@blp.arguments(RoutingSchema)
@blp.response(200, RouteSchema)
@blp.alt_response(404, description="No such model.")
def set_routing(body: dict, name: str) -> dict:
    """Share the model's `latest` among its versions by weight, sticky per account: an account keeps
    its version while the weights stay the same. Every worker and instance applies it within 2 s.

    A request naming a version gets that version. Versions past their sunset never get a share; a
    routing whose weighted versions are all past their sunset is refused."""
    _known_model(name)
    store, weights = registry().store, body["weights"]
    unknown = sorted(set(weights) - set(store.versions(name)))
    if unknown:
        message = f"model {name!r} has no version {unknown[0]!r}; its versions: {', '.join(store.versions(name))}"
        raise field_error("weights", message)
    live = store.live_versions(name, utcnow().date())
    if not any(weight > 0 and version in live for version, weight in weights.items()):
        raise field_error("weights", "every version with a weight has reached its sunset")
    route = model_routes.set_route(db.session, name, weights, actor=current_actor())
    app_state().routes.forget()
    return {"model": name, "weights": route.weights, "updated_at": route.updated_at}


@blp.route("/<name>/routing", methods=["DELETE"])
@requires_auth(blp, admin=True)
@blp.response(204)
@blp.alt_response(404, description="No such model.")
def clear_routing(name: str) -> None:
    """Back to plain `latest` (the store's latest version). A model gone from the store may still
    have its routing cleared."""
    if model_routes.get_route(db.session, name[:64]) is None:
        _known_model(name)
    model_routes.clear_route(db.session, name, actor=current_actor())
    app_state().routes.forget()


class ReloadStartedSchema(ma.Schema):
    reload_id = ma.fields.String(required=True)


class ReloadSchema(ReloadStartedSchema):
    state = ma.fields.String(required=True, metadata={"enum": ["pending", "done", "failed"]})
    error = ma.fields.String(allow_none=True, metadata={"description": "Why a worker's reload failed."})
    workers = ma.fields.Dict(
        keys=ma.fields.String(), values=ma.fields.String(), metadata={"description": "host:pid → done or failed."}
    )


@blp.route("/reload", methods=["POST"])
@requires_auth(blp, admin=True)
@blp.response(202, ReloadStartedSchema)
def reload_models() -> dict:
    """Every worker of this instance reads the model store again: new versions load and warm up in
    the background, edited manifests take effect, removed versions go; each worker then switches at
    once, and requests already running finish on what they started with. A broken manifest or
    weights that do not load leave the current models serving, and the reload `failed`.

    One call reloads the instance that answers it (as `kill -HUP` to its Gunicorn master does);
    call it once per instance. Follow it with `GET /v1/admin/models/reload/<reload_id>`."""
    app = current_app._get_current_object()  # type: ignore[attr-defined] (the app itself: a thread uses it)
    return {"reload_id": request_reload(app, current_account().username)}


@blp.route("/reload/<reload_id>", methods=["GET"])
@requires_auth(blp, admin=True)
@blp.response(200, ReloadSchema)
@blp.alt_response(404, description="No such reload.")
def reload_status(reload_id: str) -> dict:
    """How a reload stands: `pending` until every worker of the instance is `done`, or `failed` (with
    the first failure's reason) as soon as one failed."""
    found = model_reloads.status(db.session, reload_id) if len(reload_id) <= RELOAD_ID_LENGTH else None
    if found is None:
        raise APIError(404, f"no reload {reload_id[:RELOAD_ID_LENGTH]!r}", error="not_found")
    return {"reload_id": reload_id, "state": found.state, "error": found.error, "workers": found.workers}
