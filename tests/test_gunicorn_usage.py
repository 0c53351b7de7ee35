"""Usage metering and monthly quotas across two Gunicorn instances of 2 workers each, on one
PostgreSQL database and one Redis, with the real models."""

from __future__ import annotations

import csv
import io
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import redis
import requests

from mlapi.extensions import db
from tests.conftest import make_test_app
from tests.factories import Factory
from tests.gunicorn_server import GunicornServer
from tests.services import REDIS_URL, fresh_postgres_database, redis_available, unique_prefix
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.redis]

TEXTS = ["The support team fixed it in minutes.", "It broke on day one.", "Fine, I suppose.", "Best purchase ever."]


@pytest.fixture(scope="module")
def store():
    redis_available()
    with fresh_postgres_database() as url:
        factory = Factory(make_test_app(url, load_models=False))
        keys = {
            name: factory.api_key(factory.user(name, tier=tier))[1]
            for name, tier in (("alice", "pro"), ("bob", "pro"), ("carol", "free"))
        }
        admin = factory.api_key(factory.user("root", admin=True), scopes=("admin",))[1]
        db.dispose()
        yield SimpleNamespace(url=url, keys=keys, admin=admin)


def instance(tmp_path, store, name, prefix, **settings):
    env = {
        "MLAPI_DATABASE_URL": store.url,
        "MLAPI_REDIS_URL": REDIS_URL,
        "MLAPI_REDIS_PREFIX": prefix,
        "MLAPI_TIER_LIMITS": "pro=100000/minute;free=100000/minute",
        "MLAPI_TIER_MONTHLY": "free=5",
        **settings,
    }
    return GunicornServer(tmp_path / f"{name}.log", env, workers=2, threads=4)


def call(server, key, path, body):
    return requests.post(f"{server.url}{path}", json=body, headers={"X-API-Key": key}, timeout=60)


# (path, body, model, items): what each kind of request asks for and costs.
MIXED = [
    ("/v1/predict", {"text": TEXTS[0]}, "sentiment", 1),  # a cache hit after its first time
    ("/v1/predict", {"text": TEXTS[1]}, "sentiment", 1),
    ("/v1/predict/batch", {"inputs": TEXTS}, "sentiment", 4),
    ("/v1/embeddings", {"input": TEXTS[:3]}, "minilm", 3),
    (
        "/v2/models/sentiment/infer",
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": TEXTS[2:]}]},
        "sentiment",
        2,
    ),
    (
        "/v2/models/minilm/infer",
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": TEXTS[:1]}]},
        "minilm",
        1,
    ),
]


def run_mixed(servers, key, rounds):
    """Every kind of request, ``rounds`` times on each server, 8 at a time; the expected totals per model."""
    jobs = [(server, *request) for _ in range(rounds) for server in servers for request in MIXED]
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda job: call(job[0], key, job[1], job[2]), jobs))
    assert [r.status_code for r in responses] == [200] * len(jobs), [r.text for r in responses if r.status_code != 200][
        :3
    ]
    expected = {"requests": Counter(), "items": Counter()}
    for _server, _path, _body, model, items in jobs:
        expected["requests"][model] += 1
        expected["items"][model] += items
    return expected, responses


def usage_by_model(server, key):
    body = requests.get(
        f"{server.url}/v1/usage", params={"group_by": "model"}, headers={"X-API-Key": key}, timeout=10
    ).json()
    return {row["model"]: (row["requests"], row["items"]) for row in body["data"]}


def test_two_instances_meter_exactly_including_requests_served_just_before_sigterm(tmp_path, store):
    prefix = unique_prefix()
    key = store.keys["alice"]
    # The first instance flushes only as it exits: whatever it served is still in its workers' memory then.
    first = instance(tmp_path, store, "first", prefix, MLAPI_USAGE_FLUSH_S="10").start()
    try:
        with instance(tmp_path, store, "second", prefix) as second:
            expected, responses = run_mixed([first, second], key, rounds=3)
            served_by = {(e["pid"]) for srv in (first, second) for e in srv.access_log() if e.get("account_id")}
            assert served_by >= first.worker_pids() | second.worker_pids(), "every worker should have served some"
            cached = sum(r.json().get("cached", False) for r in responses if r.url.endswith("/v1/predict"))
            assert cached > 0

            # The last requests, answered just before the first instance is told to stop.
            last = [call(first, key, "/v1/predict/batch", {"inputs": TEXTS[:2]}) for _ in range(3)]
            assert [r.status_code for r in last] == [200] * 3
            expected["requests"]["sentiment"] += 3
            expected["items"]["sentiment"] += 6
            first.stop()  # SIGTERM: the workers finish, flush, exit

            want = {model: (expected["requests"][model], expected["items"][model]) for model in ("minilm", "sentiment")}
            started = time.monotonic()
            wait_until(lambda: usage_by_model(second, key) == want, timeout_s=10, interval_s=0.2, what=f"usage {want}")
            assert time.monotonic() - started < 10

            # The same figures in the admin CSV, and another account's usage is not in alice's.
            csv_text = requests.get(
                f"{second.url}/v1/admin/usage",
                params={"group_by": "account,model"},
                headers={"X-API-Key": store.admin, "Accept": "text/csv"},
                timeout=10,
            ).text
            rows = {
                (r["account"], r["model"]): (int(r["requests"]), int(r["items"]))
                for r in csv.DictReader(io.StringIO(csv_text))
            }
            assert rows == {("alice", model): counts for model, counts in want.items()}
            assert usage_by_model(second, store.keys["bob"]) == {}
    finally:
        first.stop()


def test_monthly_quota_holds_across_instances_restarts_and_a_lost_counter(tmp_path, store):
    prefix = unique_prefix()
    key = store.keys["carol"]  # free: 5 items a month
    with instance(tmp_path, store, "quota-a", prefix) as a, instance(tmp_path, store, "quota-b", prefix) as b:
        statuses = [
            call(server, key, "/v1/predict", {"text": TEXTS[i % 4]}).status_code for i, server in enumerate([a, b] * 3)
        ]
        assert statuses == [200] * 5 + [429]
        for server in (a, b):
            refused = call(server, key, "/v1/predict", {"text": "one more"})
            assert refused.status_code == 429 and refused.json()["error"] == "monthly_quota_exceeded"
            assert (refused.headers["X-Quota-Limit"], refused.headers["X-Quota-Remaining"]) == ("5", "0")
            assert int(refused.headers["Retry-After"]) > 0 and int(refused.headers["X-Quota-Reset"]) > time.time()

    # Both instances gone; a new one finds the month's count in Redis.
    with instance(tmp_path, store, "quota-c", prefix) as c:
        assert call(c, key, "/v1/predict", {"text": "after a restart"}).status_code == 429
        # Redis loses the counter: the next request counts the month again from the rollups.
        client = redis.Redis.from_url(REDIS_URL)
        counters = client.keys(f"{prefix}/usage-month/*")
        assert counters and client.delete(*counters)
        again = call(c, key, "/v1/predict", {"text": "after Redis lost the counter"})
        assert again.status_code == 429 and again.headers["X-Quota-Remaining"] == "0"
