"""One authentication path: a JWT or an API key resolves to one account with a tier.

``Authorization: Bearer <access JWT>``, ``X-API-Key: <key>``, or an API key as
``Authorization: Bearer mlapi_...`` (so OpenAI-style clients work). Every lookup goes to
the database, so a revoked key or token, a disabled user or a tier change applies to
every worker and every instance on the next request.

An API key may do what its scopes allow, with the models it names; a password login (a JWT,
whose login session must not have ended) may do everything its account may.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from flask import Flask, Response, g, request
from flask_jwt_extended import get_current_user, get_jwt, verify_jwt_in_request
from flask_jwt_extended.exceptions import JWTExtendedException, RevokedTokenError, UserLookupError, WrongTokenError
from jwt import ExpiredSignatureError, PyJWTError

from mlapi.accounts import sessions
from mlapi.accounts.api_keys import MAX_MODEL_NAME, Grant, KeyOwner, check_api_key, looks_like_api_key
from mlapi.accounts.audit import Actor
from mlapi.accounts.revoked_tokens import is_token_revoked
from mlapi.accounts.tables import ALL_MODELS, SCOPES, LoginSession, RevokedToken, User
from mlapi.extensions import api, db, jwt
from mlapi.web import metrics
from mlapi.web.errors import APIError
from mlapi.web.metering import reserve_monthly_items
from mlapi.web.openapi import Blueprint
from mlapi.web.ratelimit import limit_by_account_or_ip
from mlapi.web.request_context import add_access_log_fields, bearer_token
from mlapi.web.state import app_state

SECURITY = [{"bearerAuth": []}, {"apiKeyAuth": []}]
_View = TypeVar("_View", bound=Callable[..., Any])

# What a caller without a credential does next: every "missing" or "unknown" answer says it.
_HOW_TO_GET_ONE = (
    "Get a token from POST /v1/token (form fields username, password); with it, create an API key with "
    "POST /v1/api-keys. An operator creates one with `mlapi keys create USERNAME`."
)
# What a shell sends when the command that should have produced the token failed (`jq -r` prints null).
_PLACEHOLDER_TOKENS = frozenset({"null", "undefined", "none", "nil", '""', "''"})

_KEY_FAILURES = {
    "unknown_key": f"The API key is not valid. {_HOW_TO_GET_ONE}",
    "revoked_key": "The API key has been revoked.",
    "expired_key": "The API key has expired.",
    "disabled_user": "The account is disabled.",
}


# What a password login may do: everything (the admin endpoints still need the admin role).
PASSWORD_LOGIN_GRANT = Grant(frozenset(SCOPES), frozenset({ALL_MODELS}))


@dataclass(frozen=True)
class Account:
    """Who is calling: the same shape whichever credential was presented."""

    id: int
    username: str
    tier: str
    is_admin: bool
    api_key_id: int | None = None  # None: a password login
    grant: Grant = PASSWORD_LOGIN_GRANT
    login_session_id: str | None = None  # of a password login
    # The account's overrides of its tier's limits (None: the tier's).
    monthly_quota: int | None = None
    rate_limit: str | None = None

    @classmethod
    def of(cls, user: User | KeyOwner, api_key_id: int | None = None, grant: Grant | None = None) -> Account:
        return cls(
            user.id,
            user.username,
            user.tier,
            user.is_admin,
            api_key_id,
            grant or PASSWORD_LOGIN_GRANT,
            monthly_quota=user.monthly_quota,
            rate_limit=user.rate_limit,
        )

    @classmethod
    def of_login(cls, user: User, login_session_id: str) -> Account:
        return cls(
            user.id,
            user.username,
            user.tier,
            user.is_admin,
            login_session_id=login_session_id,
            monthly_quota=user.monthly_quota,
            rate_limit=user.rate_limit,
        )

    @property
    def credential(self) -> str:
        """The credential as usage is metered by: ``key:<id>`` or ``session:<login session id>``."""
        return f"key:{self.api_key_id}" if self.api_key_id is not None else f"session:{self.login_session_id}"


def current_account() -> Account:
    return g.account


def current_actor() -> Actor:
    """The caller as the audit log names them, with this request's ID, client address and key."""
    return actor_of(current_account().username, current_account().api_key_id)


