"""Accepted API keys served from memory while the Redis epoch stands (real Redis, SQLite and PostgreSQL).

Every change that authentication reads (revocation, tier, admin role, disabled flag) must still
apply on the very next request, whoever made it: this process's API, another process's ``mlapi``
command, or a write the cache never heard of once Redis has lost the epoch.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import event, text

from mlapi.accounts import api_keys, user_accounts
from mlapi.accounts.tables import utcnow
from mlapi.extensions import db
from mlapi.web import credential_cache
from mlapi.web.credential_cache import CredentialCache
from mlapi.web.state import state_of
from tests.clocks import FakeClock
from tests.conftest import make_test_app
from tests.factories import Factory
from tests.services import REDIS_URL, free_port, redis_available, unique_prefix


def dead_redis() -> redis.Redis:
    """A client of a Redis that is not there, failing at once (no retries) as the app's client does."""
    return redis.Redis(port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))


@pytest.fixture
def prefix() -> str:
    redis_available()
    return unique_prefix()


@pytest.fixture
def cached_app(database_url: str, prefix: str):
    app = make_test_app(
        database_url,
        load_models=False,
        MLAPI_REDIS_URL=REDIS_URL,
        MLAPI_REDIS_PREFIX=prefix,
        MLAPI_TIER_LIMITS="free=50/minute;pro=100/minute",
    )
    yield app
    db.dispose()


class KeyLookups:
    """Counts the API-key lookups the database receives (the cache is meant to spare them)."""

    def __init__(self) -> None:
        self.count = 0
        event.listen(db.engine, "before_cursor_execute", self._seen)

    def _seen(self, _connection: object, _cursor: object, statement: str, *_args: object) -> None:
        self.count += "FROM api_keys" in statement

    def close(self) -> None:
        event.remove(db.engine, "before_cursor_execute", self._seen)


def me(client, key: str):
    return client.get("/v1/users/me", headers={"X-API-Key": key})


def test_an_accepted_key_is_served_from_memory_until_a_credential_changes(cached_app):
    factory, client = Factory(cached_app), cached_app.test_client()
    _record, key = factory.api_key(factory.user("cai"))
    assert me(client, key).status_code == 200  # looked up, remembered
    counter = KeyLookups()
    try:
        for _ in range(3):
            assert me(client, key).status_code == 200
        assert counter.count == 0
        factory.user("someone-else", tier="pro")  # a new user changes nobody's credentials
        assert me(client, key).status_code == 200
        creating = counter.count
        assert creating == 0
        with cached_app.app_context():
            user_accounts.update_user(db.session, "someone-else", tier="free")
        assert me(client, key).status_code == 200
        assert counter.count == creating + 1  # the change made this request look the key up again
    finally:
        counter.close()


def test_revoking_through_the_api_applies_on_the_next_request(cached_app):
    factory, client = Factory(cached_app), cached_app.test_client()
    record, key = factory.api_key(factory.user("rex"), scopes=("keys:write",))
    assert me(client, key).status_code == 200
    assert client.delete(f"/v1/api-keys/{record.id}", headers={"X-API-Key": key}).status_code == 204
    refusal = me(client, key)
    assert refusal.status_code == 401 and refusal.get_json()["error"] == "revoked_key"


def test_tier_admin_and_disabled_changes_apply_on_the_next_request(cached_app):
    factory, client = Factory(cached_app), cached_app.test_client()
    admin_headers = factory.key_headers(factory.user("boss", admin=True), scopes=("admin",))
    _record, key = factory.api_key(factory.user("pat", tier="free", admin=True), scopes=("admin",))
    assert me(client, key).headers["X-RateLimit-Limit"] == "50"
    assert client.get("/v1/admin/users", headers={"X-API-Key": key}).status_code == 200

    patch = client.patch("/v1/admin/users/pat", json={"tier": "pro", "is_admin": False}, headers=admin_headers)
    assert patch.status_code == 200
    assert me(client, key).headers["X-RateLimit-Limit"] == "100"
    assert client.get("/v1/admin/users", headers={"X-API-Key": key}).status_code == 403

    assert client.patch("/v1/admin/users/pat", json={"disabled": True}, headers=admin_headers).status_code == 200
    refusal = me(client, key)
    assert refusal.status_code == 401 and refusal.get_json()["error"] == "disabled_user"


