import secrets

import pytest

from mlapi.config import DEV_SECRET_KEY, ConfigError, load_settings

STRONG_SECRET = "Zq8-vN3wK7rB2xT9mJ5hL1cF6dG4sP0y"  # 32 bytes, generated-looking


def test_defaults_follow_the_design_notes():
    settings = load_settings({})
    assert settings.env == "development"
    assert settings.bind == "127.0.0.1:8000"
    assert (settings.workers, settings.threads) == (2, 4)
    assert settings.tier_limits == {"free": "10/minute", "pro": "100/minute", "enterprise": "1000/minute"}
    assert (settings.anon_limit, settings.login_limit) == ("30/minute", "5/minute")
    assert (settings.max_batch_size, settings.max_batch_delay_ms) == (32, 5.0)
    assert settings.cors_origins == ()
    assert settings.proxy_hops == 0
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.devices == ("auto",)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MLAPI_WORKERS", "abc"),
        ("MLAPI_WORKERS", "0"),
        ("MLAPI_THREADS", "2.5"),
        ("MLAPI_ENV", "prod"),
        ("MLAPI_BIND", "localhost"),
        ("MLAPI_PROXY_HOPS", "-1"),
        ("MLAPI_MAX_BATCH_DELAY_MS", "soon"),
        ("MLAPI_TIER_LIMITS", "gold=5/minute"),
        ("MLAPI_TIER_LIMITS", "free=lots"),
        ("MLAPI_ANON_LIMIT", "30 per fortnight"),
        ("MLAPI_CORS_ORIGINS", "example.com"),
        ("MLAPI_DEVICES", "tpu:0"),
        ("MLAPI_DATABASE_URL", "mlapi.db"),
        ("MLAPI_LOG_LEVEL", "chatty"),
        ("MLAPI_TIER_MONTHLY", "gold=5"),
        ("MLAPI_TIER_MONTHLY", "free=-1"),
        ("MLAPI_TIER_MONTHLY", "free=1e3"),
        ("MLAPI_TIER_MONTHLY", "free=10000000000000"),
        ("MLAPI_USAGE_FLUSH_S", "60"),
        ("MLAPI_USAGE_RETENTION_DAYS", "0"),
    ],
)
def test_junk_values_are_refused_naming_the_variable(name, value):
    with pytest.raises(ConfigError) as caught:
        load_settings({name: value})
    message = str(caught.value)
    assert message.startswith(name)
    assert "\n" not in message


def test_values_are_parsed():
    settings = load_settings(
        {
            "MLAPI_WORKERS": "3",
            "MLAPI_TIER_LIMITS": "free=2/second; enterprise=5000/hour",
            "MLAPI_CORS_ORIGINS": "https://app.example.com, http://localhost:3000/",
            "MLAPI_DEVICES": "cuda:0,cuda:1",
            "MLAPI_BIND": "0.0.0.0:9000",
        }
    )
    assert settings.workers == 3
    assert settings.tier_limits == {"free": "2/second", "pro": "100/minute", "enterprise": "5000/hour"}
    assert settings.cors_origins == ("https://app.example.com", "http://localhost:3000")
    assert settings.devices == ("cuda:0", "cuda:1")
    assert settings.bind == "0.0.0.0:9000"


def test_monthly_quotas_by_tier_default_to_unlimited():
    assert load_settings({}).tier_monthly == {"free": None, "pro": None, "enterprise": None}
    parsed = load_settings({"MLAPI_TIER_MONTHLY": "free=1000; pro=100000;enterprise="}).tier_monthly
    assert parsed == {"free": 1000, "pro": 100000, "enterprise": None}
    assert load_settings({"MLAPI_TIER_MONTHLY": "free=0"}).tier_monthly["free"] == 0


@pytest.mark.parametrize("secret", [None, DEV_SECRET_KEY, "short-secret", "y" * 31])
def test_production_refuses_default_or_short_secrets(secret):
    environ = {"MLAPI_ENV": "production"}
    if secret is not None:
        environ["MLAPI_SECRET_KEY"] = secret
    with pytest.raises(ConfigError, match="MLAPI_SECRET_KEY"):
        load_settings(environ)


@pytest.mark.parametrize(
    "name,value",
    [
        ("MLAPI_SECRET_KEY", "replace-with-at-least-32-random-bytes-xxxxxxxx"),  # the old Kubernetes example
        ("MLAPI_SECRET_KEY", "my-production-secret-for-mlapi-2026"),
        ("MLAPI_SECRET_KEY", "example-key-0123456789-abcdefghijk"),
        ("MLAPI_SECRET_KEY", "abababababababababababababababab"),  # 2 distinct characters
        ("MLAPI_SECRET_KEY", "12345678912345678912345678912345"),  # 9 distinct characters
        ("MLAPI_METRICS_TOKEN", "replace-with-a-scrape-token"),
        ("MLAPI_DATABASE_URL", "postgresql+psycopg://mlapi:change-me@postgres:5432/mlapi"),
        ("MLAPI_DATABASE_URL", "postgresql+psycopg://mlapi:mlapi@postgres:5432/mlapi"),  # an old compose default
        ("MLAPI_REDIS_URL", "redis://:%63hange%2Dme@redis:6379/0"),  # percent-encoded "change-me"
    ],
)
def test_production_refuses_placeholders_and_low_entropy_secrets(name, value):
    environ = {"MLAPI_ENV": "production", "MLAPI_SECRET_KEY": STRONG_SECRET, name: value}
    with pytest.raises(ConfigError) as refused:
        load_settings(environ)
    message = str(refused.value)
    assert message.startswith(name) and "\n" not in message and "openssl rand" in message
    assert value not in message  # a secret is never echoed


@pytest.mark.parametrize("generated", [secrets.token_hex(32), secrets.token_urlsafe(32), STRONG_SECRET])
def test_production_accepts_generated_secrets(generated):
    assert (
        load_settings(
            {"MLAPI_ENV": "production", "MLAPI_SECRET_KEY": generated, "MLAPI_METRICS_TOKEN": generated}
        ).secret_key
        == generated
    )


def test_production_accepts_a_strong_secret():
    settings = load_settings({"MLAPI_ENV": "production", "MLAPI_SECRET_KEY": STRONG_SECRET})
    assert settings.production
    assert settings.secret_key == STRONG_SECRET


@pytest.mark.parametrize("name", ["MLAPI_DATABASE_URL", "MLAPI_REDIS_URL"])
def test_a_malformed_url_is_reported_without_its_password(name):
    with pytest.raises(ConfigError) as caught:
        load_settings({name: "postgresql+psycopg//app:s3cret@db/x"})
    assert str(caught.value).startswith(f"{name}: ")
    assert "s3cret" not in str(caught.value)
