import json

import pytest

from mlapi.app import create_app
from mlapi.extensions import db


def test_a_sane_request_id_is_echoed(client):
    response = client.get("/health", headers={"X-Request-ID": "abc-123.def_456"})
    assert response.headers["X-Request-ID"] == "abc-123.def_456"


@pytest.mark.parametrize(
    "unsafe",
    ["", "has space", "x" * 129, "semi;colon", "<script>", "\u00e9t\u00e9", "-leading-dash"],
)
def test_an_unsafe_request_id_is_replaced(client, unsafe):
    response = client.get("/health", headers={"X-Request-ID": unsafe.encode("utf-8").decode("latin-1")})
    generated = response.headers["X-Request-ID"]
    assert generated != unsafe
    assert len(generated) == 32 and generated.isalnum()


def test_each_request_gets_its_own_id(client):
    ids = {client.get("/health").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3


def test_error_envelope_carries_the_echoed_id(client):
    response = client.get("/missing", headers={"X-Request-ID": "trace-42"})
    assert response.get_json()["request_id"] == "trace-42"


def test_responses_say_nosniff(client):
    assert client.get("/health").headers["X-Content-Type-Options"] == "nosniff"


def test_access_log_is_one_json_line_per_request(tmp_path, capsys):
    app = create_app({"MLAPI_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}"})
    try:
        app.test_client().get("/missing?q=1", headers={"X-Request-ID": "log-me"})
    finally:
        db.dispose()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    access = [line for line in lines if line["logger"] == "mlapi.access"]
    assert len(access) == 1
    entry = access[0]
    assert entry["request_id"] == "log-me"
    assert entry["method"] == "GET"
    assert entry["path"] == "/missing"
    assert entry["status"] == 404
    assert entry["level"] == "INFO"
    assert entry["latency_ms"] >= 0
    assert entry["remote_addr"] == "127.0.0.1"
    assert "timestamp" in entry and "message" in entry


def test_the_api_keeps_no_cookie_session(app, client):
    from flask import session
    from flask.sessions import NullSession

    with app.test_request_context("/health", headers={"Cookie": "session=forged"}):
        assert isinstance(session._get_current_object(), NullSession)
    response = client.get("/health", headers={"Cookie": "session=forged"})
    assert response.status_code == 200 and "Set-Cookie" not in response.headers


def test_cors_is_off_by_default(client):
    response = client.get("/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_cors_allows_only_configured_origins_and_never_credentials(tmp_path):
    app = create_app(
        {"MLAPI_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}", "MLAPI_CORS_ORIGINS": "https://app.example"}
    )
    client = app.test_client()
    try:
        allowed = client.get("/health", headers={"Origin": "https://app.example"})
        denied = client.get("/health", headers={"Origin": "https://evil.example"})
        preflight = client.options(
            "/health",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "Authorization, X-API-Key",
            },
        )
    finally:
        db.dispose()
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "X-Request-ID" in allowed.headers["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Origin" not in denied.headers
    assert "Access-Control-Allow-Credentials" not in allowed.headers
    assert "x-api-key" in preflight.headers["Access-Control-Allow-Headers"].lower()


def test_cors_wildcard_is_sent_without_credentials(tmp_path):
    app = create_app({"MLAPI_DATABASE_URL": f"sqlite:///{tmp_path / 'w.db'}", "MLAPI_CORS_ORIGINS": "*"})
    try:
        response = app.test_client().get("/health", headers={"Origin": "https://any.example"})
    finally:
        db.dispose()
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_proxy_hops_zero_ignores_forwarded_for(client):
    response = client.get("/missing", headers={"X-Forwarded-For": "203.0.113.9"})
    assert response.status_code == 404