def actor_of(username: str, api_key_id: int | None = None) -> Actor:
    return Actor(username, "api", request_id=g.get("request_id"), ip_address=_client_ip(), api_key_id=api_key_id)


def insufficient_scope(scope: str) -> APIError:
    return APIError(
        403,
        f"This API key lacks the scope {scope!r}. Create a key that has it (POST /v1/api-keys with "
        f'"scopes"), or use a password login.',
        error="insufficient_scope",
        headers={"WWW-Authenticate": f'Bearer realm="mlapi", error="insufficient_scope", scope="{scope}"'},
    )


def model_not_allowed(name: str) -> APIError:
    allowed = ", ".join(sorted(current_account().grant.models))
    return APIError(
        403, f"This API key may not use the model {name!r}; it may use: {allowed}.", error="model_not_allowed"
    )


def _client_ip() -> str | None:
    """The client's address, or None where a misconfigured proxy chain hands over something else."""
    try:
        return str(ipaddress.ip_address(request.remote_addr or ""))
    except ValueError:
        return None


def unauthorized(reason: str, detail: str) -> APIError:
    metrics.record_auth_failure(reason)
    challenge = 'Bearer realm="mlapi"'
    if reason.endswith("_token"):
        challenge += f', error="invalid_token", error_description="{detail}"'
    return APIError(401, detail, error=reason, headers={"WWW-Authenticate": challenge})


def resolve_account() -> Account:
    """The caller's account, or a 401 naming what was wrong with the credentials."""
    token = bearer_token()
    key = request.headers.get("X-API-Key")
    if key is None and token is not None and looks_like_api_key(token):
        key = token
    if key is not None:
        state = app_state()
        refused = state.refused_keys
        known_failure = refused.failure(key)
        if known_failure is not None:  # refused for good before: no query
            raise unauthorized(known_failure, _KEY_FAILURES[known_failure])
        credentials = state.credentials  # with Redis: mlapi.web.credential_cache
        outcome = credentials.check(db.session, key) if credentials else check_api_key(db.session, key)
        if outcome.owner is None:
            assert outcome.failure is not None
            refused.remember(key, outcome.failure)
            raise unauthorized(outcome.failure, _KEY_FAILURES[outcome.failure])
        return Account.of(outcome.owner, outcome.key_id, outcome.grant)
    return Account.of_login(verified_token_user(), get_jwt()["sid"])


def _require_a_bearer_token() -> None:
    """401 missing_credentials when no token was sent, or a placeholder stands where it should be."""
    token = bearer_token()
    if token is None:
        raise unauthorized(
            "missing_credentials", f"Send 'Authorization: Bearer <token>' or 'X-API-Key: <key>'. {_HOW_TO_GET_ONE}"
        )
    if token.lower() in _PLACEHOLDER_TOKENS:
        raise unauthorized(
            "missing_credentials",
            f"The bearer token is missing: the header holds {token[:16]!r}, most likely the output of a login "
            f"that failed. {_HOW_TO_GET_ONE}",
        )


