"""Monthly quotas: items per calendar month (UTC), counted by every worker and instance in Redis.

Each account has one counter per month in Redis. A metered request reserves its items in one
atomic step (refused, with nothing added, if they would pass the limit) and gives them back if it
ends without reaching a model. A counter that does not exist yet (the month's first request, or a
Redis that lost its data) starts from the month's rollups in SQL.

Without Redis, or while it is unreachable, the limit is checked against the rollups plus what this
worker has not flushed yet: never a refusal the account did not earn, but other workers' last few
seconds of traffic are not seen, so an account may pass its limit by that much. The counters miss
what was used during the outage; the rollups (the bill) miss nothing. A reservation whose give-back
fails (Redis dropped in between) stays counted. If neither Redis nor the rollups can be read, the
request is served: the meter keeps its counts until the database is back.

Unlimited accounts cost nothing here. Each limit has its own counter, so a changed limit starts
from the rollups.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import redis
from sqlalchemy.exc import SQLAlchemyError

from mlapi.serving.redis_backoff import RedisBackoff
from mlapi.usage.periods import month_label, month_start, reset_at

logger = logging.getLogger("mlapi.usage")

# KEYS[1]: the month's counter. ARGV: items, limit. Returns {outcome, used}:
# -1 (no counter yet: seed it and ask again), 0 (refused; nothing added) or 1 (added).
_RESERVE = """
local used = redis.call('GET', KEYS[1])
if not used then return {-1, 0} end
used = tonumber(used)
local items = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if used + items > limit then return {0, used} end
return {1, redis.call('INCRBY', KEYS[1], items)}
"""
# Give back a reservation, unless the counter has gone meanwhile (then there is nothing to correct).
_RELEASE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECRBY', KEYS[1], ARGV[1]) end
return 0
"""
# Counters outlive their month by a little, for a request that straddles midnight.
_KEEP_AFTER_MONTH = timedelta(days=2)


def _utc_day(now: datetime) -> date:
    return now.astimezone(UTC).date()


@dataclass(frozen=True)
class QuotaState:
    limit: int | None  # None: unlimited
    used: int
    resets_at: datetime

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.used, 0)


@dataclass(frozen=True)
class Reservation:
    allowed: bool
    state: QuotaState
    items: int
    counter: str | None  # the Redis counter that holds the items: give them back there, if need be


class MonthlyQuotas:
    def __init__(self, client: redis.Redis | None, prefix: str, used_in_store: Callable[[int, date], int]) -> None:
        """``used_in_store(account_id, month_start)``: the month's items as the rollups and this
        worker's unflushed counts have them."""
        self.client = client
        self.prefix = prefix
        self._used_in_store = used_in_store
        self.backoff = RedisBackoff()
        if client is not None:
            self._reserve = client.register_script(_RESERVE)
            self._release = client.register_script(_RELEASE)

    def reserve(self, account_id: int, limit: int | None, items: int, now: datetime) -> Reservation:
        """Count ``items`` against the account's month, unless they would pass ``limit``.

        An unlimited account costs nothing here: no Redis call, no query (the rollups count it).
        """
        resets = reset_at(now)
        if limit is None:
            return Reservation(True, QuotaState(None, 0, resets), items, None)
        counter = self._counter(account_id, limit, now)
        if self._redis_usable():
            try:
                for _ in range(2):
                    outcome, used = self._reserve([counter], [items, limit])
                    if outcome >= 0:
                        state = QuotaState(limit, int(used), resets)
                        return Reservation(outcome == 1, state, items, counter if outcome == 1 else None)
                    self._seed(counter, account_id, now, resets)
            except redis.RedisError as exc:
                self._failed(exc)
            except SQLAlchemyError as exc:  # seeding read the rollups
                return self._unchecked(exc, limit, items, resets)
        try:
            used = self._used_in_store(account_id, month_start(_utc_day(now)))
        except SQLAlchemyError as exc:
            return self._unchecked(exc, limit, items, resets)
        if used + items > limit:
            return Reservation(False, QuotaState(limit, used, resets), items, None)
        return Reservation(True, QuotaState(limit, used + items, resets), items, None)

    @staticmethod
    def _unchecked(exc: SQLAlchemyError, limit: int, items: int, resets: datetime) -> Reservation:
        """Neither Redis nor the database can say what was used: serve (the meter keeps the counts)."""
        logger.warning("monthly quota not checked, the usage rollups are unreadable: %s", exc)
        return Reservation(True, QuotaState(limit, items, resets), items, None)

    def release(self, reservation: Reservation) -> None:
        """Give back the items of a request that did not reach a model."""
        if reservation.counter is None or self.client is None:
            return
        try:
            self._release([reservation.counter], [reservation.items])
        except redis.RedisError as exc:
            self._failed(exc)

    def state(self, account_id: int, limit: int | None, now: datetime) -> QuotaState:
        """The month so far, without counting anything (an unlimited account's from the rollups)."""
        counter = self._counter(account_id, limit, now)
        if limit is not None and self._redis_usable():
            try:
                raw = self.client.get(counter)
                if raw is None:
                    self._seed(counter, account_id, now, reset_at(now))
                    raw = self.client.get(counter)
                if raw is not None:
                    return QuotaState(limit, int(raw), reset_at(now))
            except redis.RedisError as exc:
                self._failed(exc)
        return QuotaState(limit, self._used_in_store(account_id, month_start(_utc_day(now))), reset_at(now))

    def _counter(self, account_id: int, limit: int | None, now: datetime) -> str:
        # The limit is part of the name: when an account's limit changes (its tier, or its own
        # quota), it counts on a new counter started from the rollups, never on one that stopped
        # counting while the account was unlimited.
        return f"{self.prefix}/usage-month/{month_label(_utc_day(now))}/{account_id}/{limit}"

    def _seed(self, counter: str, account_id: int, now: datetime, resets: datetime) -> None:
        used = self._used_in_store(account_id, month_start(_utc_day(now)))
        # NX: of workers seeding at once, the first wins; the others' reservations then count on it.
        self.client.set(counter, used, nx=True, exat=int((resets + _KEEP_AFTER_MONTH).timestamp()))

    def _redis_usable(self) -> bool:
        return self.client is not None and self.backoff.usable()

    def _failed(self, exc: redis.RedisError) -> None:
        if self.backoff.failed():
            logger.warning("monthly quotas are checked against the usage rollups, Redis unreachable: %s", exc)
