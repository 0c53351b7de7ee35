"""The real server: Gunicorn, several workers, over HTTP."""

import subprocess
import sys

import pytest
import requests

from tests.gunicorn_server import ROOT, GunicornServer

pytestmark = pytest.mark.integration


def test_two_workers_answer_health_and_errors_over_http(tmp_path):
    env = {"MLAPI_DATABASE_URL": f"sqlite:///{tmp_path / 'g.db'}"}
    with GunicornServer(tmp_path / "gunicorn.log", env, workers=2) as server:
        assert len(server.worker_pids()) == 2
        health = requests.get(f"{server.url}/health", timeout=5)
        assert health.status_code == 200
        assert health.json()["status"] == "ok"

        missing = requests.get(f"{server.url}/nope", headers={"X-Request-ID": "over-http-1"}, timeout=5)
        assert missing.status_code == 404
        assert missing.headers["Content-Type"] == "application/json"
        body = missing.json()
        assert body["error"] == "not_found"
        assert body["request_id"] == "over-http-1" == missing.headers["X-Request-ID"]

        too_big = requests.post(
            f"{server.url}/health",
            data=b"x" * (2 * 1024 * 1024),
            headers={"Content-Type": "application/json"},
            timeout=5,
        )
        assert too_big.status_code == 413
        assert too_big.json()["status_code"] == 413

        assert requests.get(f"{server.url}/ready", timeout=5).status_code == 200
    log = (tmp_path / "gunicorn.log").read_text()
    assert '"logger": "mlapi.access"' in log and '"request_id": "over-http-1"' in log


def run_gunicorn_expecting_failure(env_overrides):
    env = {"PATH": "/usr/bin:/bin", "MLAPI_BIND": "127.0.0.1:0", **env_overrides}
    return subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_gunicorn_refuses_junk_config_with_one_line(tmp_path):
    result = run_gunicorn_expecting_failure({"MLAPI_WORKERS": "abc"})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "mlapi: configuration error: MLAPI_WORKERS='abc': expected a whole number"
    ]


def test_gunicorn_refuses_production_with_the_default_secret(tmp_path):
    result = run_gunicorn_expecting_failure({"MLAPI_ENV": "production"})
    assert result.returncode != 0
    assert "MLAPI_SECRET_KEY" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_reports_config_errors_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", "from mlapi.cli.main import main; main()", "db", "current"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "MLAPI_ENV": "production", "MLAPI_SECRET_KEY": "short"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "mlapi: configuration error: MLAPI_SECRET_KEY: production mode needs at least 32 bytes"
    ]
