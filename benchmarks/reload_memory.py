"""Worker memory across reloads: a version with a network of its own comes in, then goes.

    .venv/bin/python benchmarks/reload_memory.py

A Gunicorn of 2 workers serves a copy of the store without ``sentiment`` 1.1 (the only int8
network). Then: 1.1 is added and reloaded (SIGHUP to the master), then removed and reloaded, and
the retired runner's grace (the inference timeout + 1 s) is waited out. Printed: each worker's RSS
(MiB) at each step, with a prediction served at each to show the models answer.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402 (the benchmark's own Server)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def workers(master: int) -> list[int]:
    return sorted(int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split())


def wait_for(predicate, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.2)


def main() -> None:
    store = Path(tempfile.mkdtemp()) / "models"
    shutil.copytree(bench.ROOT / "models", store)
    spare = store.parent / "sentiment-1.1"
    shutil.move(store / "sentiment" / "1.1", spare)
    server = bench.Server(workers=2, threads=4, redis_url=None)
    server.env.update({"MLAPI_MODEL_DIR": str(store), "MLAPI_INFERENCE_TIMEOUT_S": "2"})
    key = server.start()
    log = server.workdir / "gunicorn.log"

    def predict(version: str) -> int:
        body = {"text": "Memory check.", "model_version": version}
        return requests.post(f"{server.url}/v1/predict", json=body, headers={"X-API-Key": key}, timeout=30).status_code

    def reload(count: int) -> None:
        server.process.send_signal(signal.SIGHUP)
        wait_for(lambda: log.read_text().count('"models reloaded') >= 2 * count, 120)

    def report(step: str) -> None:
        sizes = ", ".join(f"{rss_mib(pid):.0f}" for pid in workers(server.process.pid))
        print(f"{step:45s} worker RSS MiB: {sizes}")

    try:
        predict("1.0")
        report("start (fp32 network only)")
        shutil.move(spare, store / "sentiment" / "1.1")
        reload(1)
        assert {predict("1.1") for _ in range(4)} == {200}
        report("1.1 added (int8 network loaded)")
        shutil.move(store / "sentiment" / "1.1", spare)
        reload(2)
        wait_for(lambda: log.read_text().count("network(s) no model uses were dropped") >= 2, 60)
        assert predict("1.1") == 404
        report("1.1 removed, its runner retired")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
