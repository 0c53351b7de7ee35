"""Model lifecycle on a real Gunicorn (2 workers): reloading the store under a steady load (no request
fails), weighted routing sticky per account, a per-version batch size, a sunset version."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import requests

from mlapi.extensions import db
from tests.conftest import MODEL_DIR, make_test_app
from tests.factories import Factory
from tests.gunicorn_server import GunicornServer
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration]


@pytest.fixture
def served(tmp_path):
    store = tmp_path / "models"
    shutil.copytree(MODEL_DIR, store)
    url = f"sqlite:///{tmp_path / 'mlapi.db'}"
    factory = Factory(make_test_app(url, load_models=False))
    key = factory.api_key(factory.user("tenant", tier="enterprise"))[1]
    admin = factory.api_key(factory.user("root", admin=True), scopes=("admin",))[1]
    tenants = [factory.api_key(factory.user(f"tenant{i}", tier="enterprise"))[1] for i in range(20)]
    db.dispose()
    env = {
        "MLAPI_DATABASE_URL": url,
        "MLAPI_MODEL_DIR": str(store),
        "MLAPI_TIER_LIMITS": "free=100000/minute;enterprise=100000/minute",
    }
    with GunicornServer(tmp_path / "gunicorn.log", env, workers=2, threads=4) as server:
        yield SimpleNamespace(server=server, store=store, key=key, admin=admin, tenants=tenants)


class SteadyLoad:
    """Two clients predicting without pause until stopped; every status they got."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(2)]

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                response = session.post(
                    f"{self.url}/v1/predict",
                    json={"text": "Steady as she goes."},
                    headers={"X-API-Key": self.key},
                    timeout=30,
                )
                self.statuses.append(response.status_code)

    def __enter__(self) -> SteadyLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def reload_and_wait(served) -> dict:
    admin = {"X-API-Key": served.admin}
    started = requests.post(f"{served.server.url}/v1/admin/models/reload", headers=admin, timeout=10)
    assert started.status_code == 202
    status_url = f"{served.server.url}/v1/admin/models/reload/{started.json()['reload_id']}"
    wait_until(
        lambda: requests.get(status_url, headers=admin, timeout=10).json()["state"] != "pending",
        timeout_s=60,
        interval_s=0.1,
        what="both workers to end their reload",
    )
    return requests.get(status_url, headers=admin, timeout=10).json()


def predict_on_every_worker(served, version: str, count: int = 12) -> set[int]:
    """The statuses of ``count`` requests naming ``version``, each on a new connection (both workers serve some)."""
    return {
        requests.post(
            f"{served.server.url}/v1/predict",
            json={"text": "Which one answers?", "model_version": version},
            headers={"X-API-Key": served.key, "Connection": "close"},
            timeout=30,
        ).status_code
        for _ in range(count)
    }


def add_version(store, version: str) -> None:
    shutil.copytree(store / "sentiment" / "1.1", store / "sentiment" / version)


def test_reload_under_load_serves_a_new_version_and_fails_no_request(served):
    workers = served.server.worker_pids()
    with SteadyLoad(served.server.url, served.key) as load:
        wait_until(lambda: len(load.statuses) >= 10, timeout_s=30, what="the load to start")
        add_version(served.store, "1.2")
        outcome = reload_and_wait(served)
        assert outcome["state"] == "done" and len(outcome["workers"]) == 2, outcome
        assert predict_on_every_worker(served, "1.2") == {200}

        # A broken manifest: the reload fails, and the models loaded before serve on.
        add_version(served.store, "1.3")
        (served.store / "sentiment" / "1.3" / "manifest.json").write_text(json.dumps({"task": "nonsense"}))
        broken = reload_and_wait(served)
        assert broken["state"] == "failed" and "sentiment/1.3/manifest.json" in broken["error"]
        assert predict_on_every_worker(served, "1.2") == {200}
        shutil.rmtree(served.store / "sentiment" / "1.3")

        # SIGHUP to the master does the same, without an HTTP call: 1.2 goes.
        shutil.rmtree(served.store / "sentiment" / "1.2")
        served.server.process.send_signal(signal.SIGHUP)
        wait_until(
            lambda: predict_on_every_worker(served, "1.2") == {404}, timeout_s=60, interval_s=0.2, what="1.2 to go"
        )

        # The CLI asks the same and waits for it.
        command = [sys.executable, "-m", "mlapi.cli.main", "models", "reload", "--url", served.server.url]
        env = {**served.server.env, "MLAPI_API_KEY": served.admin}
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["state"] == "done"
        served_count = len(load.statuses)
    assert served_count > 20 and set(load.statuses) == {200}, sorted(set(load.statuses))
    assert served.server.worker_pids() == workers, "the workers reloaded in place: none was restarted"


