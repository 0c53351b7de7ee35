"""Fault injection with the real services: PostgreSQL and Redis stop under a running Gunicorn.

Both servers are the test's own (``PrivatePostgres``, ``PrivateRedis``), never the shared ones.
One Gunicorn instance (2 workers, the real models) serves both tests; each test stops one
service, checks what clients see from both workers, starts the service again and checks that the
same processes recover, without a restart.

Covered elsewhere, not repeated here:
- Redis stopped, rate limits fall back to in-memory counting and recover:
  test_gunicorn_ratelimit.py::test_redis_outage_falls_back_to_memory_and_recovers
- the prediction cache alone, Redis stopped and restarted:
  test_cache.py::test_redis_outage_bypasses_the_cache_and_recovers
- an unreachable SQLite database, /ready and 503s in-process: test_health.py
- corrupt model weights stop start-up naming the manifest, in the serving core and under Gunicorn:
  test_serving_core.py::test_corrupt_weights_stop_loading_naming_the_manifest,
  test_worker_slots.py::test_corrupt_weights_stop_start_up_naming_the_manifest
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import requests

from mlapi.extensions import db
from tests.conftest import make_test_app
from tests.factories import PASSWORD, Factory
from tests.gunicorn_server import GunicornServer
from tests.services import PrivatePostgres, PrivateRedis, unique_prefix
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.redis]

# A request that meets a dead dependency must fail fast, never wait out a client's timeout.
FAST_S = 5


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """Gunicorn on a private PostgreSQL and a private Redis, with an account, its key and a JWT."""
    redis_server = PrivateRedis()  # first: it only looks for the binary, and may skip
    postgres = PrivatePostgres()
    try:
        postgres.start()
        redis_server.start()
        app = make_test_app(postgres.url, load_models=False)
        factory = Factory(app)
        user = factory.user("faulty", tier="enterprise")
        key = factory.api_key(user)[1]
        db.dispose()
        env = {
            "MLAPI_DATABASE_URL": postgres.url,
            "MLAPI_REDIS_URL": redis_server.url,
            "MLAPI_REDIS_PREFIX": unique_prefix(),
            "MLAPI_LOGIN_LIMIT": "1000/minute",
        }
        with GunicornServer(tmp_path_factory.mktemp("faults") / "gunicorn.log", env, workers=2, threads=4) as server:
            token = login(server).json()["access_token"]
            yield SimpleNamespace(server=server, postgres=postgres, redis=redis_server, key=key, token=token)
    finally:
        redis_server.stop()
        postgres.close()


def login(server: GunicornServer, request_id: str | None = None) -> requests.Response:
    headers = {"X-Request-ID": request_id} if request_id else {}
    return requests.post(
        f"{server.url}/v1/token", data={"username": "faulty", "password": PASSWORD}, headers=headers, timeout=30
    )


def me(stack: SimpleNamespace, request_id: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {stack.token}", "X-Request-ID": request_id}
    return requests.get(f"{stack.server.url}/v1/users/me", headers=headers, timeout=30)


def predict(stack: SimpleNamespace, request_id: str, text: str = "The battery lasts for days.") -> requests.Response:
    headers = {"X-API-Key": stack.key, "X-Request-ID": request_id}
    return requests.post(f"{stack.server.url}/v1/predict", json={"text": text}, headers=headers, timeout=30)


def needs_the_database(stack: SimpleNamespace) -> Callable[[str], requests.Response]:
    """A login, a JWT-authenticated and a key-authenticated request, in turn."""
    senders = (lambda rid: login(stack.server, rid), lambda rid: me(stack, rid), lambda rid: predict(stack, rid))
    turn = itertools.count()
    return lambda rid: senders[next(turn) % len(senders)](rid)


def from_both_workers(server: GunicornServer, send: Callable[[str], requests.Response]) -> list[requests.Response]:
    """Send in parallel rounds until each of the two workers has answered some; returns every answer.

    Each worker has its own connection pool and its own view of Redis, so both must be seen.
    """
    answers: list[requests.Response] = []
    for _ in range(10):
        ids = [uuid.uuid4().hex for _ in range(8)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers += pool.map(send, ids)
        sent = {answer.headers["X-Request-ID"] for answer in answers}
        if {e["pid"] for e in server.access_log() if e.get("request_id") in sent} == server.worker_pids():
            return answers
    pytest.fail("one worker answered every request")


def assert_database_unavailable(answer: requests.Response) -> None:
    assert answer.status_code == 503, (answer.request.url, answer.text)
    body = answer.json()
    assert body["error"] == "database_unavailable"
    assert body["request_id"] == answer.headers["X-Request-ID"]
    assert answer.headers["Retry-After"] == "1"
    assert answer.elapsed.total_seconds() < FAST_S


def test_postgresql_outage_gives_503s_and_recovers_without_a_restart(stack):
    server = stack.server
    assert requests.get(f"{server.url}/ready", timeout=10).status_code == 200
    stack.postgres.stop()
    try:
        ready = requests.get(f"{server.url}/ready", timeout=10)
        assert ready.status_code == 503
        body = ready.json()
        assert body["error"] == "not_ready" and "database" in body["detail"]
        assert body["checks"]["database"] == {"status": "fail", "detail": "OperationalError"}
        assert body["checks"]["redis"] == {"status": "ok"} and body["checks"]["models"] == {"status": "ok"}
        assert requests.get(f"{server.url}/health", timeout=10).status_code == 200

        for answer in from_both_workers(server, needs_the_database(stack)):
            assert_database_unavailable(answer)
        assert not [e for e in server.access_log() if e["status"] >= 500 and e["status"] != 503]
    finally:
        stack.postgres.start()

    # The same workers, their pools refilled: no restart.
    pids = server.worker_pids()
    wait_until(
        lambda: requests.get(f"{server.url}/ready", timeout=10).status_code == 200,
        timeout_s=15,
        interval_s=0.2,
        what="the service to see the database come back",
    )
    answers = from_both_workers(server, needs_the_database(stack))
    assert [a.status_code for a in answers] == [200] * len(answers), [a.text for a in answers if not a.ok]
    assert server.worker_pids() == pids
    assert {"access_token", "refresh_token"} <= login(server).json().keys()


def test_redis_outage_bypasses_the_prediction_cache_and_recovers(stack):
    server, text = stack.server, f"A cache probe {uuid.uuid4().hex}"
    assert predict(stack, uuid.uuid4().hex, text).json()["cached"] is False
    assert predict(stack, uuid.uuid4().hex, text).json()["cached"] is True
    assert stack.redis.client().keys("*:prediction:*")

    stack.redis.stop()
    try:
        during = from_both_workers(server, lambda rid: predict(stack, rid, text))
        assert [a.status_code for a in during] == [200] * len(during), [a.text for a in during if not a.ok]
        assert not [a for a in during if a.json()["cached"]], "served from a cache while Redis was down"
        assert all(a.json()["result"] == during[0].json()["result"] for a in during)
        assert all(a.elapsed.total_seconds() < FAST_S for a in during)
        ready = requests.get(f"{server.url}/ready", timeout=10)
        assert ready.status_code == 503
        checks = ready.json()["checks"]
        assert checks["redis"]["status"] == "fail" and checks["database"] == {"status": "ok"}
        assert "redis" in ready.json()["detail"]
        assert requests.get(f"{server.url}/health", timeout=10).status_code == 200
    finally:
        stack.redis.start()  # an empty server on the same port

    assert requests.get(f"{server.url}/ready", timeout=10).status_code == 200
    # Each worker retries Redis a few seconds after its last failure; then entries are shared again.
    fresh = f"Another cache probe {uuid.uuid4().hex}"
    wait_until(
        lambda: predict(stack, uuid.uuid4().hex, fresh).json()["cached"],
        timeout_s=30,
        interval_s=0.5,
        what="the prediction cache to go back to Redis",
    )
    assert stack.redis.client().keys("*:prediction:*")
    log = server.log_path.read_text()
    assert "prediction cache bypassed, Redis unreachable" in log
