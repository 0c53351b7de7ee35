"""Accepted API keys remembered per worker between credential changes, checked against a Redis epoch.

Looking a key up in the database costs more CPU than anything else a request does outside the
model (and a round trip on PostgreSQL). Instead each worker remembers the keys it accepted, with
the *epoch* it read before the lookup. The epoch is a random token in Redis, replaced after every
commit that revokes a key or changes a user (mlapi.store.changes), by any worker, instance or
``mlapi`` command. Every request reads it (one GET) and uses a remembered key only if the epoch is
unchanged, so a revocation, a disabled user or a tier change applies on the next request, as it
did without the cache.

Without Redis, or while it is unreachable, every request goes to the database. An entry lives at
most ``TTL_S`` (which also keeps ``last_used_at`` within a minute), and a worker that saw Redis
fail forgets everything, in case an epoch change was lost meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass

import redis
from cachetools import TTLCache
from sqlalchemy.orm import Session

from mlapi.store.api_keys import LAST_USED_RESOLUTION, KeyCheck, check_api_key, hash_key
from mlapi.store.models import utcnow

logger = logging.getLogger("mlapi.credentials")
TTL_S = LAST_USED_RESOLUTION.total_seconds()
MAX_ENTRIES = 10_000
REDIS_RETRY_AFTER_S = 5.0


@dataclass(frozen=True)
class _Entry:
    check: KeyCheck
    epoch: bytes


class CredentialCache:
    def __init__(self, client: redis.Redis, epoch_key: str) -> None:
        self.client = client
        self.epoch_key = epoch_key
        self._entries: TTLCache[str, _Entry] = TTLCache(maxsize=MAX_ENTRIES, ttl=TTL_S)
        self._lock = threading.Lock()  # cachetools caches are not thread-safe
        self._down_until = 0.0

    def check(self, session: Session, key: str) -> KeyCheck:
        """What ``check_api_key`` would answer, from memory while no credential has changed."""
        epoch = self._epoch()
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

    def credentials_changed(self) -> None:
        """A commit revoked a key or changed a user: make every worker look again."""
        with self._lock:
            self._entries.clear()
        try:
            self.client.set(self.epoch_key, uuid.uuid4().hex)
        except redis.RedisError as exc:
            # Other workers keep their entries until Redis is back (they then forget all) or TTL_S.
            logger.warning("could not publish a credential change to Redis: %s", exc)

    def _epoch(self) -> bytes | None:
        if time.monotonic() < self._down_until:
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
            self._down_until = time.monotonic() + REDIS_RETRY_AFTER_S
            return None
        return epoch
