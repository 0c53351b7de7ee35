"""Account services: create, authenticate, look up and administer users."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mlapi.config import TIERS
from mlapi.store import audit
from mlapi.store.audit import Action, Actor
from mlapi.store.errors import Conflict, InvalidValue, NotFound
from mlapi.store.models import User
from mlapi.store.passwords import hash_password, needs_rehash, verify_password


def create_user(
    session: Session,
    username: str,
    password: str,
    *,
    tier: str = "free",
    is_admin: bool = False,
    email: str | None = None,
    full_name: str | None = None,
    actor: Actor | None = None,
) -> User:
    """Create a user; with an ``actor`` (an administrative action) the audit row commits with it."""
    _check_tier(tier)
    user = User(
        username=username,
        password_hash=hash_password(password),
        tier=tier,
        is_admin=is_admin,
        email=email,
        full_name=full_name,
    )
    session.add(user)
    if actor is not None:
        audit.record(session, actor, Action.USER_CREATED, username, {"tier": tier, "is_admin": is_admin})
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"user {username!r} already exists") from None
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The user whose password this is, else None; as slow for an unknown name as for a wrong password."""
    user = find_user(session, username)
    if not verify_password(user.password_hash if user else None, password):
        return None
    assert user is not None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        session.commit()
    return user


def find_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def get_user(session: Session, username: str) -> User:
    user = find_user(session, username)
    if user is None:
        raise NotFound(f"no user {username!r}")
    return user


def list_users(session: Session, *, offset: int = 0, limit: int | None = None) -> tuple[list[User], int]:
    total = session.scalar(select(func.count()).select_from(User)) or 0
    users = session.scalars(select(User).order_by(User.id).offset(offset).limit(limit)).all()
    return list(users), total


def update_user(
    session: Session,
    username: str,
    *,
    tier: str | None = None,
    disabled: bool | None = None,
    is_admin: bool | None = None,
    actor: Actor | None = None,
) -> User:
    """Apply the given changes; with an ``actor``, one audit row per actual change, in the same commit."""
    user = get_user(session, username)
    changes: list[tuple[Action, dict | None]] = []
    if tier is not None:
        _check_tier(tier)
        if tier != user.tier:
            changes.append((Action.USER_TIER_CHANGED, {"from": user.tier, "to": tier}))
        user.tier = tier
    if disabled is not None:
        if disabled != user.disabled:
            changes.append((Action.USER_DISABLED if disabled else Action.USER_ENABLED, None))
        user.disabled = disabled
    if is_admin is not None:
        if is_admin != user.is_admin:
            changes.append((Action.USER_ADMIN_GRANTED if is_admin else Action.USER_ADMIN_REVOKED, None))
        user.is_admin = is_admin
    if actor is not None:
        for action, detail in changes:
            audit.record(session, actor, action, username, detail)
    session.commit()
    return user


def _check_tier(tier: str) -> None:
    if tier not in TIERS:
        raise InvalidValue(f"unknown tier {tier!r}; expected one of {', '.join(TIERS)}")
