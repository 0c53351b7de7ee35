"""Start-up: while a worker loads its models it answers at once, and shutdown leaves nothing behind.

A gated model (tests.plugin_handler.GatedClassifier) holds loading until the test opens its FIFO,
so "while loading" lasts exactly as long as the test needs, with no sleep. Before background
loading, a request sent then waited (about 14 s with the default store) for the models.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from mlapi.app import create_app
from mlapi.extensions import db
from mlapi.web.runtime import FAILED, READY
from mlapi.web.state import state_of
from tests.conftest import make_test_app
from tests.factories import Factory
from tests.plugin_handler import open_gate
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[1]


def gated_store(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "models" / "gated" / "1.0"
    folder.mkdir(parents=True)
    gate = tmp_path / "gate.fifo"
    os.mkfifo(gate)
    (folder / "manifest.json").write_text(
        json.dumps(
            {
                "task": "classification",
                "handler": "tests.plugin_handler:GatedClassifier",
                "weights": ".",
                "labels": ["ok", "other"],
                "options": {"gate": str(gate)},
            }
        )
    )
    return tmp_path / "models", gate


@pytest.fixture
def loading_app(tmp_path):
    """An app whose models load in the background and wait at the gate; with a user's key."""
    models, gate = gated_store(tmp_path)
    make_test_app(f"sqlite:///{tmp_path / 's.db'}", load_models=False)  # migrates the database
    db.dispose()
    app = create_app(
        {
            "MLAPI_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}",
            "MLAPI_MODEL_DIR": str(models),
            "MLAPI_CACHE_TTL_S": "0",
        },
        background_loading=True,
    )
    factory = Factory(app)
    headers = factory.key_headers(factory.user(tier="free"))
    yield app, gate, headers
    loading = state_of(app).model_loading
    if not loading.wait(0):  # a failed test must not leave the loader blocked
        open_gate(gate)
        loading.wait(30)
    if "mlapi_engine" in app.extensions:
        state_of(app).engine.close()
    db.dispose()


def test_while_loading_health_ready_and_inference_answer_at_once(loading_app):
    app, gate, headers = loading_app
    client = app.test_client()

    health = client.get("/health")
    assert health.status_code == 200
    assert health.get_json()["models_state"] == "loading" and health.get_json()["models_loaded"] == []

    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.headers["Retry-After"]
    assert ready.get_json()["checks"]["models"] == {"status": "fail", "detail": "loading"}
    assert ready.get_json()["checks"]["database"] == {"status": "ok"}

    for path, body in (
        ("/v1/predict", {"text": "hi", "model": "gated"}),
        ("/v1/predict/batch", {"inputs": ["hi"]}),
        ("/v1/embeddings", {"input": "hi"}),
        ("/v2/models/gated/infer", {"inputs": []}),
    ):
        refused = client.post(path, json=body, headers=headers)
        assert refused.status_code == 503, (path, refused.get_json())
        assert refused.headers["Retry-After"] == "2"
        assert "loading" in json.dumps(refused.get_json())
    assert client.get("/v1/models", headers=headers).status_code == 503
    # Inference is refused before the quota: of the free tier's 10 requests a minute only the
    # catalogue look-up above and this one are spent.
    assert client.get("/v1/users/me", headers=headers).headers["X-RateLimit-Remaining"] == "8"

    open_gate(gate)
    assert state_of(app).model_loading.wait(30)
    assert state_of(app).model_loading.state == READY
    assert client.get("/ready").status_code == 200
    assert client.get("/health").get_json()["models_state"] == "ready"
    answer = client.post("/v1/predict", json={"text": "hi", "model": "gated"}, headers=headers)
    assert answer.status_code == 200 and answer.get_json()["result"] == "ok"


