"""Monthly quotas on a Redis of the test's own: a Redis outage loses no usage count (counts never go
through Redis) and the quota falls back to the rollups while it lasts, then starts again from them;
a changed limit counts from the rollups; the database failing as well serves the request."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from mlapi.accounts.tables import utcnow
from mlapi.extensions import db
from mlapi.serving.redis_backoff import PAUSE_S, RedisBackoff
from mlapi.usage.quotas import MonthlyQuotas
from mlapi.web.state import state_of
from tests.clocks import FakeClock
from tests.conftest import make_test_app
from tests.factories import Factory
from tests.services import PrivateRedis, unique_prefix

pytestmark = [pytest.mark.redis]


def quota_app(tmp_path, private_redis):
    return make_test_app(
        f"sqlite:///{tmp_path / 'mlapi.db'}",
        MLAPI_REDIS_URL=private_redis.url,
        MLAPI_REDIS_PREFIX=unique_prefix(),
        MLAPI_TIER_MONTHLY="free=5",
        MLAPI_TIER_LIMITS="free=100/minute;pro=100/minute",
    )


@pytest.fixture
def private_redis():
    server = PrivateRedis().start()
    yield server
    server.stop()


def test_counts_stay_exact_and_the_quota_holds_through_a_redis_outage(tmp_path, private_redis):
    app = quota_app(tmp_path, private_redis)
    try:
        state = state_of(app)
        clock = FakeClock()
        state.quotas.backoff = RedisBackoff(clock=clock)
        client, factory = app.test_client(), Factory(app)
        headers = factory.key_headers(factory.user("carol"))

        def predict(text):
            return client.post("/v1/predict", json={"text": text}, headers=headers)

        assert [predict(f"before {i}").headers["X-Quota-Remaining"] for i in range(2)] == ["4", "3"]
        assert state.meter.flush()

        private_redis.stop()
        # Two from the rollups, then one this worker has not flushed yet: counted all the same.
        during = [predict(f"during {i}") for i in range(3)]
        assert [(r.status_code, r.headers["X-Quota-Remaining"]) for r in during] == [(200, "2"), (200, "1"), (200, "0")]
        refused = predict("one too many")
        assert refused.status_code == 429 and refused.get_json()["error"] == "monthly_quota_exceeded"

        assert state.meter.flush()
        usage = client.get("/v1/usage", headers=headers).get_json()
        assert (usage["totals"]["requests"], usage["totals"]["items"]) == (5, 5)

        private_redis.start()  # back, and empty: the month's counter is gone
        clock.now += PAUSE_S
        again = predict("after the outage")
        assert again.status_code == 429 and again.headers["X-Quota-Remaining"] == "0"
        assert private_redis.client().keys("*usage-month*"), "the counter should be back in Redis"
    finally:
        state_of(app).meter.close()
        db.dispose()


def test_unlimited_accounts_cost_redis_nothing_and_a_new_limit_counts_from_the_rollups(tmp_path, private_redis):
    app = quota_app(tmp_path, private_redis)
    try:
        client, factory = app.test_client(), Factory(app)
        headers = factory.key_headers(factory.user("paula", tier="pro"))  # pro: unlimited here
        admin = factory.token_headers(factory.user("root", admin=True))
        for i in range(3):
            assert client.post("/v1/predict", json={"text": f"t{i}"}, headers=headers).status_code == 200
        assert not private_redis.client().keys("*usage-month*")
        assert state_of(app).meter.flush()

        client.patch("/v1/admin/users/paula", json={"monthly_quota": 4}, headers=admin)
        fourth = client.post("/v1/predict", json={"text": "t3"}, headers=headers)
        assert (fourth.status_code, fourth.headers["X-Quota-Remaining"]) == (200, "0")
        assert client.post("/v1/predict", json={"text": "t4"}, headers=headers).status_code == 429
    finally:
        state_of(app).meter.close()
        db.dispose()


def test_without_redis_or_rollups_the_request_is_served():
    def unreadable(_account_id, _since):
        raise OperationalError("SELECT", {}, ConnectionRefusedError("the database is down"))

    quotas = MonthlyQuotas(None, "p", unreadable)
    reservation = quotas.reserve(1, 5, 2, utcnow())
    assert reservation.allowed and reservation.state.remaining == 3
