"""/metrics aggregates every Gunicorn worker, live and dead (multiprocess mode)."""

import os
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.gunicorn_server import GunicornServer
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
ENDPOINT = "/v1/users/me"


def total(server, endpoint=ENDPOINT, status="401"):
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "api_requests_total"
        and sample.labels.get("endpoint") == endpoint
        and sample.labels.get("status") == status
    )


def hit(server, count, tag):
    def one(i):
        headers = {"Connection": "close", "X-Request-ID": f"{tag}-{i}"}
        return requests.get(f"{server.url}{ENDPOINT}", headers=headers, timeout=10).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(one, range(count))) == {401}
    return {e["pid"] for e in server.access_log() if e.get("request_id", "").startswith(f"{tag}-")}


def test_counters_add_up_across_workers_and_survive_a_respawn(tmp_path):
    (tmp_path / "no-models").mkdir()
    env = {
        "MLAPI_DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}",
        "MLAPI_MODEL_DIR": str(tmp_path / "no-models"),  # counting requests needs no weights
        "MLAPI_ANON_LIMIT": "100000/minute",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
    }
    with GunicornServer(tmp_path / "gunicorn.log", env, workers=2) as server:
        served_by = hit(server, 60, "first")
        assert served_by == server.worker_pids(), "both workers should have served some requests"
        assert total(server) == 60

        victim = next(iter(server.worker_pids()))
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: (
                victim not in server.worker_pids() and len(server.worker_pids()) >= 2 and server.ready_workers() >= 3
            ),
            timeout_s=60,
            interval_s=0.2,
            what="the killed worker's replacement",
        )
        assert total(server) == 60, "a dead worker's counts must stay in the totals"

        hit(server, 25, "second")
        assert total(server) == 85
