"""Settings read from ``MLAPI_*`` environment variables, strictly.

Every value is parsed once, at start-up; a junk value stops the process with a
one-line message naming the variable (12-factor: config lives in the environment).
"""

from __future__ import annotations

import calendar
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from limits import parse_many

ENVIRONMENTS = ("development", "production")
TIERS = ("free", "pro", "enterprise")
# Whose prediction cache entries a request may read: its own account's, or everyone's (tenants that
# trust each other; otherwise a hit tells one tenant what another submitted).
CACHE_SCOPES = ("account", "global")
# Oldest first: each version's successor is the next one (see mlapi.web.versioning).
API_VERSIONS = ("v1", "v2")
# The policy: a deprecated version keeps working at least this long before its sunset.
MIN_DEPRECATION_MONTHS = 6
DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me"
MIN_SECRET_BYTES = 32
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")
_T = TypeVar("_T")


_SECRET_BEARING = {"MLAPI_SECRET_KEY", "MLAPI_DATABASE_URL", "MLAPI_REDIS_URL", "MLAPI_METRICS_TOKEN"}


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class VersionDeprecation:
    """An API version's deprecation (when it took or takes effect) and its sunset (when it stops)."""

    deprecated_on: date
    sunset_on: date


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    secret_key: str = DEV_SECRET_KEY
    database_url: str | None = None
    redis_url: str | None = None
    redis_prefix: str = "mlapi"
    model_dir: Path = Path("models")
    devices: tuple[str, ...] = ("auto",)
    torch_threads: int = 0
    tier_limits: Mapping[str, str] = field(
        default_factory=lambda: {"free": "10/minute", "pro": "100/minute", "enterprise": "1000/minute"}
    )
    # Items per calendar month (UTC) by tier; None: unlimited.
    tier_monthly: Mapping[str, int | None] = field(default_factory=lambda: dict.fromkeys(TIERS))
    usage_flush_s: float = 2.0
    usage_retention_days: int = 400
    anon_limit: str = "30/minute"
    login_limit: str = "5/minute"
    login_address_limit: str = "20/minute"
    max_concurrent_hashes: int = 2
    credential_cache_ttl_s: float = 5.0
    max_batch_size: int = 32
    max_batch_delay_ms: float = 5.0
    max_queue: int = 256
    inference_timeout_s: float = 10.0
    cache_ttl_s: float = 300.0
    cache_size: int = 10000
    cache_scope: str = "account"
    cors_origins: tuple[str, ...] = ()
    proxy_hops: int = 0
    max_body_bytes: int = 1024 * 1024
    log_level: str = "INFO"
    metrics_token: str | None = None
    access_token_minutes: int = 30
    refresh_token_days: int = 7
    bind: str = "127.0.0.1:8000"
    workers: int = 2
    threads: int = 4
    default_api_version: str = "v1"
    deprecated_versions: Mapping[str, VersionDeprecation] = field(default_factory=dict)

    @property
    def production(self) -> bool:
        return self.env == "production"


