"""Rate limits across real Gunicorn workers and instances sharing the real Redis (and PostgreSQL)."""

import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import requests

from mlapi.extensions import db
from tests.conftest import make_test_app
from tests.factories import Factory
from tests.gunicorn_server import GunicornServer
from tests.services import REDIS_URL, PrivateRedis, fresh_postgres_database, redis_available, unique_prefix

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture(scope="module")
def accounts_db():
    """One PostgreSQL database for the module's servers, with a free and a pro account."""
    redis_available()
    with fresh_postgres_database() as url:
        app = make_test_app(url)
        factory = Factory(app)
        free_key = factory.api_key(factory.user("free1", tier="free"))[1]
        pro_key = factory.api_key(factory.user("pro1", tier="pro"))[1]
        factory.user("victim")
        db.dispose()
        yield SimpleNamespace(url=url, free_key=free_key, pro_key=pro_key)


def server(tmp_path, accounts_db, name, models=False, **settings):
    # Without models unless asked: most of these servers are about limits, and boot in a second.
    (tmp_path / "no-models").mkdir(exist_ok=True)
    env = {
        "MLAPI_DATABASE_URL": accounts_db.url,
        "MLAPI_REDIS_URL": REDIS_URL,
        **({} if models else {"MLAPI_MODEL_DIR": str(tmp_path / "no-models")}),
        **settings,
    }
    return GunicornServer(tmp_path / f"{name}.log", env, workers=2, threads=2)


def get_me(server, key, **headers):
    headers = {"X-API-Key": key, "Connection": "close", **headers} if key else {"Connection": "close", **headers}
    return requests.get(f"{server.url}/v1/users/me", headers=headers, timeout=10)


def parallel(count, call):
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda _: call(), range(count)))


def test_free_account_gets_exactly_its_limit_across_workers(tmp_path, accounts_db):
    settings = {"MLAPI_REDIS_PREFIX": unique_prefix(), "MLAPI_TIER_LIMITS": "free=40/minute"}
    with server(tmp_path, accounts_db, "exact", **settings) as srv:
        statuses = [r.status_code for r in parallel(40, lambda: get_me(srv, accounts_db.free_key))]
        assert statuses == [200] * 40
        served_by = {e["pid"] for e in srv.access_log() if e.get("account_id") and e["status"] == 200}
        assert served_by == srv.worker_pids(), "both workers should have counted into the one quota"

        refused = get_me(srv, accounts_db.free_key)
        assert refused.status_code == 429
        assert refused.json()["error"] == "rate_limit_exceeded"
        assert refused.headers["X-RateLimit-Limit"] == "40"
        assert refused.headers["X-RateLimit-Remaining"] == "0"
        assert 0 < int(refused.headers["Retry-After"]) <= 60

        pro = get_me(srv, accounts_db.pro_key)
        assert pro.status_code == 200
        assert pro.headers["X-RateLimit-Limit"] == "100"


def test_two_instances_share_one_accounts_limit(tmp_path, accounts_db):
    settings = {"MLAPI_REDIS_PREFIX": unique_prefix()}
    with (
        server(tmp_path, accounts_db, "a", **settings) as first,
        server(tmp_path, accounts_db, "b", **settings) as second,
    ):
        for _ in range(5):
            assert get_me(first, accounts_db.free_key).status_code == 200
            assert get_me(second, accounts_db.free_key).status_code == 200
        assert get_me(first, accounts_db.free_key).status_code == 429
        assert get_me(second, accounts_db.free_key).status_code == 429