def test_a_revocation_by_another_process_applies_on_the_next_request(cached_app, database_url, prefix):
    factory, client = Factory(cached_app), cached_app.test_client()
    record, key = factory.api_key(factory.user("cli"))
    assert me(client, key).status_code == 200
    env = {**os.environ, "MLAPI_DATABASE_URL": database_url, "MLAPI_REDIS_URL": REDIS_URL, "MLAPI_REDIS_PREFIX": prefix}
    revoked = subprocess.run(
        [sys.executable, "-m", "mlapi.cli.main", "keys", "revoke", str(record.id)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert revoked.returncode == 0, revoked.stderr
    assert "warning" not in revoked.stderr  # broadcast: nothing to wait for
    assert me(client, key).get_json()["error"] == "revoked_key"


def test_a_lost_epoch_makes_every_remembered_key_suspect(cached_app, prefix):
    factory, client = Factory(cached_app), cached_app.test_client()
    record, key = factory.api_key(factory.user("lou"))
    assert me(client, key).status_code == 200
    # A write the cache never hears of (plain SQL), then Redis loses its data (a restart without
    # persistence): the epoch is gone, so the remembered key must be looked up again.
    with db.engine.begin() as connection:
        connection.execute(
            text("UPDATE api_keys SET revoked_at = :now WHERE id = :id"), {"now": utcnow(), "id": record.id}
        )
    assert me(client, key).status_code == 200  # the epoch still stands: served from memory
    redis.Redis.from_url(REDIS_URL).delete(f"{prefix}:credentials-epoch")
    assert me(client, key).get_json()["error"] == "revoked_key"


def test_a_remembered_key_still_expires_on_time(cached_app, monkeypatch):
    factory, client = Factory(cached_app), cached_app.test_client()
    _record, key = factory.api_key(factory.user("eve"), expires_in_days=1)
    assert me(client, key).status_code == 200
    later = utcnow() + timedelta(days=1, seconds=1)
    monkeypatch.setattr(credential_cache, "utcnow", lambda: later)
    monkeypatch.setattr("mlapi.accounts.api_keys.utcnow", lambda: later)
    assert me(client, key).get_json()["error"] == "expired_key"


def test_without_a_reachable_redis_every_request_asks_the_database(tmp_path):
    # Nothing listens on this port: the cache steps aside, and a revocation still applies at once.
    app = make_test_app(f"sqlite:///{tmp_path / 'no-redis.db'}", load_models=False)
    factory = Factory(app)
    cache = CredentialCache(dead_redis(), "mlapi-test:epoch", 5.0)
    record, key = factory.api_key(factory.user("ned"))
    counter = KeyLookups()
    try:
        with app.app_context():
            assert cache.check(db.session, key).owner is not None
            assert cache.check(db.session, key).owner is not None
            assert counter.count == 2
            api_keys.revoke_api_key(db.session, record.id)
            assert cache.check(db.session, key).failure == "revoked_key"
    finally:
        counter.close()
        db.dispose()


def test_a_change_that_cannot_reach_redis_is_logged_and_the_commit_stands(cached_app, caplog):
    factory, client = Factory(cached_app), cached_app.test_client()
    record, key = factory.api_key(factory.user("pia"))
    assert me(client, key).status_code == 200
    cache = state_of(cached_app).credentials
    reachable = cache.client
    cache.client = dead_redis()  # Redis gone for the writer
    try:
        with cached_app.app_context():
            api_keys.revoke_api_key(db.session, record.id)  # commits, then fails to replace the epoch
    finally:
        cache.client = reachable
    assert "could not publish a credential change" in caplog.text
    # This worker forgot what it remembered, so its next request still sees the revocation.
    assert me(client, key).get_json()["error"] == "revoked_key"


def test_an_unbroadcast_revocation_reaches_every_worker_within_the_bound(cached_app, prefix):
    """Redis down for the writer: another worker may accept the key only until its entry's TTL ends."""
    factory = Factory(cached_app)
    record, key = factory.api_key(factory.user("tess"))
    clock = FakeClock()
    other_worker = CredentialCache(redis.Redis.from_url(REDIS_URL), f"{prefix}:credentials-epoch", 5.0, timer=clock)
    writer = state_of(cached_app).credentials
    reachable = writer.client
    with cached_app.app_context():
        assert other_worker.check(db.session, key).owner is not None  # remembered
        writer.client = dead_redis()
        try:
            api_keys.revoke_api_key(db.session, record.id)  # the epoch stays as it was
        finally:
            writer.client = reachable
        clock.now += 4.9
        assert other_worker.check(db.session, key).owner is not None  # within the stated bound
        clock.now += 0.2
        assert other_worker.check(db.session, key).failure == "revoked_key"


def test_the_api_warns_when_a_revocation_could_not_be_broadcast(cached_app):
    factory, client = Factory(cached_app), cached_app.test_client()
    record, key = factory.api_key(factory.user("uma"), scopes=("keys:write",))
    other, other_key = factory.api_key(factory.user("uma2"), scopes=("keys:write",))
    cache = state_of(cached_app).credentials
    reachable = cache.client
    broadcast = client.delete(f"/v1/api-keys/{other.id}", headers={"X-API-Key": other_key})
    assert broadcast.status_code == 204 and "Warning" not in broadcast.headers
    assert me(client, key).status_code == 200
    cache.client = dead_redis()
    try:
        response = client.delete(f"/v1/api-keys/{record.id}", headers={"X-API-Key": key})
    finally:
        cache.client = reachable
    assert response.status_code == 204
    assert "not broadcast" in response.headers["Warning"] and "(5 s by" in response.headers["Warning"]


def test_the_cli_warns_when_it_cannot_broadcast_a_revocation(cached_app, database_url):
    factory = Factory(cached_app)
    record, _key = factory.api_key(factory.user("vic"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLAPI_") or k.startswith("MLAPI_TEST_")}
    revoked = subprocess.run(  # no MLAPI_REDIS_URL here, as a careless operator might run it
        [sys.executable, "-m", "mlapi.cli.main", "keys", "revoke", str(record.id)],
        env={**env, "MLAPI_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
    )
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.strip() == f"key {record.id} revoked"
    assert "warning: the change was not broadcast (MLAPI_REDIS_URL is not set here)" in revoked.stderr
    assert "MLAPI_CREDENTIAL_CACHE_TTL_S ends (5 s by" in revoked.stderr


@pytest.mark.parametrize("redis_configured", [True, False])
def test_a_key_refused_for_good_costs_no_more_queries(tmp_path, prefix, redis_configured):
    settings = {"MLAPI_REDIS_URL": REDIS_URL, "MLAPI_REDIS_PREFIX": prefix} if redis_configured else {}
    app = make_test_app(
        f"sqlite:///{tmp_path / 'refused.db'}", load_models=False, MLAPI_ANON_LIMIT="1000/minute", **settings
    )
    factory, client = Factory(app), app.test_client()
    record, revoked_key = factory.api_key(factory.user("wes"))
    with app.app_context():
        api_keys.revoke_api_key(db.session, record.id)
    counter = KeyLookups()
    try:
        for key, failure in (("mlapi_" + "u" * 43, "unknown_key"), (revoked_key, "revoked_key")):
            before = counter.count
            for _ in range(5):
                assert me(client, key).get_json()["error"] == failure
            assert counter.count == before + 1, failure
    finally:
        counter.close()
        db.dispose()


def test_a_process_that_remembers_no_key_still_broadcasts(cached_app, database_url, prefix):
    """MLAPI_CREDENTIAL_CACHE_TTL_S=0 in the CLI's environment must not silence the broadcast."""
    factory, client = Factory(cached_app), cached_app.test_client()
    record, key = factory.api_key(factory.user("xia"))
    assert me(client, key).status_code == 200  # remembered by the server
    env = {
        **os.environ,
        "MLAPI_DATABASE_URL": database_url,
        "MLAPI_REDIS_URL": REDIS_URL,
        "MLAPI_REDIS_PREFIX": prefix,
        "MLAPI_CREDENTIAL_CACHE_TTL_S": "0",
    }
    revoked = subprocess.run(
        [sys.executable, "-m", "mlapi.cli.main", "keys", "revoke", str(record.id)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert revoked.returncode == 0 and "warning" not in revoked.stderr, revoked.stderr
    assert me(client, key).get_json()["error"] == "revoked_key"
