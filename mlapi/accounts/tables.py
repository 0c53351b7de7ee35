"""SQLAlchemy 2.x declarative models of the store: users, API keys, login sessions, revoked tokens, audit
events, usage rollups, and model routes."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from mlapi.config import TIERS

# Stable constraint names so that Alembic migrations can alter them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Where an administrative action came from: the HTTP API or the `mlapi` command.
AUDIT_SOURCES = ("api", "cli")

# What an API key may do. A password login (JWT) may do everything its account may.
SCOPES = ("inference", "models:read", "usage:read", "keys:write", "admin")
DEFAULT_SCOPES = ("inference", "models:read", "usage:read")
# The models a key may use: these names, or every model.
ALL_MODELS = "*"


# SQLite auto-increments only an INTEGER PRIMARY KEY; elsewhere the rollups' ids are 64-bit.
INTEGER_FOR_SQLITE = Integer()


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC, always returns timezone-aware datetimes (SQLite would drop the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(f"tier IN {TIERS!r}", name="tier"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    email: Mapped[str | None] = mapped_column(String(254))
    full_name: Mapped[str | None] = mapped_column(String(128))
    password_hash: Mapped[str] = mapped_column(String(255))
    tier: Mapped[str] = mapped_column(String(16), default="free")
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Overrides of the tier's limits for this account (None: the tier's): items per calendar month,
    # and a per-minute (or other) rate limit such as "500/minute".
    monthly_quota: Mapped[int | None] = mapped_column(BigInteger)
    rate_limit: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    api_keys: Mapped[list[ApiKey]] = relationship(back_populates="owner", cascade="all, delete-orphan")

    def __repr__(self) -> str:
        return f"<User {self.username} tier={self.tier}>"


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(100))
    # The first characters of the key, shown in listings so that owners can tell keys apart.
    prefix: Mapped[str] = mapped_column(String(16))
    # SHA-256 of the whole key: the key itself is never stored.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Sorted lists of names from SCOPES, and of model names (or ALL_MODELS).
    # The server defaults serve the workers of the previous release during a rolling upgrade.
    scopes: Mapped[list[str]] = mapped_column(
        JSON, default=lambda: list(DEFAULT_SCOPES), server_default=text(f"'{json.dumps(list(DEFAULT_SCOPES))}'")
    )
    models: Mapped[list[str]] = mapped_column(
        JSON, default=lambda: [ALL_MODELS], server_default=text(f"'{json.dumps([ALL_MODELS])}'")
    )
    # The key that created this one (None: created by a password login or the CLI); revoking a
    # key revokes the keys it created.
    parent_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"), index=True)
    # The login session that created it (None: a key or the CLI did): if that session proves
    # stolen (a refresh token used twice), what it created is revoked with it.
    login_session_id: Mapped[str | None] = mapped_column(
        ForeignKey("login_sessions.id", ondelete="SET NULL"), index=True
    )

    owner: Mapped[User] = relationship(back_populates="api_keys")

    def __repr__(self) -> str:
        return f"<ApiKey {self.id} {self.prefix}…>"


class LoginSession(Base):
    """One password login: every refresh and access token issued from it carries its id (``sid``).

    Refresh tokens rotate: only the latest one (``refresh_jti``) may be exchanged. Presenting an
    earlier one means a copy of it exists, so the whole session ends. Ending a session refuses
    every token that carries its id, access tokens included.
    """

    __tablename__ = "login_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Fixed at login: rotation never extends a session.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    refresh_jti: Mapped[str] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # logout, refresh_reused, password_changed, user_disabled
    revoked_reason: Mapped[str | None] = mapped_column(String(32))


class RevokedToken(Base):
    """A revoked JWT, kept until it would have expired anyway, then pruned."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEvent(Base):
    """One administrative action: who did what to which account, when, and through which door.

    Names, not foreign keys: the record must outlive the accounts and keys it mentions.
    """

    __tablename__ = "audit_events"
    __table_args__ = (CheckConstraint(f"source IN {AUDIT_SOURCES!r}", name="source"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The acting account's username (API) or ``cli:<OS user>``.
    actor: Mapped[str] = mapped_column(String(128), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    # The username of the account acted on (the model's name, for a model's routing).
    target: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(8))
    # The API key the actor presented (None: a password login, or the CLI).
    actor_key_id: Mapped[int | None] = mapped_column()
    request_id: Mapped[str | None] = mapped_column(String(128))
    ip_address: Mapped[str | None] = mapped_column(String(45))
    # What changed (tier from/to, key id and prefix); never a password or a key.
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    def __repr__(self) -> str:
        return f"<AuditEvent {self.id} {self.actor} {self.action} {self.target}>"


# What a metered request went through: the endpoint family.
USAGE_FAMILIES = ("predict", "batch", "embeddings", "v2")


class UsageRollup(Base):
    """What one credential of an account used of one model version through one endpoint family, in
    one UTC day. Workers add their counts to it (an upsert); nothing else writes it.

    ``credential`` is ``key:<id>`` or ``session:<login session id>``: never NULL, so that the unique
    constraint that the upsert relies on holds on every backend (NULLs are distinct in one).
    """

    __tablename__ = "usage_rollups"
    __table_args__ = (
        UniqueConstraint(
            "account_id", "day", "credential", "model", "model_version", "family", name="uq_usage_rollups_cell"
        ),
        Index("ix_usage_rollups_day", "day"),
        CheckConstraint(f"family IN {USAGE_FAMILIES!r}", name="family"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(INTEGER_FOR_SQLITE, "sqlite"), primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    # No cascade: what an account used is a billing record, kept while the rollup is retained.
    account_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    credential: Mapped[str] = mapped_column(String(48))
    model: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(64))
    family: Mapped[str] = mapped_column(String(16))
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    items: Mapped[int] = mapped_column(BigInteger, default=0)
    cached_items: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    model_ms: Mapped[float] = mapped_column(Double, default=0.0)


class UsageFlush(Base):
    """A batch of counts a worker added to the rollups, recorded in the same transaction.

    A flush whose commit failed in a way that leaves its outcome unknown (the connection dropped
    during COMMIT) is retried under the same id: if the id is here, it had committed, and the
    counts are not added twice.
    """

    __tablename__ = "usage_flushes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    flushed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class ModelRoute(Base):
    """How requests for a model's ``latest`` are shared out among its versions: weights by version,
    sticky per account (mlapi.serving.routing). No row: ``latest`` means the store's latest."""

    __tablename__ = "model_routes"

    model: Mapped[str] = mapped_column(String(64), primary_key=True)
    weights: Mapped[dict[str, int]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ModelReload(Base):
    """A request to read the model store again, for the workers of one instance (a Gunicorn master)."""

    __tablename__ = "model_reloads"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # hostname:master pid: the workers that signal reaches.
    instance: Mapped[str] = mapped_column(String(128), index=True)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    requested_by: Mapped[str] = mapped_column(String(128))
    workers: Mapped[int] = mapped_column()  # how many report back when it is done


class ModelReloadResult(Base):
    """How one worker's reload ended: ``done`` or ``failed`` (with the reason)."""

    __tablename__ = "model_reload_results"

    reload_id: Mapped[str] = mapped_column(ForeignKey("model_reloads.id", ondelete="CASCADE"), primary_key=True)
    worker: Mapped[str] = mapped_column(String(128), primary_key=True)  # hostname:pid
    state: Mapped[str] = mapped_column(String(8))
    error: Mapped[str | None] = mapped_column(String(2000))
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
