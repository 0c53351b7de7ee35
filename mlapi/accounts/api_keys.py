"""API-key services: keys are shown once at creation and stored only as SHA-256 hashes.

A key carries scopes (what it may do) and models (what it may use). A key created by another key
(its parent) can hold no more than its parent: no other scope, no other model, no later expiry.
Revoking a key revokes every key created from it, so a leaked key's offspring die with it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from mlapi.accounts import audit
from mlapi.accounts.audit import Action, Actor
from mlapi.accounts.errors import Conflict, Forbidden, InvalidValue, NotFound
from mlapi.accounts.tables import ALL_MODELS, DEFAULT_SCOPES, SCOPES, ApiKey, User, utcnow

KEY_PREFIX = "mlapi_"
KEY_RANDOM_BYTES = 32
DISPLAY_PREFIX_LENGTH = len(KEY_PREFIX) + 6
# Writing last_used_at on every request would turn each read into a write; once a minute is plenty.
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_MODELS_PER_KEY = 50
MAX_MODEL_NAME = 64
MODEL_NAME = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_MODEL_NAME - 1}}}$")


def looks_like_api_key(value: str) -> bool:
    return value.startswith(KEY_PREFIX)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Grant:
    """What a credential may do: its scopes and the models it may use (``ALL_MODELS``: any)."""

    scopes: frozenset[str]
    models: frozenset[str]

    def allows_model(self, name: str) -> bool:
        return ALL_MODELS in self.models or name in self.models

    @classmethod
    def of(cls, record: ApiKey) -> Grant:
        return cls(frozenset(record.scopes), frozenset(record.models))


def checked_scopes(scopes: Iterable[str]) -> list[str]:
    """The scopes, sorted and without repeats; ``InvalidValue`` for none or an unknown one."""
    chosen = sorted(set(scopes))
    unknown = [scope for scope in chosen if scope not in SCOPES]
    if unknown or not chosen:
        raise InvalidValue(f"scopes must be one or more of {', '.join(SCOPES)}; got {', '.join(unknown) or 'none'}")
    return chosen


def checked_models(models: Iterable[str]) -> list[str]:
    """Model names (or ``*`` alone), sorted and without repeats; ``InvalidValue`` otherwise.

    Names are not checked against the models served today: a key may be made for a model
    before it is deployed.
    """
    chosen = sorted(set(models))
    if chosen == [ALL_MODELS]:
        return chosen
    if not 1 <= len(chosen) <= MAX_MODELS_PER_KEY or not all(MODEL_NAME.match(name) for name in chosen):
        raise InvalidValue(
            f"models must be '{ALL_MODELS}' alone, or 1 to {MAX_MODELS_PER_KEY} model names "
            f"(letters, digits, '.', '_', '-'; at most {MAX_MODEL_NAME} characters)"
        )
    return chosen


def create_api_key(
    session: Session,
    owner: User,
    label: str,
    expires_in_days: int | None = None,
    *,
    scopes: Iterable[str] | None = None,
    models: Iterable[str] | None = None,
    parent_key_id: int | None = None,
    login_session_id: str | None = None,
    actor: Actor | None = None,
) -> tuple[ApiKey, str]:
    """A new key for ``owner``: the record and the key itself, which is never retrievable again.

    ``scopes`` and ``models`` default to ``DEFAULT_SCOPES`` and every model. With ``parent_key_id``
    (a key creating a key) the new key holds a subset of the parent's scopes and models and expires
    no later than it, ``Forbidden`` otherwise; the defaults are then narrowed to the parent's. The admin scope is
    for administrators' keys only. ``login_session_id``: the password login that asks, whose end
    on a detected theft takes the key with it (``revoke_keys_of_session``). With an ``actor``,
    the audit row (key id and prefix, never the key) commits with the key.
    """
    now = utcnow()
    expires_at = now + timedelta(days=expires_in_days) if expires_in_days else None
    parent = _locked_parent(session, owner, parent_key_id, now) if parent_key_id is not None else None
    scopes = checked_scopes(_default_scopes(parent) if scopes is None else scopes)
    models = checked_models(_default_models(parent) if models is None else models)
    if "admin" in scopes and not owner.is_admin:
        raise Forbidden("only an administrator's key may carry the admin scope", "insufficient_scope")
    if parent is not None:
        expires_at = _within_parent(parent, scopes, models, expires_at)
    key = KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)
    record = ApiKey(
        owner=owner,
        label=label,
        prefix=key[:DISPLAY_PREFIX_LENGTH],
        key_hash=hash_key(key),
        created_at=now,
        expires_at=expires_at,
        scopes=scopes,
        models=models,
        parent_key_id=parent_key_id,
        login_session_id=login_session_id,
    )
    session.add(record)
    if actor is not None:
        session.flush()  # assigns the id that the audit row names
        audit.record(session, actor, Action.KEY_CREATED, owner.username, _key_detail(record))
    session.commit()
    return record, key


def _locked_parent(session: Session, owner: User, parent_key_id: int, now: datetime) -> ApiKey:
    """The key creating a key, valid, locked until the child is committed.

    Locked before it is read, so that a revocation of the parent cannot slip in between and leave
    a live child behind. A write is what locks on every database: it takes the row on PostgreSQL
    and the whole database on SQLite, where SELECT ... FOR UPDATE locks nothing.
    """
    session.execute(update(ApiKey).where(ApiKey.id == parent_key_id).values(parent_key_id=ApiKey.parent_key_id))
    query = select(ApiKey).where(ApiKey.id == parent_key_id).execution_options(populate_existing=True)
    parent = session.scalars(query).one_or_none()
    if parent is None or parent.user_id != owner.id:
        raise NotFound(f"no API key {parent_key_id} of user {owner.username!r}")
    if parent.revoked_at is not None or (parent.expires_at is not None and parent.expires_at <= now):
        raise Conflict(f"API key {parent_key_id} is no longer valid")
    return parent


def _default_scopes(parent: ApiKey | None) -> list[str]:
    """The default scopes; for a key's child, those of them the parent holds (a key without
    ``usage:read``, made before it joined the defaults, still makes children without naming scopes)."""
    if parent is None:
        return list(DEFAULT_SCOPES)
    narrowed = [scope for scope in DEFAULT_SCOPES if scope in parent.scopes]
    if not narrowed:
        raise Forbidden(
            "this key holds none of the default scopes; name the scopes the new key should have", "insufficient_scope"
        )
    return narrowed


def _default_models(parent: ApiKey | None) -> list[str]:
    return [ALL_MODELS] if parent is None else list(parent.models)


def _within_parent(
    parent: ApiKey, scopes: list[str], models: list[str], expires_at: datetime | None
) -> datetime | None:
    """Refuse a child key that would hold more than its parent; the child's expiry, capped by the parent's."""
    grant = Grant.of(parent)
    beyond = [scope for scope in scopes if scope not in grant.scopes]
    if beyond:
        raise Forbidden(f"this key lacks the scope {beyond[0]!r}, so it cannot grant it", "insufficient_scope")
    if ALL_MODELS not in grant.models and not set(models) <= grant.models:
        raise Forbidden(
            f"this key may use only {', '.join(sorted(grant.models))}, so it cannot grant others", "model_not_allowed"
        )
    if parent.expires_at is not None and (expires_at is None or expires_at > parent.expires_at):
        return parent.expires_at
    return expires_at


def list_api_keys(session: Session, owner: User, *, within: int | None = None) -> list[ApiKey]:
    """The owner's keys; with ``within`` (a key's id), only that key and the keys created from it."""
    keys = list(session.scalars(select(ApiKey).where(ApiKey.user_id == owner.id).order_by(ApiKey.id)))
    if within is None:
        return keys
    lineage = _lineage(keys, within)
    return [key for key in keys if key.id in lineage]


def revoke_api_key(
    session: Session,
    key_id: int,
    owner: User | None = None,
    *,
    within: int | None = None,
    actor: Actor | None = None,
) -> list[ApiKey]:
    """Revoke a key and every key created from it, at any depth; each gets its own audit row.

    Only keys of ``owner`` when given, and only ``within``'s lineage (that key and the keys it
    created) when given: a key manages its own offspring, not its siblings or its parent.
    Revoking twice is harmless and audited once. Returns the keys this call revoked.
    """
    missing = NotFound(f"no API key {key_id}" + (f" of user {owner.username!r}" if owner else ""))
    record = session.get(ApiKey, key_id)
    if record is None or (owner is not None and record.user_id != owner.id):
        raise missing
    keys = _keys_of(session, record.user_id)
    if within is not None and key_id not in _lineage(keys, within):
        raise missing
    now, revoked = utcnow(), []
    # Until a pass finds nothing new. Writing revoked_at locks each row (PostgreSQL) or the whole
    # database (SQLite), and creating a key locks its parent's row (create_api_key): a child
    # committed while this runs is seen by the next pass, and none can be created after it.
    while True:
        lineage = _lineage(keys, key_id)
        found = sorted((k for k in keys if k.id in lineage and k.revoked_at is None), key=lambda k: k.id)
        if not found:
            break
        for key in found:
            key.revoked_at = now
            if actor is not None:
                detail = _key_detail(key) | ({} if key.id == key_id else {"revoked_with": key_id})
                audit.record(session, actor, Action.KEY_REVOKED, record.owner.username, detail)
        session.flush()
        revoked += found
        keys = _keys_of(session, record.user_id)
    session.commit()
    return revoked


def _keys_of(session: Session, user_id: int) -> list[ApiKey]:
    """Every key of the user as the database has them now (not as this session last saw them)."""
    query = select(ApiKey).where(ApiKey.user_id == user_id).execution_options(populate_existing=True)
    return list(session.scalars(query))


def revoke_keys_of_session(session: Session, login_session_id: str, *, actor: Actor | None = None) -> list[ApiKey]:
    """Revoke every key a login session created, and the keys created from those."""
    made = session.scalars(
        select(ApiKey.id).where(ApiKey.login_session_id == login_session_id, ApiKey.revoked_at.is_(None))
    ).all()
    return [key for key_id in made for key in revoke_api_key(session, key_id, actor=actor)]


def revoke_all_keys(session: Session, owner: User, *, actor: Actor | None = None) -> list[ApiKey]:
    """Revoke every key of ``owner``."""
    live = session.scalars(select(ApiKey.id).where(ApiKey.user_id == owner.id, ApiKey.revoked_at.is_(None))).all()
    return [key for key_id in live for key in revoke_api_key(session, key_id, owner=owner, actor=actor)]


def _lineage(keys: list[ApiKey], root: int) -> set[int]:
    """``root`` and the ids of every key created from it, directly or through other keys."""
    children: dict[int, list[int]] = {}
    for key in keys:
        if key.parent_key_id is not None:
            children.setdefault(key.parent_key_id, []).append(key.id)
    found, frontier = {root}, [root]
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in found:
                found.add(child)
                frontier.append(child)
    return found


def _key_detail(record: ApiKey) -> dict[str, object]:
    return {
        "key_id": record.id,
        "prefix": record.prefix,
        "label": record.label,
        "scopes": list(record.scopes),
        "models": list(record.models),
        "parent_key_id": record.parent_key_id,
    }


@dataclass(frozen=True)
class KeyOwner:
    """What authentication needs of a key's owner, read in the same query as the key."""

    id: int
    username: str
    tier: str
    is_admin: bool
    monthly_quota: int | None = None  # the account's overrides of its tier's limits
    rate_limit: str | None = None


