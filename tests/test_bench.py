"""`make bench` runs end to end on a short setting (benchmarks are measured there, not timed here)."""

import json
import os
import subprocess
import sys

import pytest

from tests.gunicorn_server import ROOT
from tests.services import REDIS_URL, redis_available

pytestmark = [pytest.mark.integration, pytest.mark.redis]


def test_make_bench_runs_end_to_end(tmp_path):
    redis_available()
    env = {**os.environ, "MLAPI_BENCH_REDIS_URL": REDIS_URL}
    env = {k: v for k, v in env.items() if not k.startswith("MLAPI_") or k.startswith(("MLAPI_TEST_", "MLAPI_BENCH_"))}
    result = subprocess.run(
        ["make", "bench", f"BENCH_ARGS=--quick --out {tmp_path}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "model-only limit L" in result.stdout and "overhead at c=1" in result.stdout
    (report,) = tmp_path.glob("bench-*.json")
    data = json.loads(report.read_text())
    assert data["model_limit"]["L"] > 0 and data["model_limit"]["L_after_server_runs"] > 0
    assert [run["concurrency"] for run in data["predict"]] == [1, 16, 64]
    assert all(run["requests"] > 0 and run["non_2xx"] == 0 for run in data["predict"])
    assert data["batch"]["sentences_per_s"] > 0
    assert len(list(tmp_path.glob("bench-*.png"))) == 1


def test_the_engine_batching_benchmark_runs_end_to_end(tmp_path):
    """benchmarks/engine_batching.py (batched vs unbatched, on any device; the CPU here)."""
    result = subprocess.run(
        [sys.executable, "benchmarks/engine_batching.py", "--seconds", "0.3", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (report,) = tmp_path.glob("engine-cpu-*.json")
    data = json.loads(report.read_text())
    assert [run["concurrency"] for run in data["runs"]] == [1, 16, 64]
    for run in data["runs"]:
        for mode in ("unbatched", "batched"):
            assert run[mode]["sentences_per_s"] > 0 and run[mode]["p99_ms"] >= run[mode]["p50_ms"] > 0
