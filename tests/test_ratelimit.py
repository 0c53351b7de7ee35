"""Rate limits in one process (in-memory counters): tiers, sharing, costs, anonymous and login limits."""

import json

import pytest
from flask import request

from mlapi.accounts import user_accounts
from mlapi.extensions import api, db
from mlapi.web.auth import requires_auth
from mlapi.web.openapi import Blueprint
from tests.conftest import make_test_app
from tests.factories import PASSWORD, Factory

# Decorated once, at import, like every real view: limits are registered per view function.
probe = Blueprint("cost_probe", __name__, url_prefix="/probe")


@probe.route("/items", methods=["POST"])
@requires_auth(probe, cost=lambda: len((request.get_json(silent=True) or {}).get("items", [])) or 1)
def items():
    return {"count": len(request.get_json()["items"])}


def make_app(tmp_path, **settings):
    app = make_test_app(f"sqlite:///{tmp_path / 'rl.db'}", **settings)
    api.register_blueprint(probe)
    return app


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path, MLAPI_TIER_LIMITS="free=10/minute;pro=20/minute", MLAPI_ANON_LIMIT="3/minute")
    yield app
    db.dispose()


def assert_429(response, limit, remaining=0):
    assert response.status_code == 429
    body = response.get_json()
    assert body["error"] == "rate_limit_exceeded" and body["status_code"] == 429
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["X-RateLimit-Limit"] == str(limit)
    assert response.headers["X-RateLimit-Remaining"] == str(remaining)
    assert int(response.headers["X-RateLimit-Reset"]) > 0


def test_free_tier_gets_exactly_its_limit_with_headers_on_every_response(client, factory):
    headers = factory.key_headers(factory.user(tier="free"))
    for used in range(1, 11):
        response = client.get("/v1/users/me", headers=headers)
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "10"
        assert response.headers["X-RateLimit-Remaining"] == str(10 - used)
        assert "Retry-After" not in response.headers  # only refusals say when to retry
    assert_429(client.get("/v1/users/me", headers=headers), 10)
    assert "free tier" in client.get("/v1/users/me", headers=headers).get_json()["detail"]


def test_limits_are_checked_by_their_views_only(app, client, factory):
    """flask-limiter's before-request pass is dropped (it would only cost CPU: there are no default
    limits); the views' own limits still count every request exactly once."""
    from mlapi.extensions import limiter

    hooks = app.before_request_funcs.get(None, [])
    assert all(getattr(hook, "__self__", None) is not limiter for hook in hooks)
    headers = factory.key_headers(factory.user(tier="free"))
    remaining = [client.get("/v1/users/me", headers=headers).headers["X-RateLimit-Remaining"] for _ in range(3)]
    assert remaining == ["9", "8", "7"]


def test_one_quota_per_account_across_endpoints_keys_and_tokens(client, factory):
    user = factory.user(tier="free")
    grant = {"scopes": ("inference", "keys:write")}
    credentials = [factory.key_headers(user, **grant), factory.key_headers(user, **grant), factory.token_headers(user)]
    paths = ["/v1/users/me", "/v1/api-keys"]
    for i in range(10):
        response = client.get(paths[i % 2], headers=credentials[i % 3])
        assert response.status_code == 200, i
    for headers in credentials:
        assert_429(client.get(paths[0], headers=headers), 10)
        assert_429(client.get(paths[1], headers=headers), 10)


def test_other_accounts_and_tiers_are_unaffected(client, factory):
    free = factory.key_headers(factory.user(tier="free"))
    for _ in range(11):
        client.get("/v1/users/me", headers=free)
    pro = factory.key_headers(factory.user(tier="pro"))
    response = client.get("/v1/users/me", headers=pro)
    assert response.status_code == 200
    assert response.headers["X-RateLimit-Limit"] == "20"


def test_a_tier_change_applies_on_the_next_request(client, factory):
    user = factory.user("upgrader", tier="free")
    headers = factory.key_headers(user)
    for _ in range(10):
        client.get("/v1/users/me", headers=headers)
    assert client.get("/v1/users/me", headers=headers).status_code == 429
    user_accounts.update_user(db.session, "upgrader", tier="pro")
    response = client.get("/v1/users/me", headers=headers)
    assert response.status_code == 200
    assert response.headers["X-RateLimit-Limit"] == "20"


def test_a_request_of_n_items_costs_n(client, factory):
    headers = factory.key_headers(factory.user(tier="free"))
    response = client.post("/probe/items", json={"items": list(range(7))}, headers=headers)
    assert response.status_code == 200
    assert response.headers["X-RateLimit-Remaining"] == "3"
    # 3 left, 4 asked: refused whole, and the 3 stay available.
    assert_429(client.post("/probe/items", json={"items": list(range(4))}, headers=headers), 10, remaining=3)
    assert client.post("/probe/items", json={"items": list(range(3))}, headers=headers).status_code == 200
    assert client.get("/v1/users/me", headers=headers).status_code == 429


