"""Runs the real service under Gunicorn on a free port, for integration tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.services import free_port

ROOT = Path(__file__).resolve().parents[1]


class GunicornServer:
    """``gunicorn -c gunicorn.conf.py wsgi:app`` with the given MLAPI_* settings; stopped on exit."""

    def __init__(self, log_path: Path, env: dict[str, str], workers: int = 2, threads: int = 2) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MLAPI_") or k.startswith("MLAPI_TEST_")},
            "PYTHONUNBUFFERED": "1",  # log lines reach the file as they happen
            "MLAPI_BIND": f"127.0.0.1:{self.port}",
            "MLAPI_WORKERS": str(workers),
            "MLAPI_THREADS": str(threads),
            **env,
        }
        self.workers = workers
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> GunicornServer:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.stop()
                raise RuntimeError(f"gunicorn exited with {code}:\n{self.log()}")
            if self.ready_workers() >= self.workers:
                try:
                    if requests.get(f"{self.url}/health", timeout=1).ok:
                        return self
                except requests.RequestException:
                    pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"gunicorn did not become healthy in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def log_entries(self) -> list[dict]:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def ready_workers(self) -> int:
        """Workers that have loaded their models (gunicorn.conf.py logs "worker ready" then)."""
        return sum(1 for entry in self.log_entries() if entry.get("message", "").startswith("worker ready"))

    def access_log(self) -> list[dict]:
        """The app's access-log lines so far, parsed."""
        return [entry for entry in self.log_entries() if entry.get("logger") == "mlapi.access"]

    def worker_pids(self) -> set[int]:
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return {int(pid) for pid in children}

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        self.process = None

    def __enter__(self) -> GunicornServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
