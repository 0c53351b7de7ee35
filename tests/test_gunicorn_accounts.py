"""Revocation, and the revocation of the keys a key created, reaches every Gunicorn worker at once
(real Gunicorn, real PostgreSQL)."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from mlapi.extensions import db
from tests.conftest import make_test_app
from tests.factories import Factory
from tests.gunicorn_server import GunicornServer
from tests.services import REDIS_URL, fresh_postgres_database, redis_available, unique_prefix

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def fire(server: GunicornServer, key: str, tag: str, count: int = 16) -> list[int]:
    """``count`` concurrent requests on fresh connections, so that the workers share them."""

    def one(i: int) -> int:
        headers = {"X-API-Key": key, "X-Request-ID": f"{tag}-{i}", "Connection": "close"}
        return requests.get(f"{server.url}/v1/users/me", headers=headers, timeout=10).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, range(count)))


def pids_that_served(server: GunicornServer, tag: str) -> set[int]:
    return {e["pid"] for e in server.access_log() if e.get("request_id", "").startswith(f"{tag}-")}


def fire_until_both_workers_answer(server: GunicornServer, key: str, tag: str) -> list[int]:
    statuses: list[int] = []
    for _ in range(10):
        statuses += fire(server, key, tag)
        if len(pids_that_served(server, tag)) == 2:
            break
    assert pids_that_served(server, tag) == server.worker_pids()
    return statuses


@pytest.mark.parametrize("with_redis", [False, True], ids=["database-only", "credential-cache"])
def test_a_revoked_key_is_refused_by_every_worker(tmp_path, with_redis):
    # With Redis, each worker remembers the key it accepted (mlapi.web.credential_cache): the
    # revocation must still reach the worker that did not revoke it, on the next request.
    if with_redis:
        redis_available()
    with fresh_postgres_database() as url:
        app = make_test_app(url)
        factory = Factory(app)
        record, key = factory.api_key(
            factory.user("gus", tier="pro"), scopes=("inference", "models:read", "keys:write")
        )
        db.dispose()
        # Quotas out of the way: this test is about revocation, not limits.
        (tmp_path / "no-models").mkdir()
        env = {
            "MLAPI_DATABASE_URL": url,
            "MLAPI_MODEL_DIR": str(tmp_path / "no-models"),  # about revocation: no weights to load
            "MLAPI_TIER_LIMITS": "pro=100000/minute",
            "MLAPI_ANON_LIMIT": "100000/minute",
        }
        if with_redis:
            env |= {"MLAPI_REDIS_URL": REDIS_URL, "MLAPI_REDIS_PREFIX": unique_prefix()}
        with GunicornServer(tmp_path / "gunicorn.log", env, workers=2) as server:
            # A key the leaked key made for itself dies with it, in every worker.
            child = requests.post(
                f"{server.url}/v1/api-keys", json={"label": "child"}, headers={"X-API-Key": key}, timeout=10
            )
            assert child.status_code == 201, child.text
            child_key = child.json()["key"]
            assert set(fire_until_both_workers_answer(server, key, "before")) == {200}
            assert set(fire_until_both_workers_answer(server, child_key, "child-before")) == {200}

            revoked = requests.delete(f"{server.url}/v1/api-keys/{record.id}", headers={"X-API-Key": key}, timeout=10)
            assert revoked.status_code == 204

            assert set(fire_until_both_workers_answer(server, key, "after")) == {401}
            assert set(fire_until_both_workers_answer(server, child_key, "child-after")) == {401}
            refusal = requests.get(f"{server.url}/v1/users/me", headers={"X-API-Key": key}, timeout=10).json()
            assert refusal["error"] == "revoked_key"