def verified_token_user(*, refresh: bool = False, verify_type: bool = True) -> User:
    """Verify the bearer JWT (signature, algorithm, expiry, type, revocation) and load its user."""
    _require_a_bearer_token()
    try:
        verify_jwt_in_request(refresh=refresh, verify_type=verify_type)
        user = get_current_user()
    except ExpiredSignatureError:
        raise unauthorized("expired_token", "The token has expired.") from None
    except RevokedTokenError:
        raise unauthorized("revoked_token", "The token has been revoked.") from None
    except WrongTokenError:
        expected = "a refresh" if refresh else "an access"
        raise unauthorized("wrong_token_type", f"This endpoint needs {expected} token.") from None
    except UserLookupError:
        raise unauthorized("unknown_user", "The token's account no longer exists.") from None
    except (JWTExtendedException, PyJWTError):
        raise unauthorized("invalid_token", "The token is malformed or its signature is invalid.") from None
    if user.disabled:
        raise unauthorized("disabled_user", _KEY_FAILURES["disabled_user"])
    if not g.pop("token_session_live", False):
        raise unauthorized(
            "revoked_token",
            "The token's login session has ended (a logout, a password change, a disabled account, or a "
            "refresh token used twice). Log in again.",
        )
    return user


def requires_auth(
    blp: Blueprint,
    *,
    scope: str | None = None,
    admin: bool = False,
    password_login: bool = False,
    model: Callable[..., object] | None = None,
    cost: Callable[[], int] | None = None,
    metered: bool = False,
    forbidden_also: str | None = None,
) -> Callable[[_View], _View]:
    """Require a valid credential under the caller's rate limit; documented.

    ``scope``: an API key must carry it (403 ``insufficient_scope``). ``admin``: the admin scope
    and the account's admin role. ``password_login``: API keys are refused whatever their scopes.
    ``model``: given the view's arguments, the model the request names; a key limited to other
    models gets 403 ``model_not_allowed``. ``metered``: the request's cost also counts against the
    account's monthly quota (mlapi.web.metering), and the view meters what it served.
    ``forbidden_also``: another reason for a 403, which the view raises itself, for the documentation.

    The limit is checked before a credential failure is reported, so that failed attempts count
    against the client's address like any other unauthenticated request; a refused request costs
    one, whatever it asked for.
    """
    scope = "admin" if admin else scope

    def refusal(kwargs: dict[str, Any]) -> APIError | None:
        account = g.account
        if password_login and account.api_key_id is not None:
            return APIError(
                403,
                "This endpoint needs a password login (a token from POST /v1/token); API keys cannot use it.",
                error="insufficient_scope",
            )
        if scope is not None and scope not in account.grant.scopes:
            return insufficient_scope(scope)
        if admin and not account.is_admin:
            return APIError(403, "This endpoint is for administrators.", error="forbidden")
        named = model(**kwargs) if model is not None else None
        # A name no model can have (not a string, overlong) is left to validation, which refuses it.
        if isinstance(named, str) and len(named) <= MAX_MODEL_NAME and not account.grant.allows_model(named):
            return model_not_allowed(named)
        return None

    def request_cost() -> int:
        """Computed once per request: the limiter, the monthly quota and the meter all use it."""
        if "request_cost" not in g:
            g.request_cost = 1
            if g.get("auth_error") is None and cost is not None:
                # It runs inside the limiter, which would take any exception for a storage outage.
                try:
                    g.request_cost = cost()
                except Exception:  # noqa: BLE001 (an unreadable body or an unknown model: the view reports it)
                    g.request_cost = 1
        return g.request_cost

    def decorator(view: _View) -> _View:
        @limit_by_account_or_ip(request_cost)
        @functools.wraps(view)
        def authorised(*args: Any, **kwargs: Any) -> Any:
            if g.auth_error is not None:
                raise g.auth_error
            if metered:
                reserve_monthly_items(request_cost())
            return view(*args, **kwargs)

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                g.account, g.auth_error = resolve_account(), None
            except APIError as exc:
                g.account, g.auth_error = None, exc
            else:
                add_access_log_fields(account_id=g.account.id, api_key_id=g.account.api_key_id, tier=g.account.tier)
                g.auth_error = refusal(kwargs)
            # The credential is checked: a request that now waits on a model must not hold a pooled
            # connection meanwhile (32 threads waiting on a batch would exhaust the pool).
            db.release_connection()
            return authorised(*args, **kwargs)

        documented = blp.doc(security=SECURITY)(wrapper)
        documented = blp.alt_response(401, description="Missing, invalid, expired or revoked credentials.")(documented)
        limits = "Rate limit exceeded" + (", or the monthly quota is spent (monthly_quota_exceeded)" if metered else "")
        documented = blp.alt_response(429, description=f"{limits}; see Retry-After.")(documented)
        forbidden = [
            reason
            for reason, applies in (
                ("the account is not an administrator", admin),
                (f"the API key lacks the scope '{scope}' (insufficient_scope)", scope is not None),
                ("API keys cannot use it (insufficient_scope)", password_login),
                ("the API key may not use this model (model_not_allowed)", model is not None),
                (forbidden_also, forbidden_also is not None),
            )
            if applies
        ]
        if forbidden:
            description = "Forbidden: " + "; or ".join(forbidden) + "."
            documented = blp.alt_response(403, description=description)(documented)
        return documented  # type: ignore[return-value]

    return decorator


