"""Login sessions: refresh-token rotation with reuse detection, and ending every session of a user.

A session begins at each password login and lives until a fixed time (rotation never extends it).
Every token issued from it names it; the web layer puts the session id in the JWT (``sid``) and
refuses a token whose session has ended. Following the OAuth 2.0 Security Best Current Practice
(section 4.14), each refresh spends the refresh token and issues the next one; a spent refresh
token presented again means that two parties hold it, so the session ends for both.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from mlapi.accounts import api_keys, audit
from mlapi.accounts.audit import Action, Actor
from mlapi.accounts.errors import StoreError
from mlapi.accounts.tables import LoginSession, User, utcnow


class EndReason(StrEnum):
    LOGOUT = "logout"
    REFRESH_REUSED = "refresh_reused"
    PASSWORD_CHANGED = "password_changed"
    USER_DISABLED = "user_disabled"


class SessionEnded(StoreError):
    """The session was ended (or has expired, or never existed): its tokens are refused."""


class RefreshTokenReused(StoreError):
    """A spent refresh token was presented: the session has now been ended."""


@dataclass(frozen=True)
class Issued:
    """What the web layer puts in the next refresh token: the session, its new token id and its end."""

    session_id: str
    refresh_jti: str
    expires_at: datetime


def new_token_id() -> str:
    return uuid.uuid4().hex


def start(session: Session, user: User, lifetime: timedelta) -> Issued:
    """A new login session for ``user`` (as authenticated), ending ``lifetime`` from now.

    ``SessionEnded`` if the password changed or the account was disabled since ``user`` was read:
    a password change or a disable that commits while a login checks the old password must not
    leave that login a session. The user's row stays locked until the session is committed, so a
    change that comes later ends it (``end_all``).
    """
    unchanged = session.execute(
        update(User)
        .where(User.id == user.id, User.password_hash == user.password_hash, User.disabled.is_(False))
        .values(password_hash=User.password_hash, updated_at=User.updated_at)  # a lock, not a change
        .execution_options(synchronize_session=False)
    )
    if unchanged.rowcount != 1:
        session.rollback()
        raise SessionEnded("The account changed during the login (a new password, or disabled); log in again.")
    record = LoginSession(
        id=str(uuid.uuid4()), user_id=user.id, expires_at=utcnow() + lifetime, refresh_jti=new_token_id()
    )
    session.add(record)
    session.commit()
    return Issued(record.id, record.refresh_jti, record.expires_at)


def rotate(session: Session, session_id: str, presented_jti: str, *, username: str, actor: Actor) -> Issued:
    """Spend the presented refresh token and issue the next one, atomically.

    ``RefreshTokenReused`` (after ending the session, with an audit row) when the token was spent
    already; ``SessionEnded`` when the session has ended or expired.
    """
    now, next_jti = utcnow(), new_token_id()
    spent = session.execute(
        update(LoginSession)
        .where(
            LoginSession.id == session_id,
            LoginSession.refresh_jti == presented_jti,
            LoginSession.revoked_at.is_(None),
            LoginSession.expires_at > now,
        )
        .values(refresh_jti=next_jti)
    )
    if spent.rowcount == 1:
        expires_at = session.scalar(select(LoginSession.expires_at).where(LoginSession.id == session_id))
        session.commit()
        assert expires_at is not None
        return Issued(session_id, next_jti, expires_at)
    record = session.get(LoginSession, session_id, with_for_update=True, populate_existing=True)
    if record is None or record.revoked_at is not None or record.expires_at <= now:
        session.rollback()
        raise SessionEnded("The login session has ended; log in again.")
    record.revoked_at, record.revoked_reason = now, EndReason.REFRESH_REUSED.value
    audit.record(session, actor, Action.SESSION_REFRESH_REUSED, username, {"session_id": session_id})
    session.commit()
    # Whoever held the copy may have made keys with it: what the session made goes with it.
    api_keys.revoke_keys_of_session(session, session_id, actor=actor)
    raise RefreshTokenReused(
        "This refresh token was already used, so a copy of it exists: the login session has been ended, "
        "every token issued from it refused and every API key it created revoked. Log in again."
    )


def end(session: Session, session_id: str, reason: EndReason) -> None:
    """End one session (a logout); ending an ended session changes nothing."""
    session.execute(
        update(LoginSession)
        .where(LoginSession.id == session_id, LoginSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason.value)
    )
    session.commit()


def end_all(session: Session, user_id: int, reason: EndReason) -> int:
    """End every session of a user, in the caller's transaction (the caller commits); how many."""
    result = session.execute(
        update(LoginSession)
        .where(LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason.value)
    )
    return result.rowcount or 0


def user_of_live_session(session: Session, user_id: int, session_id: str) -> tuple[User | None, bool]:
    """The user, and whether tokens of this session of theirs may still be used (it exists, is
    theirs, has not ended): one query, on every request with a token."""
    row = session.execute(
        select(User, LoginSession.revoked_at, LoginSession.expires_at)
        .outerjoin(LoginSession, (LoginSession.id == session_id) & (LoginSession.user_id == User.id))
        .where(User.id == user_id)
    ).one_or_none()
    if row is None:
        return None, False
    user, revoked_at, expires_at = row
    return user, expires_at is not None and revoked_at is None and expires_at > utcnow()


def prune(session: Session) -> int:
    """Forget sessions that have expired (their tokens have expired with them); returns how many."""
    result = session.execute(delete(LoginSession).where(LoginSession.expires_at < utcnow()))
    session.commit()
    return result.rowcount or 0
