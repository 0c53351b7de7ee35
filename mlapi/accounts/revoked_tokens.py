"""JWT revocation: a blocklist of token IDs, each kept until the token would have expired."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mlapi.accounts.tables import RevokedToken, utcnow


def revoke_token(session: Session, jti: str, expires_at: datetime) -> None:
    session.add(RevokedToken(jti=jti, expires_at=expires_at))
    try:
        session.commit()
    except IntegrityError:  # revoked already, perhaps by a concurrent request
        session.rollback()


def is_token_revoked(session: Session, jti: str) -> bool:
    return session.scalar(select(RevokedToken.jti).where(RevokedToken.jti == jti)) is not None


def prune_revoked_tokens(session: Session) -> int:
    """Forget revocations of tokens that have expired anyway; returns how many."""
    result = session.execute(delete(RevokedToken).where(RevokedToken.expires_at < utcnow()))
    session.commit()
    return result.rowcount or 0
