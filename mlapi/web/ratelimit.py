"""Tiered rate limits shared by every worker and instance (flask-limiter, Redis when configured).

- Accounts: one quota per account (``MLAPI_TIER_LIMITS`` by tier, or the account's own
  ``rate_limit`` where an administrator set one), shared by every limited endpoint and every key
  and token of the account; a request of N items costs N.
- Requests without valid credentials: ``MLAPI_ANON_LIMIT`` per client IP.
- ``POST /v1/token``: ``MLAPI_LOGIN_LIMIT`` per username and client address,
  ``MLAPI_LOGIN_ADDRESS_LIMIT`` per address (never per username alone: see ``limit_logins``).
- Addresses: an IPv6 client counts by its /64.

Strategy: moving window. It counts exactly the hits of the last window, so a client never
gets twice its quota across a window boundary (fixed window does) and the limit is exact
rather than approximated (sliding-window counter); the price, one timestamp per hit in
Redis, is bounded by the largest limit.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, request
from flask.typing import ResponseReturnValue
from flask_limiter import RateLimitExceeded
from flask_limiter.util import get_remote_address

from mlapi.extensions import limiter
from mlapi.web import compat, metrics
from mlapi.web.errors import error_response
from mlapi.web.limits_storage import storage_uri

logger = logging.getLogger("mlapi.web.ratelimit")
_View = TypeVar("_View", bound=Callable[..., Any])


def _key(*parts: object) -> str:
    """A counter key, namespaced so that deployments (and test runs) sharing one Redis stay apart."""
    return "/".join([current_app.config["MLAPI_SETTINGS"].redis_prefix, *map(str, parts)])


def _account() -> Any:
    return g.get("account")


def _tier_limit() -> str:
    """The account's own rate limit if an administrator set one, else its tier's."""
    account = _account()
    settings = current_app.config["MLAPI_SETTINGS"]
    # flask-limiter asks for the limit before it checks the exemption: answer even without an account.
    if account is None:
        return settings.anon_limit
    return account.rate_limit or settings.tier_limits[account.tier]


def _whose_limit() -> str:
    account = _account()
    return "your account's own" if account.rate_limit else f"the {account.tier} tier's"


def _anonymous_limit() -> str:
    return current_app.config["MLAPI_SETTINGS"].anon_limit


def _login_limit() -> str:
    return current_app.config["MLAPI_SETTINGS"].login_limit


def _login_address_limit() -> str:
    return current_app.config["MLAPI_SETTINGS"].login_address_limit


def client_bucket() -> str:
    """The client as per-address limits count it: an IPv6 client by its /64, one subscriber's
    prefix (a single host may hold all of it, so per-address counting would be no limit at all)."""
    address = get_remote_address()
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _account_key() -> str:
    return _key("account", _account().id)


def _client_key() -> str:
    return _key("ip", client_bucket())


def _login_username() -> str:
    # Case-folded so that "Alice" and "alice" share one budget of guesses. Never raises (the
    # limiter would take an unreadable body for a storage outage).
    try:
        username = request.form.get("username") or "-"
    except Exception:  # noqa: BLE001 (a client that hangs up, a body over the limit: count it as "-")
        username = "-"
    return username.casefold()


def _login_pair_key() -> str:
    return _key("login-user-ip", _login_username(), client_bucket())


def _password_change_key() -> str:
    # The login's own counter: a stolen token must not become a faster way to guess the password.
    account = _account()
    return _key("login-user-ip", account.username.casefold() if account else "-", client_bucket())


def _per_username_and_address(key_func: Callable[[], str]) -> Callable[[_View], _View]:
    return limiter.shared_limit(
        _login_limit,
        scope="login-user-ip",
        key_func=key_func,
        error_message=lambda: f"Too many password attempts for this username from this address ({_login_limit()}).",
    )


def limit_by_account_or_ip(cost: Callable[[], int] | None = None) -> Callable[[_View], _View]:
    """The account's tier quota when the caller is authenticated, else the per-IP quota.

    Expects ``g.account`` to be set (or None) before the view runs (see mlapi.web.auth).
    """

    def decorator(view: _View) -> _View:
        by_account = limiter.shared_limit(
            _tier_limit,
            scope="account",
            key_func=_account_key,
            cost=cost or 1,
            exempt_when=lambda: _account() is None,
            error_message=lambda: f"Rate limit exceeded: {_whose_limit()} limit is {_tier_limit()}.",
        )
        by_ip = limiter.shared_limit(
            _anonymous_limit,
            scope="anonymous",
            key_func=_client_key,
            exempt_when=lambda: _account() is not None,
            error_message=lambda: f"Rate limit for unauthenticated requests exceeded ({_anonymous_limit()}).",
        )
        return by_ip(by_account(view))  # type: ignore[return-value]

    return decorator


def limit_logins(view: _View) -> _View:
    """Throttle password guessing without handing attackers a lock-out of other people.

    Per username and address (``MLAPI_LOGIN_LIMIT``): guesses from one place at one account.
    Per address (``MLAPI_LOGIN_ADDRESS_LIMIT``): one place trying many accounts. Nothing counts
    per username alone: any such ceiling, however high, is one an attacker can fill from a few
    addresses to refuse the owner's right password. Guesses spread over many addresses meet the
    per-address limits and argon2's cost instead.
    """
    per_pair = _per_username_and_address(_login_pair_key)
    per_address = limiter.limit(
        _login_address_limit,
        scope="login-ip",
        key_func=_client_key,
        error_message=lambda: f"Too many logins from this address ({_login_address_limit()}).",
    )
    return per_address(per_pair(view))  # type: ignore[return-value]


def limit_password_guesses(view: _View) -> _View:
    """A password change checks the current password: it shares the login's per-username-and-address
    budget (``MLAPI_LOGIN_LIMIT``), so that a stolen token is not a faster way to guess it."""
    return _per_username_and_address(_password_change_key)(view)  # type: ignore[return-value]


# flask-limiter writes Retry-After on every response of a limited endpoint and raises it to the
# window's end, which would also overwrite a 503's own "Retry-After: 1". It writes this name
# instead; the hook below turns it into Retry-After on 429s only.
_LIMITER_RETRY_AFTER = "X-Mlapi-Limiter-Retry-After"


def _retry_after_on_refusals_only(response: Response) -> Response:
    value = response.headers.pop(_LIMITER_RETRY_AFTER, None)
    if response.status_code == 429 and value is not None:
        response.headers["Retry-After"] = value
    return response


def handle_rate_limit_exceeded(exc: RateLimitExceeded) -> ResponseReturnValue:
    account = _account()
    metrics.record_rate_limit_rejection(account.tier if account is not None else "anonymous")
    cost, allowed = exc.limit.deduction_amount, exc.limit.limit.amount
    if cost > allowed:
        # Waiting would never help: say so instead of sending the client into a retry loop.
        return error_response(
            422,
            f"This request costs {cost} items (one per input, and one per label of your own not used "
            f"before), more than the whole quota ({exc.limit.limit}); split it, or use fewer new labels.",
            error="exceeds_quota",
        )
    # Retry-After and X-RateLimit-* are added by the limiter's after-request hook.
    return error_response(429, exc.description or "Rate limit exceeded.", error="rate_limit_exceeded")


def init_app(app: Flask) -> None:
    settings = app.config["MLAPI_SETTINGS"]
    app.config.update(
        # One Redis call per limit check instead of two (see mlapi.web.limits_storage).
        RATELIMIT_STORAGE_URI=storage_uri(settings.redis_url) if settings.redis_url else "memory://",
        # A dead Redis must cost milliseconds, not a request timeout, before the fallback kicks in.
        RATELIMIT_STORAGE_OPTIONS={"socket_connect_timeout": 0.5, "socket_timeout": 0.5} if settings.redis_url else {},
        RATELIMIT_STRATEGY="moving-window",
        RATELIMIT_HEADERS_ENABLED=True,
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,
        # The fallback covers the request that notices the outage; requests racing it in other
        # threads would otherwise raise. Swallowed errors are logged and the request is served.
        RATELIMIT_SWALLOW_ERRORS=True,
        RATELIMIT_HEADER_RETRY_AFTER=_LIMITER_RETRY_AFTER,
    )
    # Registered first so that it runs after the limiter's own after-request hook.
    app.after_request(_retry_after_on_refusals_only)
    limiter.init_app(app)
    compat.drop_limiter_before_request_pass(app, limiter)
    app.register_error_handler(RateLimitExceeded, handle_rate_limit_exceeded)
    if not settings.redis_url:
        logger.info("rate limits are counted in memory, per worker (set MLAPI_REDIS_URL to share them)")