def test_a_load_that_fails_is_reported_not_hidden(loading_app):
    app, gate, headers = loading_app
    open_gate(gate, "fail")
    loading = state_of(app).model_loading
    assert loading.wait(30) and loading.state == FAILED and "the gate failed this load" in loading.error
    client = app.test_client()
    assert client.get("/ready").get_json()["checks"]["models"] == {"status": "fail", "detail": "failed"}
    assert client.get("/health").get_json()["models_state"] == "failed"
    refused = client.post("/v1/predict", json={"text": "hi", "model": "gated"}, headers=headers)
    assert refused.status_code == 503 and refused.get_json()["error"] == "models_unavailable"


class Gunicorn:
    """Gunicorn started by the test, its log read line by line as it is written (no polling)."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp = tmp_path / "tmp"
        self.tmp.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        kept = {k: v for k, v in os.environ.items() if not k.startswith(("MLAPI_", "PROMETHEUS_"))}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**kept, "TMPDIR": str(self.tmp), "MLAPI_BIND": f"127.0.0.1:{self.port}", **env},
        )
        self.lines: list[str] = []
        self.listening = threading.Event()
        self.worker_ready = threading.Event()
        self.reader = threading.Thread(target=self._read_log, daemon=True)
        self.reader.start()

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if "Listening at" in line:
                self.listening.set()
            if "worker ready" in line:
                self.worker_ready.set()
        self.listening.set()  # exited: let a waiting test see it
        self.worker_ready.set()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


@pytest.fixture
def gunicorn(tmp_path) -> Iterator:
    started: list[Gunicorn] = []

    def start(env: dict[str, str]) -> Gunicorn:
        started.append(Gunicorn(tmp_path, env))
        return started[-1]

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
        server.reader.join(timeout=30)
        assert server.process.stderr is not None
        server.process.stderr.close()


@pytest.mark.integration
def test_gunicorn_answers_while_its_worker_loads_and_removes_its_metrics_directory(tmp_path, gunicorn):
    models, gate = gated_store(tmp_path)
    make_test_app(f"sqlite:///{tmp_path / 'g.db'}", load_models=False)
    db.dispose()
    server = gunicorn(
        {
            "MLAPI_MODEL_DIR": str(models),
            "MLAPI_DATABASE_URL": f"sqlite:///{tmp_path / 'g.db'}",
            "MLAPI_WORKERS": "1",
            "HF_HUB_OFFLINE": "1",
        }
    )
    try:
        assert server.listening.wait(60) and server.process.poll() is None, "".join(server.lines)[-3000:]
        # The gate is shut: before background loading these waited for the models, i.e. forever.
        health = requests.get(f"{server.url}/health", timeout=20)
        assert health.status_code == 200 and health.json()["models_state"] == "loading"
        ready = requests.get(f"{server.url}/ready", timeout=5)
        assert ready.status_code == 503 and ready.json()["checks"]["models"]["detail"] == "loading"
        predict = requests.post(f"{server.url}/v1/predict", json={"text": "hi"}, timeout=5)
        assert predict.status_code == 503 and predict.headers["Retry-After"] == "2"
        [metrics_dir] = server.tmp.glob("mlapi-metrics-*")

        open_gate(gate)
        assert server.worker_ready.wait(60) and server.process.poll() is None, "".join(server.lines)[-3000:]
        assert requests.get(f"{server.url}/ready", timeout=5).status_code == 200
    finally:
        if not server.worker_ready.is_set():
            open_gate(gate)
    assert server.stop() == 0
    assert not metrics_dir.exists(), "the metrics directory gunicorn made is left behind"


@pytest.mark.integration
def test_a_worker_whose_models_fail_to_load_stops_gunicorn(tmp_path, gunicorn):
    models, gate = gated_store(tmp_path)
    server = gunicorn(
        {
            "MLAPI_MODEL_DIR": str(models),
            "MLAPI_DATABASE_URL": f"sqlite:///{tmp_path / 'f.db'}",
            "MLAPI_WORKERS": "1",
            "HF_HUB_OFFLINE": "1",
        }
    )
    assert server.listening.wait(60)
    open_gate(gate, "fail")
    code = server.process.wait(timeout=60)
    log = "".join(server.lines)
    assert code != 0 and "the gate failed this load" in log and "Worker failed to boot" in log
