"""Accepted API keys remembered per worker between credential changes, checked against a Redis epoch.

Looking a key up in the database costs more CPU than anything else a request does outside the
model (and a round trip on PostgreSQL). Instead each worker remembers the keys it accepted, with
the *epoch* it read before the lookup. The epoch is a random token in Redis, replaced after every
commit that revokes a key or changes a user (mlapi.accounts.changes), by any worker, instance or
``mlapi`` command. Every request reads it (one GET) and uses a remembered key only if the epoch is
unchanged, so a revocation, a disabled user or a tier change applies on the next request, as it
did without the cache.

Without Redis, or while it is unreachable, every request goes to the database. An entry lives at
most ``MLAPI_CREDENTIAL_CACHE_TTL_S`` (5 s), and a worker that saw Redis fail forgets everything, in
case an epoch change was lost meanwhile. So a change whose broadcast failed (Redis down, an
``mlapi`` command run without ``MLAPI_REDIS_URL`` or with another prefix) reaches every worker
within that bound; the one that made it says so (``broadcast_change``).

Keys refused for good (unknown, revoked, expired: none of these can become valid again) are
remembered per worker too, so that a client repeating one costs no database query.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis
from cachetools import TTLCache
from flask import g, has_request_context
from sqlalchemy.orm import Session

from mlapi.accounts.api_keys import KeyCheck, check_api_key, hash_key
from mlapi.accounts.tables import utcnow
from mlapi.serving.redis_backoff import RedisBackoff

logger = logging.getLogger("mlapi.credentials")
MAX_ENTRIES = 10_000
# Failures a key can never recover from: its hash matches no key, or the key was revoked or expired.
FINAL_FAILURES = frozenset({"unknown_key", "revoked_key", "expired_key"})
REFUSED_TTL_S = 300.0


@dataclass(frozen=True)
class _Entry:
    check: KeyCheck
    epoch: bytes


class CredentialCache:
    def __init__(
        self, client: redis.Redis, epoch_key: str, ttl_s: float, timer: Callable[[], float] = time.monotonic
    ) -> None:
        self.client = client
        self.epoch_key = epoch_key
        self.remembers = ttl_s > 0
        self._entries: TTLCache[str, _Entry] = TTLCache(maxsize=MAX_ENTRIES, ttl=max(ttl_s, 1e-9), timer=timer)
        self._lock = threading.Lock()  # cachetools caches are not thread-safe
        self.backoff = RedisBackoff()

    def check(self, session: Session, key: str) -> KeyCheck:
        """What ``check_api_key`` would answer, from memory while no credential has changed."""
        epoch = self._epoch() if self.remembers else None
        if epoch is None:
            return check_api_key(session, key)
        digest = hash_key(key)
        now = utcnow()
        with self._lock:
            entry = self._entries.get(digest)
        if entry is not None and entry.epoch == epoch:
            expires_at = entry.check.expires_at
            if expires_at is None or expires_at > now:
                return entry.check
        # The epoch was read before this lookup: a change committed after it replaces the epoch,
        # so the next request looks again.
        result = check_api_key(session, key, now)
        with self._lock:
            if result.owner is not None:
                self._entries[digest] = _Entry(result, epoch)
            else:
                self._entries.pop(digest, None)
        return result

    def credentials_changed(self) -> bool:
        """A commit revoked a key or changed a user: make every worker look again. False: not published."""
        with self._lock:
            self._entries.clear()
        try:
            self.client.set(self.epoch_key, uuid.uuid4().hex)
        except redis.RedisError as exc:
            # Other workers keep their entries until Redis is back (they then forget all) or the TTL.
            logger.warning("could not publish a credential change to Redis: %s", exc)
            return False
        return True

    def _epoch(self) -> bytes | None:
        if not self.backoff.usable():
            return None
        try:
            epoch = self.client.get(self.epoch_key)
            if epoch is None:  # first use, or Redis lost its data: every entry is suspect
                self.client.set(self.epoch_key, uuid.uuid4().hex, nx=True)
                epoch = self.client.get(self.epoch_key)
        except redis.RedisError as exc:
            logger.warning("API keys are checked in the database, Redis unreachable: %s", exc)
            with self._lock:
                self._entries.clear()
            self.backoff.failed()
            return None
        return epoch


class RefusedKeys:
    """Keys this worker refused for good, by hash: a repeated one is refused without a query."""

    def __init__(self) -> None:
        self._failures: TTLCache[str, str] = TTLCache(maxsize=MAX_ENTRIES, ttl=REFUSED_TTL_S)
        self._lock = threading.Lock()

    def failure(self, key: str) -> str | None:
        with self._lock:
            return self._failures.get(hash_key(key))

    def remember(self, key: str, failure: str | None) -> None:
        if failure in FINAL_FAILURES:
            with self._lock:
                self._failures[hash_key(key)] = failure


def broadcast_change(credentials: CredentialCache | None, bound_s: float) -> str | None:
    """Make every worker look credentials up again; the warning to give when that could not be done."""
    if credentials is not None and credentials.credentials_changed():
        return None
    reason = "Redis did not answer" if credentials is not None else "MLAPI_REDIS_URL is not set here"
    return (
        f"the change was not broadcast ({reason}): a worker that remembered the old credential may "
        f"accept it until its MLAPI_CREDENTIAL_CACHE_TTL_S ends ({bound_s:g} s by this process's settings)"
    )


def credential_change_hook(credentials: CredentialCache | None, bound_s: float) -> Callable[[], None]:
    """What the store calls after a commit that changed credentials, in the server."""

    def changed() -> None:
        warning = broadcast_change(credentials, bound_s)
        if warning is None or credentials is None:  # without Redis no worker caches keys: nothing to wait for
            return
        logger.warning(warning)
        if has_request_context():
            g.credential_warning = warning  # a Warning header on the response (mlapi.web.auth)

    return changed