@dataclass(frozen=True)
class KeyCheck:
    """The outcome of presenting a key: its owner, or why it was refused."""

    owner: KeyOwner | None
    key_id: int | None
    failure: str | None  # unknown_key, revoked_key, expired_key, disabled_user
    expires_at: datetime | None = None  # of an accepted key
    grant: Grant | None = None  # of an accepted key


_keys, _users = ApiKey.__table__, User.__table__
# Built once: a Core statement with a bound parameter is compiled and cached once, where an ORM
# select built per call pays for its cache key and ORM compile state on every request.
_KEY_AND_OWNER = (
    select(
        _keys.c.id,
        _keys.c.revoked_at,
        _keys.c.expires_at,
        _keys.c.last_used_at,
        _keys.c.scopes,
        _keys.c.models,
        _users.c.id,
        _users.c.username,
        _users.c.tier,
        _users.c.is_admin,
        _users.c.disabled,
        _users.c.monthly_quota,
        _users.c.rate_limit,
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
    (key_id, revoked_at, expires_at, last_used_at, scopes, models, user_id, username, tier, is_admin, disabled) = row[
        :11
    ]
    monthly_quota, rate_limit = row[11:]
    if revoked_at is not None:
        return KeyCheck(None, key_id, "revoked_key")
    if expires_at is not None and expires_at <= now:
        return KeyCheck(None, key_id, "expired_key")
    if disabled:
        return KeyCheck(None, key_id, "disabled_user")
    if last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION:
        session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))
        session.commit()
    grant = Grant(frozenset(scopes), frozenset(models))
    return KeyCheck(
        KeyOwner(user_id, username, tier, is_admin, monthly_quota, rate_limit), key_id, None, expires_at, grant
    )
