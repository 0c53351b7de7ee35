"""Security: forged tokens, injection-shaped input, hostile bodies, security headers, debug mode.

Covered elsewhere, not repeated here:
- tampered payload, ``alg: none``, wrong key, HS512, garbage, expired, revoked (access and refresh),
  a deleted user's token, refresh used as access and the reverse, unknown/revoked/expired keys:
  every_database/test_auth.py (on SQLite and PostgreSQL)
- 413 by Content-Length, 415 on a probe view, malformed JSON 400, validation 422: test_errors.py;
  413 over real Gunicorn: test_gunicorn.py
- ``X-Content-Type-Options`` on /health: test_request_context.py; ``Cache-Control: no-store`` on a
  login and a new key: every_database/test_auth.py, test_api_keys.py
- production refuses the default or a short secret: test_config.py, test_gunicorn.py
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from urllib.parse import quote

import pytest
import requests
from flask import Flask
from sqlalchemy import func, inspect, select

from mlapi.accounts import sessions
from mlapi.accounts.tables import SCOPES, ApiKey, RevokedToken, User
from mlapi.app import create_app
from mlapi.config import ConfigError, Settings, load_settings
from mlapi.extensions import db
from tests.conftest import make_test_app
from tests.factories import PASSWORD, Factory
from tests.gunicorn_server import ROOT, GunicornServer

# Quotas out of the way: these tests send many requests on purpose.
GENEROUS_LIMITS = {
    "MLAPI_TIER_LIMITS": "free=100000/minute;pro=100000/minute;enterprise=100000/minute",
    "MLAPI_ANON_LIMIT": "100000/minute",
    "MLAPI_LOGIN_LIMIT": "100000/minute",
    "MLAPI_LOGIN_ADDRESS_LIMIT": "100000/minute",
}
STRONG_SECRET = "Zq8-vN3wK7rB2xT9mJ5hL1cF6dG4sP0y"  # 32 bytes, generated-looking
ENVELOPE_KEYS = {"error", "detail", "status_code", "request_id", "timestamp"}


# Without the models unless a test needs them: everything here but inference is refused or
# answered before a model is involved.
@pytest.fixture
def app(tmp_path) -> Iterator[Flask]:
    app = make_test_app(f"sqlite:///{tmp_path / 'security.db'}", load_models=False, **GENEROUS_LIMITS)
    yield app
    db.dispose()


@pytest.fixture
def db_app(database_url: str) -> Iterator[Flask]:
    """Once on SQLite, once on the PostgreSQL server."""
    app = make_test_app(database_url, load_models=False, **GENEROUS_LIMITS)
    yield app
    db.dispose()


@pytest.fixture
def db_client(db_app: Flask):
    return db_app.test_client()


@pytest.fixture
def admin_headers(factory: Factory) -> dict[str, str]:
    return factory.key_headers(factory.user("root", tier="enterprise", admin=True), scopes=SCOPES)


def assert_envelope(response, status_code: int, error: str | None = None) -> dict:
    assert response.status_code == status_code, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert ENVELOPE_KEYS <= body.keys()
    assert body["status_code"] == status_code
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    if error is not None:
        assert body["error"] == error, body
    return body


def assert_invalid_token(response) -> None:
    assert_envelope(response, 401, "invalid_token")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


# --- forged and foreign JWTs -------------------------------------------------------------------


def b64url(data: bytes | dict) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hmac_signed(header: dict, claims: dict, key: bytes) -> str:
    """Signed by hand, so that any header (and any key, PEM text included) can be used."""
    signing_input = f"{b64url(header)}.{b64url(claims)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def unsigned(header: dict, claims: dict, signature: str = "") -> str:
    return f"{b64url(header)}.{b64url(claims)}.{signature}"


# What a service with RSA keys publishes; an attacker HMACs with it hoping the verifier uses it as a secret.
PUBLIC_KEY_PEM = b"""-----BEGIN PUBLIC KEY-----
MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf
9Cnzj4p4WGeKLs1Pt8QuKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==
-----END PUBLIC KEY-----
"""

FORGERIES = {
    # The server's own key, but the header names RSA: a verifier that trusted the header's algorithm
    # could be steered to another verification routine.
    "RS256 header over an HMAC of the real key": lambda secret, claims: hmac_signed(
        {"alg": "RS256", "typ": "JWT"}, claims, secret
    ),
    "HS256 keyed with a public key": lambda secret, claims: hmac_signed(
        {"alg": "HS256", "typ": "JWT"}, claims, PUBLIC_KEY_PEM
    ),
    "HS256 with an empty key": lambda secret, claims: hmac_signed({"alg": "HS256", "typ": "JWT"}, claims, b""),
    "HS256 with a key sent in the jwk header": lambda secret, claims: hmac_signed(
        {"alg": "HS256", "jwk": {"kty": "oct", "k": b64url(b"attacker")}}, claims, b"attacker"
    ),
    "HS256 with a kid pointing at an empty file": lambda secret, claims: hmac_signed(
        {"alg": "HS256", "kid": "../../../../dev/null"}, claims, b""
    ),
    "ES256 header with a junk signature": lambda secret, claims: unsigned({"alg": "ES256"}, claims, b64url(b"x" * 64)),
    "alg none": lambda secret, claims: unsigned({"alg": "none", "typ": "JWT"}, claims),
    "alg None": lambda secret, claims: unsigned({"alg": "None", "typ": "JWT"}, claims),
    "alg NONE": lambda secret, claims: unsigned({"alg": "NONE", "typ": "JWT"}, claims),
    "alg nOnE": lambda secret, claims: unsigned({"alg": "nOnE", "typ": "JWT"}, claims),
    "alg none keeping a real signature": lambda secret, claims: unsigned(
        {"alg": "none"}, claims, hmac_signed({"alg": "HS256"}, claims, secret).rsplit(".", 1)[1]
    ),
    "no alg at all": lambda secret, claims: hmac_signed({"typ": "JWT"}, claims, secret),
    "two segments": lambda secret, claims: unsigned({"alg": "none"}, claims).rstrip("."),
}


def issued_claims(user: User, kind: str = "access") -> dict:
    """The claims of a token this service would issue, in a real login session of the user."""
    now = int(time.time())
    sid = sessions.start(db.session, user, timedelta(hours=1)).session_id
    return {
        "sub": str(user.id),
        "jti": str(uuid.uuid4()),
        "type": kind,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "fresh": False,
        "tier": user.tier,
        "username": user.username,
        "sid": sid,
    }


def test_the_hand_made_signature_is_what_the_server_accepts(app, client, factory):
    # The control for the forgeries below: the same helper with the real header and key passes.
    user = factory.user()
    token = hmac_signed({"alg": "HS256", "typ": "JWT"}, issued_claims(user), app.config["JWT_SECRET_KEY"].encode())
    assert client.get("/v1/users/me", headers=factory.bearer(token)).status_code == 200


@pytest.mark.parametrize("forgery", FORGERIES)
def test_algorithm_confusion_and_unsigned_tokens_are_refused(app, client, factory, forgery):
    user = factory.user()
    secret = app.config["JWT_SECRET_KEY"].encode()
    access = FORGERIES[forgery](secret, issued_claims(user, "access"))
    refresh = FORGERIES[forgery](secret, issued_claims(user, "refresh"))
    assert_invalid_token(client.get("/v1/users/me", headers=factory.bearer(access)))
    assert_invalid_token(client.post("/v1/token/refresh", headers=factory.bearer(refresh)))
    assert_invalid_token(client.post("/v1/token/revoke", headers=factory.bearer(access)))


def _without(claims: dict, name: str) -> dict:
    return {k: v for k, v in claims.items() if k != name}


# Correctly signed (a service sharing the key, or a leaked key used carelessly), yet nothing this
# service issues: each once made the user or revocation lookup fail with a 500, or could never be revoked.
UNISSUED_CLAIMS = {
    "no jti": lambda claims: _without(claims, "jti"),
    "no login session (issued before sessions existed)": lambda claims: _without(claims, "sid"),
    "a session id too long for its column": lambda claims: {**claims, "sid": "s" * 37},
    "a session id that is no string": lambda claims: {**claims, "sid": 7},
    "a jti too long for the blocklist": lambda claims: {**claims, "jti": "j" * 65},
    "a sub beyond 64 bits": lambda claims: {**claims, "sub": str(10**30)},
    "a sub beyond the id column": lambda claims: {**claims, "sub": str(2**31)},
    "a sub that is no id": lambda claims: {**claims, "sub": "admin"},
    "a negative sub": lambda claims: {**claims, "sub": "-1"},
    "sub zero": lambda claims: {**claims, "sub": "0"},
    "an unknown type": lambda claims: {**claims, "type": "superuser"},
}


@pytest.mark.postgres
@pytest.mark.parametrize("claims_of", UNISSUED_CLAIMS)
def test_signed_tokens_with_claims_never_issued_are_refused(db_app, db_client, db_factory, claims_of):
    user = db_factory.user()
    secret = db_app.config["JWT_SECRET_KEY"].encode()
    token = hmac_signed({"alg": "HS256", "typ": "JWT"}, UNISSUED_CLAIMS[claims_of](issued_claims(user)), secret)
    assert_invalid_token(db_client.get("/v1/users/me", headers=db_factory.bearer(token)))
    assert_invalid_token(db_client.post("/v1/token/revoke", headers=db_factory.bearer(token)))
    assert db.session.scalar(select(func.count()).select_from(RevokedToken)) == 0


# --- injection-shaped input ----------------------------------------------------------------------

INJECTIONS = [
    "' OR 1=1 --",
    '"; DROP TABLE users; --',
    "admin'--",
    "admin' #",
    "' UNION SELECT password_hash, 1 FROM users --",
    "1; DELETE FROM api_keys WHERE '1'='1",
    "Robert'); DROP TABLE api_keys;--",
    "%' OR username LIKE '%",
    "\\'; SELECT pg_sleep(5); --",
]


def assert_tables_intact(users: int, keys: int) -> None:
    tables = set(inspect(db.engine).get_table_names())
    assert {"users", "api_keys", "revoked_tokens", "alembic_version"} <= tables
    db.session.remove()
    assert db.session.scalar(select(func.count()).select_from(User)) == users
    assert db.session.scalar(select(func.count()).select_from(ApiKey)) == keys


@pytest.mark.postgres
def test_injection_shaped_logins_fail_like_any_wrong_login(db_client, db_factory):
    db_factory.user("admin", tier="enterprise", admin=True)
    for attempt in INJECTIONS:
        for username, password in ((attempt, PASSWORD), (attempt, attempt), ("admin", attempt)):
            response = db_client.post("/v1/token", data={"username": username, "password": password})
            body = assert_envelope(response, 401, "invalid_credentials")
            assert body["detail"] == "Incorrect username or password."
    assert_tables_intact(users=1, keys=0)
    assert db_client.post("/v1/token", data={"username": "admin", "password": PASSWORD}).status_code == 200


@pytest.mark.postgres
def test_injection_shaped_admin_input_is_refused_or_stored_verbatim(db_client, db_factory):
    headers = db_factory.key_headers(db_factory.user("root", tier="enterprise", admin=True), scopes=SCOPES)
    for i, attempt in enumerate(INJECTIONS):
        refused = db_client.post("/v1/admin/users", json={"username": attempt, "password": PASSWORD}, headers=headers)
        assert "username" in assert_envelope(refused, 422, "validation_error")["errors"]
        created = db_client.post(
            "/v1/admin/users",
            json={"username": f"victim{i}", "password": PASSWORD, "full_name": attempt},
            headers=headers,
        )
        assert created.status_code == 201, created.get_json()
        assert created.get_json()["full_name"] == attempt
        missing = db_client.patch(f"/v1/admin/users/{quote(attempt, safe='')}", json={"tier": "pro"}, headers=headers)
        assert_envelope(missing, 404, "not_found")
        assert_envelope(db_client.delete(f"/v1/admin/users/{quote(attempt, safe='')}/api-keys/1", headers=headers), 404)
    listed = db_client.get("/v1/admin/users?page_size=100", headers=headers).get_json()["data"]
    assert {u["full_name"] for u in listed} == set(INJECTIONS) | {None}
    assert_envelope(db_client.get("/v1/admin/users?page=1%20OR%201=1", headers=headers), 422, "validation_error")
    # PostgreSQL cannot even compare a NUL: refused as bad input there, simply not found on SQLite.
    nul = db_client.patch("/v1/admin/users/root%00", json={"tier": "pro"}, headers=headers)
    assert_envelope(nul, 422 if db.engine.dialect.name == "postgresql" else 404)
    assert_tables_intact(users=1 + len(INJECTIONS), keys=1)


@pytest.mark.postgres
def test_injection_shaped_key_labels_are_stored_verbatim(db_client, db_factory):
    headers = db_factory.token_headers(db_factory.user("kim", tier="enterprise"))
    for attempt in INJECTIONS:
        created = db_client.post("/v1/api-keys", json={"label": attempt}, headers=headers)
        assert created.status_code == 201 and created.get_json()["label"] == attempt
        assert_envelope(db_client.get("/v1/users/me", headers={"X-API-Key": f"mlapi_{attempt}"}), 401, "unknown_key")
    labels = [k["label"] for k in db_client.get("/v1/api-keys", headers=headers).get_json()["data"]]
    assert sorted(labels) == sorted(INJECTIONS)
    assert_tables_intact(users=1, keys=len(INJECTIONS))


@pytest.mark.postgres
def test_injection_shaped_inference_input_is_just_text(database_url):
    app = make_test_app(database_url, **GENEROUS_LIMITS)
    try:
        _check_inference_input(app.test_client(), Factory(app))
    finally:
        db.dispose()


def _check_inference_input(db_client, db_factory) -> None:
    headers = db_factory.key_headers(db_factory.user("ivy", tier="enterprise"))
    for attempt in INJECTIONS:
        assert db_client.post("/v1/predict", json={"text": attempt}, headers=headers).status_code == 200
    labels = INJECTIONS[:3]
    zero_shot = db_client.post("/v1/predict", json={"text": "drop everything", "labels": labels}, headers=headers)
    assert zero_shot.status_code == 200 and set(zero_shot.get_json()["scores"]) == set(labels)
    batch = db_client.post("/v1/predict/batch", json={"inputs": INJECTIONS}, headers=headers)
    assert batch.status_code == 200 and batch.get_json()["count"] == len(INJECTIONS)
    embedded = db_client.post("/v1/embeddings", json={"input": INJECTIONS}, headers=headers)
    assert embedded.status_code == 200 and len(embedded.get_json()["data"]) == len(INJECTIONS)
    assert_tables_intact(users=1, keys=1)


# --- hostile bodies ------------------------------------------------------------------------------

JSON_ENDPOINTS = ["/v1/predict", "/v1/predict/batch", "/v1/embeddings", "/v1/api-keys", "/v1/admin/users"]
DEPTH = 100_000

HOSTILE_JSON = {
    # json.loads raises RecursionError, not a JSONDecodeError, on these: once a 500.
    "100000 nested lists": ("[" * DEPTH + "]" * DEPTH, 400, "nested too deeply"),
    "100000 nested objects": ('{"a":' * DEPTH + "1" + "}" * DEPTH, 400, "nested too deeply"),
    # Parsed fine, then refused by the schema: the text check walks it without recursion.
    "500 nested lists in a field": ('{"nested": ' + "[" * 500 + "]" * 500 + "}", 422, None),
    "bytes that are not UTF-8": (b'{"text": "\xff\xfe\xfd"}', 400, "JSON"),
    "invalid JSON": (b'{"text": ', 400, "JSON"),
    # Valid JSON, but no text: it cannot be encoded for the database, cache key or tokenizer.
    "a lone surrogate": ('{"text": "\\ud800", "label": "\\ud800", "input": "\\ud800"}', 400, "surrogate"),
    "a lone surrogate as a key": ('{"\\udfff": 1}', 400, "surrogate"),
    # PostgreSQL refuses NUL in text.
    "a NUL character": ('{"text": "a\\u0000b", "label": "a\\u0000b", "input": "a\\u0000b"}', 400, "NUL"),
}


@pytest.mark.parametrize("case", HOSTILE_JSON)
def test_hostile_json_bodies_get_a_4xx_envelope(client, admin_headers, case):
    body, status, detail = HOSTILE_JSON[case]
    for endpoint in JSON_ENDPOINTS:
        response = client.post(endpoint, data=body, content_type="application/json", headers=admin_headers)
        envelope = assert_envelope(response, status)
        assert detail is None or detail in envelope["detail"], (endpoint, envelope)


@pytest.mark.parametrize(
    "content_type,body",
    [
        ("text/plain", '{"text": "hello"}'),
        ("application/x-www-form-urlencoded", "text=hello"),
        ("application/xml", "<text>hello</text>"),
        (None, b'{"text": "hello"}'),
    ],
)
def test_json_endpoints_refuse_other_media_types(client, admin_headers, content_type, body):
    for endpoint in JSON_ENDPOINTS:
        response = client.post(endpoint, data=body, content_type=content_type, headers=admin_headers)
        assert "application/json" in assert_envelope(response, 415, "unsupported_media_type")["detail"], endpoint


def test_oversized_bodies_get_413_before_anything_else(client):
    # No credentials: the size is refused before authentication even looks.
    big = b'{"text": "' + b"x" * (1024 * 1024) + b'"}'
    for endpoint in [*JSON_ENDPOINTS, "/v1/token"]:
        assert_envelope(client.post(endpoint, data=big, content_type="application/json"), 413)


def test_the_login_form_refuses_nul_and_survives_bad_bytes(client, factory):
    factory.user("alice")
    assert_envelope(client.post("/v1/token", data={"username": "alice\x00", "password": PASSWORD}), 400)
    not_utf8 = client.post(
        "/v1/token", data=b"username=\xff\xfe&password=\xff", content_type="application/x-www-form-urlencoded"
    )
    assert 400 <= not_utf8.status_code < 500
    assert_envelope(not_utf8, not_utf8.status_code)


def test_query_strings_refuse_nul(client, admin_headers):
    assert_envelope(client.get("/v1/admin/users?page=%00", headers=admin_headers), 400)


@pytest.mark.integration
def test_chunked_bodies_over_the_limit_get_413_over_gunicorn(tmp_path):
    """Without Content-Length the size is only known while reading; Werkzeug would cut it silently."""
    url = f"sqlite:///{tmp_path / 'chunked.db'}"
    factory = Factory(make_test_app(url, load_models=False))
    key = factory.api_key(factory.user("chunky", tier="enterprise"), scopes=("inference", "models:read", "keys:write"))[
        1
    ]
    db.dispose()
    (tmp_path / "no-models").mkdir()
    env = {"MLAPI_DATABASE_URL": url, "MLAPI_MODEL_DIR": str(tmp_path / "no-models")}

    def chunks(label: bytes):  # a generator body: requests sends it chunked
        yield b'{"label": "'
        for start in range(0, len(label), 65536):
            yield label[start : start + 65536]
        yield b'"}'

    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    with GunicornServer(tmp_path / "gunicorn.log", env, workers=1) as server:
        big = requests.post(
            f"{server.url}/v1/api-keys", data=chunks(b"x" * (2 * 1024 * 1024)), headers=headers, timeout=30
        )
        small = requests.post(f"{server.url}/v1/api-keys", data=chunks(b"chunked"), headers=headers, timeout=30)
    assert big.status_code == 413, big.text
    assert big.json()["error"] == "request_entity_too_large"
    assert small.status_code == 201 and small.json()["label"] == "chunked"


# --- headers -------------------------------------------------------------------------------------


def test_every_response_says_nosniff(tmp_path):
    (tmp_path / "no-models").mkdir()
    app = make_test_app(
        f"sqlite:///{tmp_path / 'h.db'}",
        MLAPI_MODEL_DIR=str(tmp_path / "no-models"),
        MLAPI_TIER_LIMITS=GENEROUS_LIMITS["MLAPI_TIER_LIMITS"],
        MLAPI_ANON_LIMIT="5/minute",
    )
    app.add_url_rule("/crash-probe", "crash_probe", lambda: 1 / 0)
    try:
        factory, client = Factory(app), app.test_client()
        member = factory.user("member")
        headers = factory.key_headers(member, scopes=("inference", "models:read", "keys:write"))
        key_id = client.post("/v1/api-keys", json={"label": "x"}, headers=headers).get_json()["id"]
        responses = {
            200: client.get("/health"),
            201: client.post("/v1/api-keys", json={"label": "y"}, headers=headers),
            204: client.delete(f"/v1/api-keys/{key_id}", headers=headers),
            400: client.post("/v1/api-keys", data="{", content_type="application/json", headers=headers),
            401: client.get("/v1/users/me"),
            403: client.get("/v1/admin/users", headers=headers),
            404: client.post("/v1/predict", json={"text": "no such model"}, headers=headers),
            405: client.delete("/health"),
            413: client.post("/v1/api-keys", data=b"x" * (1024 * 1024 + 1), content_type="application/json"),
            415: client.post("/v1/api-keys", data="label=x", content_type="text/plain", headers=headers),
            422: client.post("/v1/api-keys", json={}, headers=headers),
            500: client.get("/crash-probe"),
            503: client.get("/ready"),
        }
        for _ in range(5):
            client.get("/v1/users/me")
        responses[429] = client.get("/v1/users/me")
        others = [client.get(path) for path in ("/metrics", "/v1/openapi.json", "/v1/docs", "/v1/redoc")]
        others.append(client.post("/v1/token", data={"username": "member", "password": PASSWORD}))
    finally:
        db.dispose()
    assert sorted(status for status, r in responses.items() if r.status_code == status) == sorted(responses)
    for response in [*responses.values(), *others]:
        assert response.headers["X-Content-Type-Options"] == "nosniff", response.status


def test_credential_responses_are_never_cached(client, factory):
    user = factory.user("carol")
    login = client.post("/v1/token", data={"username": "carol", "password": PASSWORD})
    refresh = client.post("/v1/token/refresh", headers=factory.bearer(login.get_json()["refresh_token"]))
    new_key = client.post("/v1/api-keys", json={"label": "k"}, headers=factory.token_headers(user))
    failed_login = client.post("/v1/token", data={"username": "carol", "password": "wrong"})
    failed_refresh = client.post("/v1/token/refresh", headers=factory.bearer("not.a.token"))
    statuses = [r.status_code for r in (login, refresh, new_key, failed_login, failed_refresh)]
    assert statuses == [200, 200, 201, 401, 401]
    for response in (login, refresh, new_key, failed_login, failed_refresh):
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Pragma"] == "no-cache"


# --- production refuses debug mode ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["1", "true", "True", "yes", "on"])
def test_production_refuses_flask_debug(value):
    with pytest.raises(ConfigError) as caught:
        load_settings({"MLAPI_ENV": "production", "MLAPI_SECRET_KEY": STRONG_SECRET, "FLASK_DEBUG": value})
    assert str(caught.value).startswith("FLASK_DEBUG: ")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("value", ["0", "false", "no", ""])
def test_production_runs_with_debug_off(value):
    settings = load_settings({"MLAPI_ENV": "production", "MLAPI_SECRET_KEY": STRONG_SECRET, "FLASK_DEBUG": value})
    assert settings.production


def test_development_may_debug():
    assert not load_settings({"FLASK_DEBUG": "1"}).production


def test_an_app_built_from_settings_refuses_debug_mode_in_production(monkeypatch, tmp_path):
    # Settings passed as an object skip the environment; Flask still reads FLASK_DEBUG into app.debug.
    monkeypatch.setenv("FLASK_DEBUG", "1")
    settings = replace(
        Settings(), env="production", secret_key=STRONG_SECRET, database_url=f"sqlite:///{tmp_path / 'd.db'}"
    )
    with pytest.raises(ConfigError, match="^FLASK_DEBUG: "):
        create_app(settings, load_models=False)


@pytest.mark.integration
def test_gunicorn_refuses_production_in_debug_mode_with_one_line():
    env = {
        "PATH": "/usr/bin:/bin",
        "MLAPI_BIND": "127.0.0.1:0",
        "MLAPI_ENV": "production",
        "MLAPI_SECRET_KEY": STRONG_SECRET,
        "FLASK_DEBUG": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "mlapi: configuration error: FLASK_DEBUG: production mode refuses to run with Flask's debug mode on"
    ]
