"""Metering and monthly quotas for the HTTP layer: every request that reaches a model or the cache
is counted for its account (mlapi.usage), and checked against the account's monthly quota first.

``requires_auth(metered=True)`` reserves the request's items (what the per-minute quota charges)
against the month before the view runs: past the limit, ``429 monthly_quota_exceeded`` with
``Retry-After`` until the month ends. The view calls ``meter`` once the model (or the cache) has
answered; a request that ends without that gives its items back. Metered responses carry
``X-Quota-Limit``, ``X-Quota-Remaining`` and ``X-Quota-Reset`` (the reset as Unix time, like
``X-RateLimit-Reset``) when the account has a monthly limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import date

from flask import Flask, Response, current_app, g
from sqlalchemy.orm import Session

from mlapi.accounts.tables import utcnow
from mlapi.config import ConfigError, Settings
from mlapi.extensions import db
from mlapi.serving.engine import EmbedOutcome, PredictOutcome
from mlapi.usage import rollups
from mlapi.usage.meter import UsageMeter
from mlapi.usage.periods import month_start
from mlapi.usage.quotas import MonthlyQuotas, QuotaState
from mlapi.usage.rollups import Cell, Counts
from mlapi.web import metrics
from mlapi.web.errors import APIError
from mlapi.web.state import app_state, state_of

QUOTA_HEADERS = ("X-Quota-Limit", "X-Quota-Remaining", "X-Quota-Reset")
# The shares of a monthly quota that the near-quota gauge counts accounts past.
NEAR_QUOTA_THRESHOLDS = {"0.9": 0.9, "1": 1.0}
NEAR_QUOTA_REFRESH_S = 60.0


def monthly_limit(account) -> int | None:  # noqa: ANN001 (mlapi.web.auth.Account, which imports this module)
    """The account's monthly limit (None: unlimited)."""
    return effective_monthly_limit(account.monthly_quota, account.tier, current_app.config["MLAPI_SETTINGS"])


def effective_monthly_limit(own_quota: int | None, tier: str, settings: Settings) -> int | None:
    """The account's own monthly quota if an administrator set one, else its tier's (None: unlimited)."""
    return own_quota if own_quota is not None else settings.tier_monthly.get(tier)


def reserve_monthly_items(items: int) -> None:
    """Count the request's items against the account's month before it runs; 429 past the limit."""
    account, now = g.account, utcnow()
    g.usage_day = now.date()  # the day the request counts in, rollups and quota alike
    reservation = app_state().quotas.reserve(account.id, monthly_limit(account), items, now)
    g.quota_reservation = reservation
    if reservation.allowed:
        return
    metrics.record_monthly_quota_rejection(account.tier)
    state = reservation.state
    wait_s = max(1, math.ceil(state.resets_at.timestamp() - time.time()))
    raise APIError(
        429,
        f"This request needs {items} items and {state.remaining} of the monthly quota of {state.limit} are "
        f"left; it starts again at {state.resets_at.isoformat()}.",
        error="monthly_quota_exceeded",
        headers={"Retry-After": str(wait_s), **quota_headers(state)},
    )


def meter(family: str, outcome: PredictOutcome | EmbedOutcome) -> None:
    """The model or the cache has answered this request: count it for the caller's account."""
    account, manifest = g.account, outcome.manifest
    items = g.request_cost
    g.metered = True
    day = g.get("usage_day") or utcnow().date()
    cell = Cell(account.id, day, account.credential, manifest.name, manifest.version, family)
    app_state().meter.record(cell, Counts(1, items, outcome.cached_items, outcome.tokens, outcome.model_ms))
    metrics.record_usage(account.tier, manifest.name, items)


def quota_headers(state: QuotaState) -> dict[str, str]:
    if state.limit is None:
        return {}
    return dict(
        zip(QUOTA_HEADERS, map(str, (state.limit, state.remaining, int(state.resets_at.timestamp()))), strict=True)
    )


def _settle(response: Response) -> Response:
    """Give back the items of a request that reached no model; say where the month stands."""
    reservation = g.pop("quota_reservation", None)
    if reservation is None:
        return response
    state = reservation.state
    if reservation.allowed and not g.get("metered"):
        app_state().quotas.release(reservation)
        state = QuotaState(state.limit, state.used - reservation.items, state.resets_at)
    response.headers.update(quota_headers(state))
    return response


def used_in_store(meter_: UsageMeter, open_session: Callable[[], Session]) -> Callable[[int, date], int]:
    """The month's items of an account: the rollups, plus this worker's counts not yet flushed."""

    def used(account_id: int, since: date) -> int:
        with open_session() as session:
            flushed = rollups.items_since(session, account_id, since)
        return flushed + meter_.unflushed_items(account_id, since)

    return used


def near_quota_refresher(settings: Settings, clock: Callable[[], float] = time.monotonic) -> Callable[[Session], None]:
    """After a flush, at most once a minute: count the accounts past 90 % and 100 % of their quota."""
    last = [-math.inf]

    def refresh(session: Session) -> None:
        if clock() - last[0] < NEAR_QUOTA_REFRESH_S:
            return
        last[0] = clock()
        metrics.record_accounts_near_monthly_quota(accounts_near_quota(session, settings))

    return refresh


def accounts_near_quota(session: Session, settings: Settings) -> dict[str, int]:
    """How many accounts have used at least each threshold's share of their monthly quota this month."""
    counts = dict.fromkeys(NEAR_QUOTA_THRESHOLDS, 0)
    for _account_id, tier, own_quota, items in rollups.items_by_account_since(session, month_start(utcnow().date())):
        limit = effective_monthly_limit(own_quota, tier, settings)
        if limit is None:
            continue
        for name, share in NEAR_QUOTA_THRESHOLDS.items():
            if items >= share * limit:
                counts[name] += 1
    return counts


def init_app(app: Flask, settings: Settings) -> None:
    state = state_of(app)
    engine = db.engine  # this app's: a later bind (another app in the same process) must not redirect it
    if engine.dialect.name not in rollups.DIALECTS:
        raise ConfigError(
            f"MLAPI_DATABASE_URL: usage metering needs {' or '.join(rollups.DIALECTS)}, not {engine.dialect.name}"
        )

    def open_session() -> Session:
        return Session(engine)

    state.meter = UsageMeter(open_session, settings.usage_flush_s, after_flush=near_quota_refresher(settings))
    state.quotas = MonthlyQuotas(state.redis, settings.redis_prefix, used_in_store(state.meter, open_session))
    app.after_request(_settle)


def shutdown(app: Flask) -> None:
    """Flush this worker's usage counts (Gunicorn's worker_exit, after the models have drained)."""
    meter_ = state_of(app).meter
    if meter_ is not None:
        meter_.close()