def test_redis_outage_falls_back_to_memory_and_recovers(tmp_path, accounts_db):
    redis = PrivateRedis().start()
    prefix = unique_prefix()
    try:
        settings = {"MLAPI_REDIS_URL": redis.url, "MLAPI_REDIS_PREFIX": prefix, "MLAPI_TIER_LIMITS": "pro=1000/minute"}
        with server(tmp_path, accounts_db, "outage", **settings) as srv:
            assert get_me(srv, accounts_db.pro_key).status_code == 200
            assert redis.client().keys(f"*{prefix}*")

            redis.stop()
            during = parallel(30, lambda: get_me(srv, accounts_db.pro_key))
            assert [r.status_code for r in during] == [200] * 30
            # Once a worker has switched to in-memory counting, limits and headers carry on.
            after_switch = [get_me(srv, accounts_db.pro_key) for _ in range(4)]
            assert all(r.status_code == 200 and r.headers["X-RateLimit-Limit"] == "1000" for r in after_switch)
            ready = requests.get(f"{srv.url}/ready", timeout=10)
            assert ready.status_code == 503 and ready.json()["checks"]["redis"]["status"] == "fail"

            redis.start()  # an empty server on the same port
            deadline = time.monotonic() + 40
            while not redis.client().keys(f"*{prefix}*"):
                assert time.monotonic() < deadline, "the service never went back to Redis"
                assert get_me(srv, accounts_db.pro_key).status_code == 200
                time.sleep(0.5)
            assert requests.get(f"{srv.url}/ready", timeout=10).json()["checks"]["redis"] == {"status": "ok"}
        log = srv.log_path.read_text()
        assert '"logger": "flask-limiter"' in log
        assert "falling back to in-memory storage" in log and "storage recovered" in log
    finally:
        redis.stop()


def test_forwarded_for_cannot_be_spoofed_without_a_trusted_proxy(tmp_path, accounts_db):
    settings = {"MLAPI_REDIS_PREFIX": unique_prefix(), "MLAPI_ANON_LIMIT": "3/minute"}
    with server(tmp_path, accounts_db, "hops0", **settings) as srv:
        statuses = [get_me(srv, None, **{"X-Forwarded-For": f"198.51.100.{i}"}).status_code for i in range(4)]
    assert statuses == [401, 401, 401, 429]


def test_forwarded_for_names_the_client_behind_one_proxy(tmp_path, accounts_db):
    settings = {"MLAPI_REDIS_PREFIX": unique_prefix(), "MLAPI_ANON_LIMIT": "3/minute", "MLAPI_PROXY_HOPS": "1"}
    with server(tmp_path, accounts_db, "hops1", **settings) as srv:
        distinct = [get_me(srv, None, **{"X-Forwarded-For": f"198.51.100.{i}"}).status_code for i in range(6)]
        same = [get_me(srv, None, **{"X-Forwarded-For": "198.51.100.200"}).status_code for _ in range(4)]
    assert distinct == [401] * 6
    assert same == [401, 401, 401, 429]


def test_login_throttle(tmp_path, accounts_db):
    settings = {"MLAPI_REDIS_PREFIX": unique_prefix(), "MLAPI_LOGIN_LIMIT": "5/minute"}
    with server(tmp_path, accounts_db, "login", **settings) as srv:
        attempts = [
            requests.post(f"{srv.url}/v1/token", data={"username": "victim", "password": f"guess {i}"}, timeout=10)
            for i in range(6)
        ]
    assert [a.status_code for a in attempts] == [401] * 5 + [429]
    assert attempts[-1].headers["Retry-After"]


def test_a_batch_of_n_consumes_n_across_workers(tmp_path, accounts_db):
    settings = {"MLAPI_REDIS_PREFIX": unique_prefix(), "MLAPI_CACHE_TTL_S": "0"}
    headers = {"X-API-Key": accounts_db.free_key, "Connection": "close"}
    with server(tmp_path, accounts_db, "batch", models=True, **settings) as srv:
        first = requests.post(
            f"{srv.url}/v1/predict/batch", json={"inputs": ["a", "b", "c", "d"]}, headers=headers, timeout=60
        )
        second = requests.post(
            f"{srv.url}/v1/predict/batch", json={"inputs": list("efghij")}, headers=headers, timeout=60
        )
        refused = requests.post(f"{srv.url}/v1/predict", json={"text": "one more"}, headers=headers, timeout=60)
    assert (first.status_code, first.headers["X-RateLimit-Remaining"]) == (200, "6")
    assert (second.status_code, second.headers["X-RateLimit-Remaining"]) == (200, "0")
    assert refused.status_code == 429 and refused.json()["error"] == "rate_limit_exceeded"
