"""The prediction cache: in-process and on the real Redis, hits, misses, versions, outages."""

import dataclasses

import pytest

from mlapi.serving.cache import SHARED, MemoryCache, RedisCache, cache_key
from mlapi.serving.manifest import load_manifest
from mlapi.serving.redis_backoff import RedisBackoff
from mlapi.serving.types import PredictInput, Prediction
from mlapi.web.state import state_of
from tests.clocks import FakeClock
from tests.conftest import MODEL_DIR
from tests.services import PrivateRedis, redis_available, unique_prefix

V10 = load_manifest(MODEL_DIR / "sentiment" / "1.0" / "manifest.json")
V11 = load_manifest(MODEL_DIR / "sentiment" / "1.1" / "manifest.json")
GOOD = Prediction("positive", 0.9, {"negative": 0.1, "positive": 0.9})


def test_keys_separate_versions_parameters_and_manifest_edits():
    item = PredictInput("nice")
    keys = {
        cache_key("p", V10, item, SHARED),
        cache_key("p", V11, item, SHARED),
        cache_key("p", V10, PredictInput("nice", temperature=0.5), SHARED),
        cache_key("p", V10, PredictInput("nice", labels=("a", "b")), SHARED),
        cache_key("p", V10, PredictInput("nice", max_tokens=3), SHARED),
        cache_key("p", dataclasses.replace(V10, fingerprint="edited"), item, SHARED),
        cache_key("other", V10, item, SHARED),
        cache_key("p", V10, item, "account-1"),
    }
    assert len(keys) == 8
    assert cache_key("p", V10, item, SHARED) == cache_key("p", V10, PredictInput("nice"), SHARED)


def test_memory_cache_hits_misses_and_expiry():
    clock = FakeClock()
    cache = MemoryCache(size=10, ttl_s=0.2, clock=clock)
    cache.set_many({"a": GOOD})
    assert cache.get_many(["a", "b"]) == [GOOD, None]
    clock.now += 0.19
    assert cache.get_many(["a"]) == [GOOD]
    clock.now += 0.02
    assert cache.get_many(["a"]) == [None]


def test_memory_cache_is_bounded():
    cache = MemoryCache(size=2, ttl_s=60)
    cache.set_many({"a": GOOD, "b": GOOD, "c": GOOD})
    assert sum(hit is not None for hit in cache.get_many(["a", "b", "c"])) == 2


@pytest.mark.redis
def test_redis_cache_round_trip_with_ttl():
    client = redis_available()
    cache = RedisCache(client, ttl_s=60)
    key = f"{unique_prefix()}:k"
    cache.set_many({key: GOOD})
    assert cache.get_many([key, key + "-missing"]) == [GOOD, None]
    assert 0 < client.pttl(key) <= 60_000
    client.delete(key)


@pytest.mark.redis
def test_redis_outage_bypasses_the_cache_and_recovers():
    server = PrivateRedis().start()
    clock = FakeClock()
    try:
        cache = RedisCache(server.client(), ttl_s=60, backoff=RedisBackoff(pause_s=5, clock=clock))
        cache.set_many({"k": GOOD})
        server.stop()
        assert cache.get_many(["k"]) == [None]
        cache.set_many({"k2": GOOD})  # no error
        server.start()
        cache.set_many({"k3": GOOD})
        assert cache.get_many(["k3"]) == [None], "it stepped aside for the pause"
        clock.now += 5
        cache.set_many({"k3": GOOD})
        assert cache.get_many(["k3"]) == [GOOD]
    finally:
        server.stop()


def cache_hits_across_accounts(app) -> tuple[bool, bool, bool]:
    """(A's repeat hit, B's hit in a batch, C's hit alone) for a text only account A sent."""
    from tests.factories import Factory

    factory = Factory(app)
    alice, bob, carol = (factory.key_headers(factory.user(name, tier="enterprise")) for name in ("a1", "b2", "c3"))
    client = app.test_client()
    text = {"text": "Only alice ever wrote this sentence."}
    assert client.post("/v1/predict", json=text, headers=alice).get_json()["cached"] is False
    again = client.post("/v1/predict", json=text, headers=alice).get_json()["cached"]
    batch = client.post("/v1/predict/batch", json={"inputs": [text["text"]]}, headers=bob).get_json()
    other = client.post("/v1/predict", json=text, headers=carol).get_json()
    return again, batch["predictions"][0]["cached"], other["cached"] or other["latency_ms"] == 0


@pytest.mark.parametrize("store", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_the_cache_is_per_account_unless_shared(tmp_path, store):
    from mlapi.extensions import db
    from tests.conftest import make_test_app
    from tests.services import REDIS_URL

    redis_settings = {}
    if store == "redis":
        redis_available()
        redis_settings = {"MLAPI_REDIS_URL": REDIS_URL, "MLAPI_REDIS_PREFIX": unique_prefix()}
    for scope, others_hit in (("account", False), ("global", True)):
        app = make_test_app(f"sqlite:///{tmp_path / f'{scope}.db'}", MLAPI_CACHE_SCOPE=scope, **redis_settings)
        try:
            own, other_in_batch, other = cache_hits_across_accounts(app)
        finally:
            state_of(app).engine.close()
            db.dispose()
        assert own is True
        assert (other, other_in_batch) == (others_hit, others_hit), scope