def test_a_sighup_while_the_workers_boot_is_a_reload_not_a_crash(tmp_path):
    """Before a worker has built its app, a SIGHUP is kept until it has (and its models load first)."""
    url = f"sqlite:///{tmp_path / 'mlapi.db'}"
    make_test_app(url, load_models=False)
    db.dispose()
    server = GunicornServer(tmp_path / "boot.log", {"MLAPI_DATABASE_URL": url}, workers=2, threads=2)
    outcome: dict = {}
    starting = threading.Thread(target=lambda: outcome.update(server=server.start()), daemon=True)
    starting.start()
    try:
        wait_until(
            lambda: server.log_path.exists() and "Booting worker" in server.log_path.read_text(errors="replace"),
            timeout_s=60,
            interval_s=0.01,
            what="a worker to boot",
        )
        server.process.send_signal(signal.SIGHUP)
        starting.join(timeout=180)
        assert outcome.get("server") is server, server.log()
        wait_until(lambda: server.log_path.read_text().count('"models reloaded') >= 1, timeout_s=60, what="the reload")
        assert server.process.poll() is None and requests.get(f"{server.url}/ready", timeout=10).status_code == 200
    finally:
        server.stop()


def test_routing_batch_size_and_sunset_hold_on_every_worker(served):
    manifest = served.store / "sentiment" / "1.0" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "serving": {"max_batch_size": 4}}))
    shutil.copytree(served.store / "sentiment" / "1.0", served.store / "sentiment" / "0.9")
    old = served.store / "sentiment" / "0.9" / "manifest.json"
    old.write_text(json.dumps({**json.loads(old.read_text()), "deprecated": "2020-01-01", "sunset": "2020-06-01"}))
    assert reload_and_wait(served)["state"] == "done"
    assert predict_on_every_worker(served, "0.9") == {410}

    # 16 requests at once naming 1.0, on both workers: no batch of 1.0 holds more than 4.
    def batches() -> tuple[float, float]:
        text = requests.get(f"{served.server.url}/metrics", timeout=10).text
        labels = 'model="sentiment",model_version="1.0"'
        found = [
            re.search(rf"inference_batch_size_count\{{{labels}\}} (\S+)", text),
            re.search(rf'inference_batch_size_bucket\{{le="4.0",{labels}\}} (\S+)', text),
        ]
        return tuple(float(m.group(1)) if m else 0.0 for m in found)

    before = batches()
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = set(pool.map(lambda _: predict_on_every_worker(served, "1.0", count=1).pop(), range(16)))
    assert statuses == {200}
    count, up_to_4 = batches()
    assert count - before[0] >= 4 and up_to_4 - before[1] == count - before[0]

    # 50/50 over 20 accounts: each keeps its version on both workers, and both versions serve.
    admin = {"X-API-Key": served.admin}
    body = {"weights": {"1.0": 50, "1.1": 50}}
    assert requests.put(
        f"{served.server.url}/v1/admin/models/sentiment/routing", json=body, headers=admin, timeout=10
    ).ok

    def versions_by_tenant() -> list[set[str]]:
        return [
            {
                requests.post(
                    f"{served.server.url}/v1/predict",
                    json={"text": "Which version am I on?"},
                    headers={"X-API-Key": key, "Connection": "close"},
                    timeout=30,
                ).json()["model_version"]
                for _ in range(4)
            }
            for key in served.tenants
        ]

    # Every worker reads the routing within 2 s: until then a tenant may still see latest (1.1).
    wait_until(lambda: all(len(v) == 1 for v in versions_by_tenant()), timeout_s=10, interval_s=0.5, what="routing")
    seen = versions_by_tenant()
    assert all(len(v) == 1 for v in seen) and set().union(*seen) == {"1.0", "1.1"}, seen
