"""API-key services: keys are shown once at creation and stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from mlapi.store import audit
from mlapi.store.audit import Action, Actor
from mlapi.store.errors import NotFound
from mlapi.store.models import ApiKey, User, utcnow

KEY_PREFIX = "mlapi_"
KEY_RANDOM_BYTES = 32
DISPLAY_PREFIX_LENGTH = len(KEY_PREFIX) + 6
# Writing last_used_at on every request would turn each read into a write; once a minute is plenty.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def looks_like_api_key(value: str) -> bool:
    return value.startswith(KEY_PREFIX)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(
    session: Session, owner: User, label: str, expires_in_days: int | None = None, *, actor: Actor | None = None
) -> tuple[ApiKey, str]:
    """A new key for ``owner``: the record and the key itself, which is never retrievable again.

    With an ``actor``, the audit row (key id and prefix, never the key) commits with the key.
    """
    key = KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)
    now = utcnow()
    record = ApiKey(
        owner=owner,
        label=label,
        prefix=key[:DISPLAY_PREFIX_LENGTH],
        key_hash=hash_key(key),
        created_at=now,
        expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    session.add(record)
    if actor is not None:
        session.flush()  # assigns the id that the audit row names
        audit.record(session, actor, Action.KEY_CREATED, owner.username, _key_detail(record))
    session.commit()
    return record, key


def list_api_keys(session: Session, owner: User) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).where(ApiKey.user_id == owner.id).order_by(ApiKey.id)))


def revoke_api_key(
    session: Session, key_id: int, owner: User | None = None, *, actor: Actor | None = None
) -> ApiKey:
    """Revoke a key (of ``owner`` only, when given). Revoking twice is harmless and audited once."""
    record = session.get(ApiKey, key_id)
    if record is None or (owner is not None and record.user_id != owner.id):
        raise NotFound(f"no API key {key_id}" + (f" of user {owner.username!r}" if owner else ""))
    if record.revoked_at is None:
        record.revoked_at = utcnow()
        if actor is not None:
            audit.record(session, actor, Action.KEY_REVOKED, record.owner.username, _key_detail(record))
        session.commit()
    return record


def _key_detail(record: ApiKey) -> dict[str, object]:
    return {"key_id": record.id, "prefix": record.prefix, "label": record.label}


@dataclass(frozen=True)
class KeyOwner:
    """What authentication needs of a key's owner, read in the same query as the key."""

    id: int
    username: str
    tier: str
    is_admin: bool


@dataclass(frozen=True)
class KeyCheck:
    """The outcome of presenting a key: its owner, or why it was refused."""

    owner: KeyOwner | None
    key_id: int | None
    failure: str | None  # unknown_key, revoked_key, expired_key, disabled_user
    expires_at: datetime | None = None  # of an accepted key


_keys, _users = ApiKey.__table__, User.__table__
# Built once: a Core statement with a bound parameter is compiled and cached once, where an ORM
# select built per call pays for its cache key and ORM compile state on every request.
_KEY_AND_OWNER = (
    select(
        _keys.c.id, _keys.c.revoked_at, _keys.c.expires_at, _keys.c.last_used_at,
        _users.c.id, _users.c.username, _users.c.tier, _users.c.is_admin, _users.c.disabled,
    )
    .join_from(_keys, _users, _keys.c.user_id == _users.c.id)
    .where(_keys.c.key_hash == bindparam("key_hash"))
)


def check_api_key(session: Session, key: str, now: datetime | None = None) -> KeyCheck:
    """One indexed query for the key and its owner (this runs on every request with a key)."""
    now = now or utcnow()
    row = session.connection().execute(_KEY_AND_OWNER, {"key_hash": hash_key(key)}).one_or_none()
    if row is None:
        return KeyCheck(None, None, "unknown_key")
    key_id, revoked_at, expires_at, last_used_at, user_id, username, tier, is_admin, disabled = row
    if revoked_at is not None:
        return KeyCheck(None, key_id, "revoked_key")
    if expires_at is not None and expires_at <= now:
        return KeyCheck(None, key_id, "expired_key")
    if disabled:
        return KeyCheck(None, key_id, "disabled_user")
    if last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION:
        session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))
        session.commit()
    return KeyCheck(KeyOwner(user_id, username, tier, is_admin), key_id, None, expires_at)