def init_app(app: Flask) -> None:
    settings = app.config["MLAPI_SETTINGS"]
    app.config.update(
        JWT_SECRET_KEY=settings.secret_key,
        # Pinned: a token signed with any other algorithm (or "none") is refused.
        JWT_ALGORITHM="HS256",
        JWT_DECODE_ALGORITHMS=["HS256"],
        JWT_TOKEN_LOCATION=["headers"],
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(minutes=settings.access_token_minutes),
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(days=settings.refresh_token_days),
    )
    jwt.init_app(app)
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT, or an mlapi_ API key"}
    )
    api.spec.components.security_scheme("apiKeyAuth", {"type": "apiKey", "in": "header", "name": "X-API-Key"})
    app.after_request(_warn_of_an_unbroadcast_change)


def _warn_of_an_unbroadcast_change(response: Response) -> Response:
    """A revocation or user change that could not be broadcast says how long it may take to apply."""
    warning = g.get("credential_warning")
    if warning is not None:
        response.headers["Warning"] = f'199 mlapi "{warning}"'
    return response


@jwt.user_identity_loader
def _identity(user: User) -> str:
    return str(user.id)


@jwt.additional_claims_loader
def _claims(user: User) -> dict[str, str]:
    return {"tier": user.tier, "username": user.username}


@jwt.user_lookup_loader
def _load_user(_header: dict, payload: dict) -> User | None:
    """The token's user, read with whether its login session is live (one query)."""
    user, g.token_session_live = sessions.user_of_live_session(db.session, int(payload["sub"]), payload["sid"])
    return user


@jwt.token_in_blocklist_loader
def _is_revoked(_header: dict, payload: dict) -> bool:
    return is_token_revoked(db.session, payload["jti"])


_MAX_JTI_LENGTH = RevokedToken.__table__.c.jti.type.length
_MAX_SID_LENGTH = LoginSession.__table__.c.id.type.length
_USER_ID = re.compile(r"^[1-9][0-9]{0,9}$")
_MAX_USER_ID = 2**31 - 1  # users.id is a 32-bit INTEGER


@jwt.token_verification_loader
def _claims_are_ours(_header: dict, payload: dict) -> bool:
    """Refuse (as invalid_token) a correctly signed token whose claims this service never issues.

    Without a jti that fits the blocklist a token could never be revoked, and a ``sub`` beyond
    the id column's range makes the user lookup itself fail. Without a login session id (``sid``;
    tokens issued before sessions existed) a password change or a disable could not end it.
    """
    jti, sub, sid = payload.get("jti"), payload.get("sub"), payload.get("sid")
    return (
        isinstance(jti, str)
        and 0 < len(jti) <= _MAX_JTI_LENGTH
        and isinstance(sid, str)
        and 0 < len(sid) <= _MAX_SID_LENGTH
        and isinstance(sub, str)
        and _USER_ID.match(sub) is not None
        and int(sub) <= _MAX_USER_ID
        and payload.get("type") in ("access", "refresh")
    )
