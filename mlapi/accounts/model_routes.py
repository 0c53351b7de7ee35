"""Model routes in the store: set, read and clear the weights of a model's versions, audited."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mlapi.accounts import audit
from mlapi.accounts.audit import Action, Actor
from mlapi.accounts.tables import ModelRoute


def all_routes(session: Session) -> dict[str, dict[str, int]]:
    return {route.model: dict(route.weights) for route in session.scalars(select(ModelRoute))}


def get_route(session: Session, model: str) -> ModelRoute | None:
    return session.get(ModelRoute, model)


def set_route(session: Session, model: str, weights: dict[str, int], *, actor: Actor) -> ModelRoute:
    """Store ``weights`` (already checked against the models served) for ``model``; audited."""
    try:
        return _set_route(session, model, weights, actor)
    except IntegrityError:  # another admin's first routing of this model committed in between
        session.rollback()
        return _set_route(session, model, weights, actor)


def _set_route(session: Session, model: str, weights: dict[str, int], actor: Actor) -> ModelRoute:
    route = session.get(ModelRoute, model)
    previous = dict(route.weights) if route else None
    if route is None:
        route = ModelRoute(model=model, weights=dict(weights))
        session.add(route)
    else:
        route.weights = dict(weights)
    audit.record(session, actor, Action.MODEL_ROUTING_SET, model, {"from": previous, "to": dict(weights)})
    session.commit()
    return route


def clear_route(session: Session, model: str, *, actor: Actor) -> bool:
    """Back to plain ``latest``; False if there was no route."""
    route = session.get(ModelRoute, model)
    if route is None:
        return False
    audit.record(session, actor, Action.MODEL_ROUTING_CLEARED, model, {"from": dict(route.weights)})
    session.delete(route)
    session.commit()
    return True
