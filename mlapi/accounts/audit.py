"""The audit log: administrative actions, recorded in the transaction of the change they describe.

``record`` only adds the row to the session: the service that owns the change commits both at once,
so an action and its audit row are stored together or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from mlapi.accounts.tables import AuditEvent


class Action(StrEnum):
    """Stable names: operators filter and alert on them."""

    USER_CREATED = "user.created"
    USER_TIER_CHANGED = "user.tier_changed"
    USER_DISABLED = "user.disabled"
    USER_ENABLED = "user.enabled"
    USER_ADMIN_GRANTED = "user.admin_granted"
    USER_ADMIN_REVOKED = "user.admin_revoked"
    USER_PASSWORD_CHANGED = "user.password_changed"
    USER_MONTHLY_QUOTA_CHANGED = "user.monthly_quota_changed"
    USER_RATE_LIMIT_CHANGED = "user.rate_limit_changed"
    KEY_CREATED = "key.created"
    KEY_REVOKED = "key.revoked"
    # A model's routing of 'latest' among its versions (the target is the model's name).
    MODEL_ROUTING_SET = "model.routing_set"
    MODEL_ROUTING_CLEARED = "model.routing_cleared"
    # A spent refresh token was presented again: a copy exists, so the login session was ended.
    SESSION_REFRESH_REUSED = "session.refresh_reused"


ACTIONS = tuple(action.value for action in Action)


@dataclass(frozen=True)
class Actor:
    """Who acts, and through which door; request ID, client address and the key used come with the API."""

    name: str
    source: Literal["api", "cli"]
    request_id: str | None = None
    ip_address: str | None = None
    api_key_id: int | None = None  # None: a password login, or the CLI


def record(
    session: Session, actor: Actor, action: Action, target: str, detail: dict[str, Any] | None = None
) -> AuditEvent:
    """Add an audit row to the session's transaction; the caller commits it with the change."""
    event = AuditEvent(
        actor=actor.name,
        action=action.value,
        target=target,
        source=actor.source,
        actor_key_id=actor.api_key_id,
        request_id=actor.request_id,
        ip_address=actor.ip_address,
        detail=detail,
    )
    session.add(event)
    return event


def list_events(
    session: Session,
    *,
    action: str | None = None,
    actor: str | None = None,
    target: str | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> tuple[list[AuditEvent], int]:
    """Matching events newest first, a page at a time, and how many match in all."""
    query = _filtered(select(AuditEvent), action=action, actor=actor, target=target)
    total = (
        session.scalar(
            _filtered(select(func.count()).select_from(AuditEvent), action=action, actor=actor, target=target)
        )
        or 0
    )
    # Database-assigned ids give one order across hosts whose clocks may disagree.
    events = session.scalars(query.order_by(AuditEvent.id.desc()).offset(offset).limit(limit)).all()
    return list(events), total


def _filtered(query: Select, *, action: str | None, actor: str | None, target: str | None) -> Select:
    for column, value in ((AuditEvent.action, action), (AuditEvent.actor, actor), (AuditEvent.target, target)):
        if value is not None:
            query = query.where(column == value)
    return query