class _Reader:
    """Reads one variable at a time and names it in every error."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def get(self, name: str, default: _T, parse: Callable[[str], _T]) -> _T:
        raw = self.environ.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except (ValueError, TypeError) as exc:
            # URLs and tokens may hold passwords: name the variable, never echo its value.
            shown = name if name in _SECRET_BEARING else f"{name}={raw!r}"
            raise ConfigError(f"{shown}: {exc}") from None


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("expected a whole number") from None
        if not low <= value <= high:
            raise ValueError(f"expected a number from {low} to {high}")
        return value

    return parse


def _float_between(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("expected a number") from None
        if not low <= value <= high:
            raise ValueError(f"expected a number from {low} to {high}")
        return value

    return parse


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return raw

    return parse


def _limit(raw: str) -> str:
    try:
        parse_many(raw)
    except ValueError:
        raise ValueError("expected a rate limit such as '30/minute'") from None
    return raw


def _tier_limits(raw: str) -> dict[str, str]:
    limits = dict(Settings().tier_limits)
    for part in filter(None, (p.strip() for p in raw.split(";"))):
        tier, sep, limit = part.partition("=")
        if not sep or tier.strip() not in TIERS:
            raise ValueError(f"expected 'tier=limit' pairs with tiers {', '.join(TIERS)}")
        limits[tier.strip()] = _limit(limit.strip())
    return limits


MAX_MONTHLY_QUOTA = 10**12


def _tier_monthly(raw: str) -> dict[str, int | None]:
    """``free=1000;pro=100000;enterprise=``: items per month by tier, empty for unlimited."""
    quotas: dict[str, int | None] = dict(Settings().tier_monthly)
    for part in filter(None, (p.strip() for p in raw.split(";"))):
        tier, sep, amount = (piece.strip() for piece in part.partition("="))
        if not sep or tier not in TIERS:
            raise ValueError(f"expected 'tier=items' pairs with tiers {', '.join(TIERS)} (empty items: unlimited)")
        quotas[tier] = _int_between(0, MAX_MONTHLY_QUOTA)(amount) if amount else None
    return quotas


def _devices(raw: str) -> tuple[str, ...]:
    devices = tuple(d.strip() for d in raw.split(",") if d.strip())
    if devices == ("auto",):
        return devices
    pattern = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")
    bad = [d for d in devices if not pattern.match(d)]
    if not devices or bad:
        raise ValueError("expected 'auto' or a list such as 'cuda:0,cuda:1' or 'cpu'")
    return devices


def _origins(raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    if origins == ("*",):
        return origins
    bad = [o for o in origins if not _ORIGIN.match(o)]
    if bad:
        raise ValueError(f"not an origin (scheme://host[:port]) or '*': {bad[0]}")
    return origins


def _iso_date(raw: str) -> date:
    # date.fromisoformat also takes '20270630' and week dates: accept the one spelling we document.
    if not re.match(r"^\d{4}-\d{2}-\d{2}$", raw):
        raise ValueError(f"expected a date such as 2027-06-30, got {raw!r}")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"not a calendar date: {raw!r}") from None


def _months_before(day: date, months: int) -> date:
    year, month_index = divmod(day.year * 12 + day.month - 1 - months, 12)
    last_day = calendar.monthrange(year, month_index + 1)[1]
    return date(year, month_index + 1, min(day.day, last_day))


def _deprecated_versions(raw: str) -> dict[str, VersionDeprecation]:
    """``v1=2026-12-01/2027-06-30`` (deprecation/sunset) or ``v1=2027-06-30`` (sunset only: the
    deprecation is then the policy's minimum notice before it), several separated by ';' or ','."""
    found: dict[str, VersionDeprecation] = {}
    for part in filter(None, (p.strip() for p in re.split(r"[;,]", raw))):
        version, sep, dates = (piece.strip() for piece in part.partition("="))
        if not sep or version not in API_VERSIONS:
            raise ValueError(f"expected 'version=[deprecation/]sunset' entries with versions {', '.join(API_VERSIONS)}")
        if version in found:
            raise ValueError(f"{version} is listed twice")
        deprecated_raw, slash, sunset_raw = dates.rpartition("/")
        sunset = _iso_date(sunset_raw.strip())
        deprecated = _iso_date(deprecated_raw.strip()) if slash else _months_before(sunset, MIN_DEPRECATION_MONTHS)
        if sunset <= deprecated:
            raise ValueError(f"{version}: the sunset ({sunset}) must come after the deprecation ({deprecated})")
        found[version] = VersionDeprecation(deprecated_on=deprecated, sunset_on=sunset)
    return found


def _bind(raw: str) -> str:
    if raw.startswith("unix:") or re.match(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$", raw):
        return raw
    raise ValueError("expected host:port or unix:/path")


def _name(raw: str) -> str:
    if not re.match(r"^[A-Za-z0-9_.:-]{1,64}$", raw):
        raise ValueError("expected up to 64 letters, digits, '_', '.', ':' or '-'")
    return raw


def _url(raw: str) -> str:
    if "://" not in raw:
        raise ValueError("expected a URL such as scheme://host/name")
    return raw


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse the environment (``os.environ`` by default) into validated settings."""
    read = _Reader(os.environ if environ is None else environ)
    env = read.get("MLAPI_ENV", "development", _choice(ENVIRONMENTS))
    settings = Settings(
        env=env,
        secret_key=read.get("MLAPI_SECRET_KEY", DEV_SECRET_KEY, str),
        database_url=read.get("MLAPI_DATABASE_URL", None, _url),
        redis_url=read.get("MLAPI_REDIS_URL", None, _url),
        redis_prefix=read.get("MLAPI_REDIS_PREFIX", "mlapi", _name),
        model_dir=read.get("MLAPI_MODEL_DIR", Path("models"), Path),
        devices=read.get("MLAPI_DEVICES", ("auto",), _devices),
        torch_threads=read.get("MLAPI_TORCH_THREADS", 0, _int_between(0, 256)),
        tier_limits=read.get("MLAPI_TIER_LIMITS", Settings().tier_limits, _tier_limits),
        tier_monthly=read.get("MLAPI_TIER_MONTHLY", Settings().tier_monthly, _tier_monthly),
        usage_flush_s=read.get("MLAPI_USAGE_FLUSH_S", 2.0, _float_between(0.05, 10)),
        usage_retention_days=read.get("MLAPI_USAGE_RETENTION_DAYS", 400, _int_between(1, 36500)),
        anon_limit=read.get("MLAPI_ANON_LIMIT", "30/minute", _limit),
        login_limit=read.get("MLAPI_LOGIN_LIMIT", "5/minute", _limit),
        login_address_limit=read.get("MLAPI_LOGIN_ADDRESS_LIMIT", "20/minute", _limit),
        max_concurrent_hashes=read.get("MLAPI_MAX_CONCURRENT_HASHES", 2, _int_between(1, 64)),
        credential_cache_ttl_s=read.get("MLAPI_CREDENTIAL_CACHE_TTL_S", 5.0, _float_between(0, 60)),
        max_batch_size=read.get("MLAPI_MAX_BATCH_SIZE", 32, _int_between(1, 1024)),
        max_batch_delay_ms=read.get("MLAPI_MAX_BATCH_DELAY_MS", 5.0, _float_between(0, 1000)),
        max_queue=read.get("MLAPI_MAX_QUEUE", 256, _int_between(1, 1_000_000)),
        inference_timeout_s=read.get("MLAPI_INFERENCE_TIMEOUT_S", 10.0, _float_between(0.01, 3600)),
        cache_ttl_s=read.get("MLAPI_CACHE_TTL_S", 300.0, _float_between(0, 30 * 24 * 3600)),
        cache_size=read.get("MLAPI_CACHE_SIZE", 10000, _int_between(1, 10_000_000)),
        cache_scope=read.get("MLAPI_CACHE_SCOPE", "account", _choice(CACHE_SCOPES)),
        cors_origins=read.get("MLAPI_CORS_ORIGINS", (), _origins),
        proxy_hops=read.get("MLAPI_PROXY_HOPS", 0, _int_between(0, 10)),
        max_body_bytes=read.get("MLAPI_MAX_BODY_BYTES", 1024 * 1024, _int_between(1024, 1 << 30)),
        log_level=read.get("MLAPI_LOG_LEVEL", "INFO", _choice(("DEBUG", "INFO", "WARNING", "ERROR"))),
        metrics_token=read.get("MLAPI_METRICS_TOKEN", None, str),
        access_token_minutes=read.get("MLAPI_ACCESS_TOKEN_MINUTES", 30, _int_between(1, 24 * 60)),
        refresh_token_days=read.get("MLAPI_REFRESH_TOKEN_DAYS", 7, _int_between(1, 365)),
        bind=read.get("MLAPI_BIND", "127.0.0.1:8000", _bind),
        workers=read.get("MLAPI_WORKERS", 2, _int_between(1, 256)),
        threads=read.get("MLAPI_THREADS", 4, _int_between(1, 256)),
        default_api_version=read.get("MLAPI_DEFAULT_API_VERSION", "v1", _choice(API_VERSIONS)),
        deprecated_versions=read.get("MLAPI_DEPRECATED_VERSIONS", {}, _deprecated_versions),
    )
    _check_production(settings)
    refuse_debug_in_production(settings, debug=_flask_debug(read.environ))
    return settings


def _flask_debug(environ: Mapping[str, str]) -> bool:
    """Whether FLASK_DEBUG (which ``flask run --debug`` sets too) turns on Flask's debug mode."""
    value = environ.get("FLASK_DEBUG")
    return bool(value and value.lower() not in {"0", "false", "no"})  # as flask.helpers.get_debug_flag


def refuse_debug_in_production(settings: Settings, *, debug: bool) -> None:
    # Debug mode sends tracebacks (and, under `flask run`, an interactive debugger) to clients.
    if settings.production and debug:
        raise ConfigError("FLASK_DEBUG: production mode refuses to run with Flask's debug mode on")


# A shipped example's value, applied as it is, must not start: anyone who has read the example could
# forge tokens with it. Generated secrets (`openssl rand -hex 32`, `-base64 32`) pass both rules.
PLACEHOLDER_WORDS = ("replace", "change-me", "changeme", "change_me", "example", "secret", "placeholder", "xxxx")
MIN_DISTINCT_CHARACTERS = 10
# Passwords that examples and images use by default (an earlier compose file shipped "mlapi").
DEFAULT_PASSWORDS = frozenset({"mlapi", "postgres", "password", "admin", "root", "redis", "guest", "test"})


def placeholder_reason(value: str, *, generated: bool = True) -> str | None:
    """Why ``value`` looks like a placeholder (or, for a ``generated`` secret, a low-entropy one)."""
    word = next((w for w in PLACEHOLDER_WORDS if w in value.lower()), None)
    if word is not None:
        return f"it contains {word!r}, as placeholders do"
    if value.lower() in DEFAULT_PASSWORDS:
        return "it is a well-known default"
    if generated and len(set(value)) < MIN_DISTINCT_CHARACTERS:
        return f"it has fewer than {MIN_DISTINCT_CHARACTERS} distinct characters"
    return None


def _check_production(settings: Settings) -> None:
    if not settings.production:
        return
    if settings.secret_key == DEV_SECRET_KEY:
        raise ConfigError("MLAPI_SECRET_KEY: production mode needs a secret of its own, not the default")
    if len(settings.secret_key.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(f"MLAPI_SECRET_KEY: production mode needs at least {MIN_SECRET_BYTES} bytes")
    checked = [("MLAPI_SECRET_KEY", settings.secret_key, True), ("MLAPI_METRICS_TOKEN", settings.metrics_token, True)]
    for name, url in (("MLAPI_DATABASE_URL", settings.database_url), ("MLAPI_REDIS_URL", settings.redis_url)):
        password = urlsplit(url).password if url else None
        checked.append((f"{name}'s password", unquote(password) if password else None, False))
    for name, value, generated in checked:
        reason = placeholder_reason(value, generated=generated) if value else None
        if reason is not None:
            raise ConfigError(
                f"{name}: production mode refuses it: {reason}; generate one, e.g. `openssl rand -hex 32`"
            )


def resolve_settings(config: Settings | Mapping[str, Any] | None) -> Settings:
    """Settings from an object, or from ``os.environ`` overlaid with a mapping of overrides."""
    if isinstance(config, Settings):
        return config
    overrides = {k: str(v) for k, v in (config or {}).items()}
    return load_settings({**os.environ, **overrides})
