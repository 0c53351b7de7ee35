"""The moving-window storage that reports the window with the hit: one Redis call per check (real Redis)."""

from __future__ import annotations

import pytest
import redis

from mlapi.extensions import db
from mlapi.web.limits_storage import ReportingRedisStorage, storage_uri
from tests.conftest import make_test_app
from tests.factories import Factory
from tests.services import REDIS_URL, redis_available, unique_prefix


@pytest.fixture
def storage() -> ReportingRedisStorage:
    redis_available()
    return ReportingRedisStorage(storage_uri(REDIS_URL), key_prefix=unique_prefix())


def test_the_window_reported_with_a_hit_is_the_one_redis_holds(storage):
    assert storage.acquire_entry("k", 3, 60)
    assert storage.acquire_entry("k", 3, 60, amount=2)
    oldest, count = storage.get_moving_window("k", 3, 60)  # answered from the hit
    assert count == 3
    assert (oldest, count) == pytest.approx(super(ReportingRedisStorage, storage).get_moving_window("k", 3, 60))


def test_a_refused_hit_reports_the_full_window(storage):
    for _ in range(2):
        assert storage.acquire_entry("full", 2, 60)
    assert not storage.acquire_entry("full", 2, 60)
    assert storage.get_moving_window("full", 2, 60)[1] == 2
    assert not storage.acquire_entry("full", 2, 60, amount=3)  # more than the whole limit
    assert storage.get_moving_window("full", 2, 60)[1] == 2


def test_only_the_first_query_after_a_hit_is_answered_from_it(storage):
    other = ReportingRedisStorage(storage_uri(REDIS_URL), key_prefix=storage.key_prefix)
    assert storage.acquire_entry("shared", 10, 60)
    assert other.acquire_entry("shared", 10, 60)  # another worker's hit
    assert storage.get_moving_window("shared", 10, 60)[1] == 1  # this request's own view, at its hit
    assert storage.get_moving_window("shared", 10, 60)[1] == 2  # later queries ask Redis
    assert storage.get_moving_window("other-key", 10, 60)[1] == 0


def evalsha_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def test_a_limited_request_costs_one_redis_script_call(tmp_path):
    redis_available()
    app = make_test_app(
        f"sqlite:///{tmp_path / 'one-call.db'}",
        load_models=False,
        MLAPI_REDIS_URL=REDIS_URL,
        MLAPI_REDIS_PREFIX=unique_prefix(),
        MLAPI_TIER_LIMITS="free=5/minute",
    )
    try:
        factory, client = Factory(app), app.test_client()
        headers = factory.key_headers(factory.user(tier="free"))
        client.get("/v1/users/me", headers=headers)  # scripts loaded, key remembered
        server = redis.Redis.from_url(REDIS_URL)
        before = evalsha_calls(server)
        for remaining in (3, 2, 1, 0):
            response = client.get("/v1/users/me", headers=headers)
            assert response.status_code == 200
            assert response.headers["X-RateLimit-Remaining"] == str(remaining)
        refused = client.get("/v1/users/me", headers=headers)
        assert refused.status_code == 429 and refused.headers["X-RateLimit-Remaining"] == "0"
        assert evalsha_calls(server) - before == 5
    finally:
        db.dispose()
