"""The CUDA path: a Gunicorn worker on cuda:0 must give the CPU's predictions, within tolerance.

    .venv/bin/python scripts/check_cuda.py

Without a visible CUDA device it says so and exits 0 ("skipped"). With one, it starts one
worker with MLAPI_DEVICES=cuda:0, checks /health reports cuda:0, and compares /v1/predict
(sentiment 1.0) and /v1/embeddings (minilm) with the same models loaded on the CPU here.
Then it starts two workers with MLAPI_DEVICES=cuda:0,cpu and checks that slot 0 serves on
cuda:0 and slot 1 on the CPU (devices[slot % len(devices)]), and times embedding batches of 32
on cuda:0 against the CPU in the same process (a ratio, not a benchmark).
Exit status 0: passed or skipped; 1: a mismatch.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [
    "I love this phone, the battery lasts for days.",
    "The delivery was late and the box was crushed.",
    "An average film with a few good moments.",
]
EMBEDDING_TOLERANCE = 1e-3
CONFIDENCE_TOLERANCE = 1e-2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_reference() -> tuple[list[tuple[str, float]], list[list[float]]]:
    from mlapi.serving.registry import ModelRegistry
    from mlapi.serving.store import ModelStore
    from mlapi.serving.types import PredictInput

    registry = ModelRegistry(ModelStore.open(ROOT / "models"), "cpu").load()
    predictions = registry.resolve("sentiment", "1.0").predict([PredictInput(t) for t in TEXTS])
    embeddings = registry.resolve("minilm").embed(TEXTS)
    return [(p.label, p.confidence) for p in predictions], [e.vector for e in embeddings]


def start_server(workdir: Path, database: str, devices: str, workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "MLAPI_DATABASE_URL": database,
        "MLAPI_DEVICES": devices,
        "MLAPI_WORKERS": str(workers),
        "MLAPI_BIND": f"127.0.0.1:{port}",
        "HF_HUB_OFFLINE": "1",
    }
    log = (workdir / f"gunicorn-{workers}.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()  # the server holds its own copy
    return server, f"http://127.0.0.1:{port}"


def wait_ready(url: str, workdir: Path) -> bool:
    import requests

    for _ in range(600):
        try:
            if requests.get(f"{url}/ready", timeout=1).ok:
                return True
        except requests.RequestException:
            time.sleep(0.5)
    print(f"failed: the server never became ready; see the logs in {workdir}")
    return False


def slot_devices(url: str, workers: int) -> dict[int, str]:
    """Which device each worker slot reports, from /health answered by every worker."""
    import requests

    seen: dict[int, str] = {}
    deadline = time.monotonic() + 180  # /ready answers once one worker is up; the others load on
    while len(seen) < workers and time.monotonic() < deadline:
        health = requests.get(f"{url}/health", headers={"Connection": "close"}, timeout=10).json()
        seen[health["worker_slot"]] = health["device"]
        time.sleep(0.05)
    return dict(sorted(seen.items()))


def embedding_speedup(batch: int = 32, rounds: int = 20) -> tuple[float, float]:
    """Milliseconds per batch of ``batch`` texts on cuda:0 and on the CPU, same weights, same process."""
    import torch

    from mlapi.serving.encoder import SentenceEncoder
    from mlapi.serving.manifest import load_manifest

    weights = load_manifest(ROOT / "models" / "minilm" / "1.0" / "manifest.json").weights_path()
    texts = [f"{TEXTS[i % len(TEXTS)]} ({i})" for i in range(batch)]
    timings = []
    for device in ("cuda:0", "cpu"):
        encoder = SentenceEncoder(weights, device)
        encoder.encode(texts)  # warm-up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(rounds):
            encoder.encode(texts)
        timings.append((time.perf_counter() - start) / rounds * 1000)
    return timings[0], timings[1]


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("skipped: no CUDA device is visible (torch.cuda.is_available() is False)")
        return 0
    import requests

    from mlapi.accounts import api_keys, user_accounts
    from mlapi.app import create_app
    from mlapi.cli.db_commands import upgrade_database
    from mlapi.extensions import db

    workdir = Path(tempfile.mkdtemp(prefix="mlapi-cuda-"))
    database = f"sqlite:///{workdir / 'cuda.db'}"
    app = create_app({"MLAPI_DATABASE_URL": database}, load_models=False)
    with app.app_context():
        upgrade_database()
        user = user_accounts.create_user(db.session, "cuda-check", "cuda-check-password", tier="enterprise")
        _, key = api_keys.create_api_key(db.session, user, "cuda-check")
    db.dispose()

    server, url = start_server(workdir, database, "cuda:0", 1)
    try:
        if not wait_ready(url, workdir):
            return 1
        health = requests.get(f"{url}/health", timeout=10).json()
        headers = {"X-API-Key": key}
        batch = requests.post(
            f"{url}/v1/predict/batch", json={"inputs": TEXTS, "model_version": "1.0"}, headers=headers, timeout=60
        ).json()["predictions"]
        vectors = [
            d["embedding"]
            for d in requests.post(f"{url}/v1/embeddings", json={"input": TEXTS}, headers=headers, timeout=60).json()[
                "data"
            ]
        ]
    finally:
        server.terminate()
        server.wait(timeout=60)

    server, url = start_server(workdir, database, "cuda:0,cpu", 2)
    try:
        if not wait_ready(url, workdir):
            return 1
        assigned = slot_devices(url, 2)
    finally:
        server.terminate()
        server.wait(timeout=60)

    reference_predictions, reference_vectors = cpu_reference()
    problems = []
    if health["device"] != "cuda:0" or not health["gpu_available"]:
        problems.append(f"/health says device={health['device']} gpu_available={health['gpu_available']}")
    for text, got, (label, confidence) in zip(TEXTS, batch, reference_predictions, strict=True):
        if got["result"] != label or abs(got["confidence"] - confidence) > CONFIDENCE_TOLERANCE:
            problems.append(f"{text!r}: cuda {got['result']} {got['confidence']:.4f} vs cpu {label} {confidence:.4f}")
    worst = max(
        abs(a - b) for got, want in zip(vectors, reference_vectors, strict=True) for a, b in zip(got, want, strict=True)
    )
    if worst > EMBEDDING_TOLERANCE:
        problems.append(f"embeddings differ by up to {worst:.2e} (tolerance {EMBEDDING_TOLERANCE})")
    if assigned != {0: "cuda:0", 1: "cpu"}:
        problems.append(f"MLAPI_DEVICES=cuda:0,cpu with 2 workers gave slots {assigned}, not {{0: cuda:0, 1: cpu}}")
    gpu_ms, cpu_ms = embedding_speedup()
    print(f"device {health['device']} ({torch.cuda.get_device_name(0)}), worker slot {health['worker_slot']}")
    print(f"largest embedding difference cuda vs cpu: {worst:.2e}")
    print(f"two workers with MLAPI_DEVICES=cuda:0,cpu: slots {assigned}")
    print(f"embedding a batch of 32: cuda:0 {gpu_ms:.2f} ms, cpu {cpu_ms:.2f} ms ({cpu_ms / gpu_ms:.1f}x)")
    for problem in problems:
        print(f"mismatch: {problem}")
    print("failed" if problems else "passed: cuda:0 predictions match the CPU")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
