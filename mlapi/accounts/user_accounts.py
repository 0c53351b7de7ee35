"""Account services: create, authenticate, look up and administer users."""

from __future__ import annotations

from limits import parse_many
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mlapi.accounts import api_keys, audit, sessions
from mlapi.accounts.audit import Action, Actor
from mlapi.accounts.errors import Conflict, Forbidden, InvalidValue, NotFound
from mlapi.accounts.passwords import MAX_PASSWORD, MIN_PASSWORD, hash_password, needs_rehash, verify_password
from mlapi.accounts.tables import User
from mlapi.config import MAX_MONTHLY_QUOTA, TIERS

# An account's own rate limit: the moving window keeps one entry per hit in Redis, so the largest
# amount bounds that memory (and a typo of a few zeros must not lift the limit altogether).
MAX_RATE_LIMIT_AMOUNT = 100_000
MAX_RATE_LIMIT_LENGTH = 64
MAX_RATE_LIMIT_WINDOW_S = 24 * 3600


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


# "Leave it as it is", for settings where None means "the tier's".
UNCHANGED: _Unchanged = _Unchanged()


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
    _check_password(password)
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
    monthly_quota: int | None | _Unchanged = UNCHANGED,
    rate_limit: str | None | _Unchanged = UNCHANGED,
    actor: Actor | None = None,
) -> User:
    """Apply the given changes; with an ``actor``, one audit row per actual change, in the same commit.

    ``monthly_quota`` (items) and ``rate_limit`` (``"500/minute"``) override the tier's for this
    account; None goes back to the tier's.
    """
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
        if disabled:
            # For good: enabling the account again does not bring these sessions back.
            sessions.end_all(session, user.id, sessions.EndReason.USER_DISABLED)
        user.disabled = disabled
    if is_admin is not None:
        if is_admin != user.is_admin:
            changes.append((Action.USER_ADMIN_GRANTED if is_admin else Action.USER_ADMIN_REVOKED, None))
        user.is_admin = is_admin
    if not isinstance(monthly_quota, _Unchanged):
        check_monthly_quota(monthly_quota)
        if monthly_quota != user.monthly_quota:
            changes.append((Action.USER_MONTHLY_QUOTA_CHANGED, {"from": user.monthly_quota, "to": monthly_quota}))
        user.monthly_quota = monthly_quota
    if not isinstance(rate_limit, _Unchanged):
        check_rate_limit(rate_limit)
        if rate_limit != user.rate_limit:
            changes.append((Action.USER_RATE_LIMIT_CHANGED, {"from": user.rate_limit, "to": rate_limit}))
        user.rate_limit = rate_limit
    if actor is not None:
        for action, detail in changes:
            audit.record(session, actor, action, username, detail)
    session.commit()
    return user


def change_password(
    session: Session,
    username: str,
    new_password: str,
    *,
    current_password: str | None = None,
    revoke_api_keys: bool = False,
    actor: Actor,
) -> User:
    """Set a new password and end every login session of the user (their access and refresh tokens).

    With ``current_password`` (the user acting for themselves) it must be right, else ``Forbidden``.
    API keys are not sessions: they stay valid unless ``revoke_api_keys``.
    """
    _check_password(new_password)
    user = get_user(session, username)
    if current_password is not None and not verify_password(user.password_hash, current_password):
        raise Forbidden("The current password is not correct.", "wrong_password")
    user.password_hash = hash_password(new_password)
    ended = sessions.end_all(session, user.id, sessions.EndReason.PASSWORD_CHANGED)
    audit.record(session, actor, Action.USER_PASSWORD_CHANGED, username, {"sessions_ended": ended})
    session.commit()
    if revoke_api_keys:
        api_keys.revoke_all_keys(session, user, actor=actor)
    return user


def _check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidValue(f"a password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long")


def check_monthly_quota(items: int | None) -> None:
    if items is not None and not (isinstance(items, int) and 0 <= items <= MAX_MONTHLY_QUOTA):
        raise InvalidValue(f"a monthly quota must be a whole number of items from 0 to {MAX_MONTHLY_QUOTA}")


def check_rate_limit(limit: str | None) -> None:
    """A rate limit as flask-limiter reads it ("500/minute", "10/second;1000/hour"), within bounds."""
    if limit is None:
        return
    try:
        parsed = parse_many(limit) if len(limit) <= MAX_RATE_LIMIT_LENGTH else None
    except ValueError:
        parsed = None
    if not parsed:
        raise InvalidValue(
            f"not a rate limit: {limit[:MAX_RATE_LIMIT_LENGTH]!r}; expected such as '500/minute' "
            f"(at most {MAX_RATE_LIMIT_LENGTH} characters)"
        )
    if any(not 1 <= item.amount <= MAX_RATE_LIMIT_AMOUNT for item in parsed):
        raise InvalidValue(f"a rate limit allows 1 to {MAX_RATE_LIMIT_AMOUNT} requests per window")
    if any(item.get_expiry() > MAX_RATE_LIMIT_WINDOW_S for item in parsed):
        raise InvalidValue("a rate limit's window is at most a day (the monthly quota covers longer periods)")


def _check_tier(tier: str) -> None:
    if tier not in TIERS:
        raise InvalidValue(f"unknown tier {tier!r}; expected one of {', '.join(TIERS)}")
