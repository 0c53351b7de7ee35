"""Time from start to ready, and memory per worker, with the default model store.

    .venv/bin/python benchmarks/startup_memory.py [WORKERS]

Starts real Gunicorn (MLAPI_WORKERS workers) on a free port and measures, from the moment the
process is started: the first /health answer (a worker runs; its models still load in the
background), then every worker's "worker ready" log line and /ready 200. Then it reads each
worker's RSS and PSS from /proc. Polls every 50 ms, so each figure is within 50 ms.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def memory_mb(pid: int) -> tuple[float, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        fields[name.rstrip(":")] = int(value)
    return fields["Rss"] / 1024, fields["Pss"] / 1024


def main(workers: int = 2) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="mlapi-startup-"))
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "MLAPI_WORKERS": str(workers),
        "MLAPI_BIND": f"127.0.0.1:{port}",
        "MLAPI_DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
    }
    subprocess.run(
        [sys.executable, "-m", "mlapi.cli.main", "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    log_path = workdir / "gunicorn.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            first_answer = None
            while first_answer is None:
                assert server.poll() is None, log_path.read_text()[-3000:]
                try:
                    if requests.get(f"http://127.0.0.1:{port}/health", timeout=60).ok:
                        first_answer = time.monotonic() - started
                except requests.ConnectionError:
                    time.sleep(0.05)
            ready: dict[int, float] = {}
            while len(ready) < workers:
                assert server.poll() is None, log_path.read_text()[-3000:]
                for line in log_path.read_text().splitlines():
                    if line.startswith("{") and "worker ready" in line:
                        ready.setdefault(json.loads(line)["pid"], time.monotonic() - started)
                time.sleep(0.05)
            while requests.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code != 200:
                time.sleep(0.05)
            all_ready = time.monotonic() - started
            print(f"workers: {workers}, cores: {os.cpu_count()}")
            print(f"start to the first /health answer: {first_answer:.1f} s")
            print(f"start to ready (every worker loaded, /ready 200): {all_ready:.1f} s")
            print(f"{'worker pid':>10}{'ready at s':>12}{'RSS MB':>9}{'PSS MB':>9}")
            for pid, at in sorted(ready.items()):
                rss, pss = memory_mb(pid)
                print(f"{pid:>10}{at:>12.1f}{rss:>9.0f}{pss:>9.0f}")
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
