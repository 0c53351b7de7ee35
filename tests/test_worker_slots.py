"""Device slots handed out by the Gunicorn hooks in gunicorn.conf.py, with fake workers and real ones."""

import json
import os
import runpy
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import requests

from mlapi.serving.devices import device_for_slot
from tests.conftest import MODEL_DIR
from tests.gunicorn_server import ROOT, GunicornServer


@pytest.fixture(scope="module")
def hooks():
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


class FakeArbiter:
    """What the hooks see of Gunicorn's master: the live workers by pid."""

    def __init__(self, hooks):
        self.hooks = hooks
        self.WORKERS = {}
        self.next_pid = 100

    def spawn(self):
        worker = SimpleNamespace()
        self.hooks["pre_fork"](self, worker)  # before fork: not in WORKERS yet
        self.next_pid += 1
        self.WORKERS[self.next_pid] = worker
        return self.next_pid, worker.mlapi_slot

    def die(self, pid):
        self.WORKERS.pop(pid)  # Gunicorn reaps the worker, then calls child_exit


def test_workers_take_the_lowest_free_slot(hooks):
    master = FakeArbiter(hooks)
    spawned = [master.spawn() for _ in range(4)]
    assert [slot for _, slot in spawned] == [0, 1, 2, 3]
    pids = {slot: pid for pid, slot in spawned}

    master.die(pids[1])
    assert master.spawn()[1] == 1  # the respawn reuses its predecessor's slot

    master.die(pids[0])
    master.die(pids[3])
    assert [master.spawn()[1], master.spawn()[1]] == [0, 3]
    assert sorted(w.mlapi_slot for w in master.WORKERS.values()) == [0, 1, 2, 3]


def test_post_fork_hands_the_slot_to_the_worker(hooks, monkeypatch):
    monkeypatch.delenv("MLAPI_WORKER_SLOT", raising=False)
    hooks["post_fork"](None, SimpleNamespace(mlapi_slot=5))
    assert os.environ["MLAPI_WORKER_SLOT"] == "5"


def test_slots_map_onto_devices_round_robin():
    devices = ["cuda:0", "cuda:1"]
    assert [device_for_slot(devices, slot) for slot in range(5)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert device_for_slot(["cpu"], None) == "cpu"


def ready_lines(server):
    return [e for e in server.log_entries() if e.get("message", "").startswith("worker ready")]


@pytest.mark.integration
def test_a_killed_worker_is_replaced_on_its_slot(tmp_path):
    env = {"MLAPI_DATABASE_URL": f"sqlite:///{tmp_path / 'slots.db'}"}
    with GunicornServer(tmp_path / "gunicorn.log", env, workers=3, threads=2) as server:
        slots = {e["pid"]: int(e["message"].split("slot ")[1].rstrip(")")) for e in ready_lines(server)}
        assert sorted(slots.values()) == [0, 1, 2]
        victim = next(pid for pid, slot in slots.items() if slot == 1)

        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 90
        while len(ready_lines(server)) < 4:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.3)
        newcomer = ready_lines(server)[-1]
        assert newcomer["pid"] not in slots
        assert newcomer["message"] == "worker ready (slot 1)"

        seen = set()
        for _ in range(200):
            health = requests.get(f"{server.url}/health", headers={"Connection": "close"}, timeout=10).json()
            seen.add(health["worker_slot"])
            assert health["device"] == "cpu"
            if seen == {0, 1, 2}:
                break
        assert seen == {0, 1, 2}


def run_gunicorn(tmp_path, model_dir, timeout=120):
    env = {
        "PATH": os.environ["PATH"],
        "HF_HUB_OFFLINE": "1",
        "MLAPI_BIND": "127.0.0.1:0",
        "MLAPI_WORKERS": "1",
        "MLAPI_MODEL_DIR": str(model_dir),
        "MLAPI_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
    }
    return subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_gunicorn_refuses_a_broken_manifest_naming_the_file(tmp_path):
    broken = tmp_path / "models" / "sentiment" / "2.0"
    broken.mkdir(parents=True)
    (broken / "manifest.json").write_text("{oops")
    result = run_gunicorn(tmp_path, tmp_path / "models")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlapi: model store error: ")
    assert str(broken / "manifest.json") in lines[0]


@pytest.mark.integration
def test_corrupt_weights_stop_start_up_naming_the_manifest(tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "config.json").write_text('{"model_type": "bert"}')
    (weights / "model.safetensors").write_bytes(b"\x00garbage" * 100)
    folder = tmp_path / "models" / "broken" / "1.0"
    folder.mkdir(parents=True)
    manifest = json.loads((MODEL_DIR / "minilm" / "1.0" / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "weights": str(weights)}))
    result = run_gunicorn(tmp_path, tmp_path / "models")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"{folder / 'manifest.json'}: cannot load model broken:1.0" in output