def test_unauthenticated_requests_are_limited_per_ip(client):
    for headers in ({}, {"X-API-Key": "mlapi_wrong"}, {"Authorization": "Bearer not-a-token"}):
        response = client.get("/v1/users/me", headers=headers)
        assert response.status_code == 401
        assert response.headers["X-RateLimit-Limit"] == "3"
    assert_429(client.get("/v1/users/me"), 3)
    assert client.get("/v1/users/me", environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 401


def test_probes_and_docs_are_never_limited(client):
    for _ in range(10):
        for path in ("/health", "/ready", "/v1/openapi.json", "/v1/docs"):
            response = client.get(path)
            assert response.status_code == 200, path
            assert "X-RateLimit-Limit" not in response.headers


def login_from(client, address, username, password):
    return client.post(
        "/v1/token", data={"username": username, "password": password}, environ_base={"REMOTE_ADDR": address}
    )


def test_wrong_passwords_from_one_address_do_not_lock_the_owner_out(tmp_path):
    """The attacker's guesses are throttled where they come from; the owner logs in from elsewhere."""
    app = make_app(tmp_path, MLAPI_LOGIN_LIMIT="5/minute")
    try:
        Factory(app).user("victim")
        client = app.test_client()
        for i in range(5):
            assert login_from(client, "203.0.113.66", "victim", f"guess {i}").status_code == 401
        refused = login_from(client, "203.0.113.66", "Victim", f"guess {i}")
        assert_429(refused, 5)
        assert "this username from this address" in refused.get_json()["detail"]
        assert login_from(client, "198.51.100.7", "victim", PASSWORD).status_code == 200
    finally:
        db.dispose()


def test_guesses_from_many_addresses_cannot_lock_the_owner_out(tmp_path):
    """No per-username ceiling: 30 addresses x 5 wrong passwords still leave the owner's login working."""
    app = make_app(tmp_path)
    try:
        Factory(app).user("victim")
        client = app.test_client()
        for address in range(30):
            for guess in range(5):
                assert login_from(client, f"10.0.{address}.1", "victim", f"guess {guess}").status_code == 401
        assert login_from(client, "198.51.100.7", "victim", PASSWORD).status_code == 200
    finally:
        db.dispose()


def test_login_is_throttled_per_address(tmp_path):
    app = make_app(tmp_path, MLAPI_LOGIN_ADDRESS_LIMIT="5/minute")
    try:
        client = app.test_client()
        for i in range(5):
            assert client.post("/v1/token", data={"username": f"user{i}", "password": "x"}).status_code == 401
        response = client.post("/v1/token", data={"username": "someone-else", "password": "x"})
        assert_429(response, 5)
        assert "from this address" in response.get_json()["detail"]
    finally:
        db.dispose()


def test_an_ipv6_client_counts_by_its_slash_64(tmp_path):
    """One host may hold a whole /64: counting each address apart would be no limit at all."""
    app = make_app(tmp_path, MLAPI_ANON_LIMIT="3/minute")
    try:
        client = app.test_client()
        statuses = [
            client.get("/v1/users/me", environ_base={"REMOTE_ADDR": f"2001:db8:0:7::{i:x}"}).status_code
            for i in (1, 0xBEEF, 0xFFFF, 0x1234)
        ]
        assert statuses == [401, 401, 401, 429]
        neighbour = client.get("/v1/users/me", environ_base={"REMOTE_ADDR": "2001:db8:0:8::1"})
        assert neighbour.status_code == 401
    finally:
        db.dispose()


def test_forwarded_for_is_ignored_without_trusted_proxies(client):
    for i in range(3):
        client.get("/v1/users/me", headers={"X-Forwarded-For": f"198.51.100.{i}"})
    assert client.get("/v1/users/me", headers={"X-Forwarded-For": "198.51.100.99"}).status_code == 429


def test_forwarded_for_is_the_client_behind_one_trusted_proxy(tmp_path):
    app = make_app(tmp_path, MLAPI_ANON_LIMIT="3/minute", MLAPI_PROXY_HOPS="1")
    try:
        client = app.test_client()
        for _ in range(3):
            client.get("/v1/users/me", headers={"X-Forwarded-For": "198.51.100.1"})
        assert client.get("/v1/users/me", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 429
        # A client that prepends a fake address is still counted by the address the proxy saw.
        spoofed = client.get("/v1/users/me", headers={"X-Forwarded-For": "203.0.113.7, 198.51.100.1"})
        assert spoofed.status_code == 429
        assert client.get("/v1/users/me", headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 401
    finally:
        db.dispose()


@pytest.mark.parametrize("tier", ["free", "pro"])
def test_a_batch_over_the_cap_names_the_cap_not_the_quota(client, factory, tier):
    """101 items on pro (100/minute) once read "more than the whole quota"; the cap of 100 comes first."""
    headers = factory.key_headers(factory.user(tier=tier))

    def remaining() -> int:
        return int(client.get("/v1/users/me", headers=headers).headers["X-RateLimit-Remaining"])

    before = remaining()
    for path, body in (("/v1/predict/batch", {"inputs": ["x"] * 101}), ("/v1/embeddings", {"input": ["x"] * 101})):
        response = client.post(path, json=body, headers=headers)
        assert response.status_code == 422, response.get_json()
        assert response.get_json()["error"] == "validation_error"
        assert "100" in json.dumps(response.get_json()["errors"])
    v2 = {"inputs": [{"name": "text", "shape": [101], "datatype": "BYTES", "data": ["x"] * 101}]}
    response = client.post("/v2/models/sentiment/infer", json=v2, headers=headers)
    assert response.status_code == 400 and "1 to 100 texts" in response.get_json()["error"]  # the protocol's status
    # Refused before any model ran, each cost one request, not 101 items (and one for this look).
    assert before - remaining() == 4


def test_a_request_larger_than_the_whole_quota_is_422_not_429(client, factory):
    headers = factory.key_headers(factory.user(tier="free"))
    response = client.post("/probe/items", json={"items": list(range(11))}, headers=headers)
    assert response.status_code == 422
    assert response.get_json()["error"] == "exceeds_quota" and "11 items" in response.get_json()["detail"]
    assert "Retry-After" not in response.headers
    assert client.post("/probe/items", json={"items": list(range(10))}, headers=headers).status_code == 200
