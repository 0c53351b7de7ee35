"""`make bench-smoke`: both benchmarks end to end on a short setting, and their reports checked.

Run by `.ci/run` after the suite: benchmarks are measured by `make bench`, never timed inside pytest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fail(message: str, output: str = "") -> None:
    sys.exit(f"bench-smoke: {message}\n{output[-3000:]}")


def check_server_benchmark(out: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLAPI_") or k.startswith("MLAPI_BENCH_")}
    result = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--quick", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        fail("benchmarks/run.py failed", result.stdout + result.stderr)
    if "model-only limit L" not in result.stdout or "overhead at c=1" not in result.stdout:
        fail("benchmarks/run.py printed no table", result.stdout)
    (report,) = out.glob("bench-*.json")
    data = json.loads(report.read_text())
    checks = {
        "L measured twice": data["model_limit"]["L"] > 0 and data["model_limit"]["L_after_server_runs"] > 0,
        "predict at c=1, 16, 64": [run["concurrency"] for run in data["predict"]] == [1, 16, 64],
        "every predict run answered, all 2xx": all(r["requests"] > 0 and r["non_2xx"] == 0 for r in data["predict"]),
        "the batch endpoint measured": data["batch"]["sentences_per_s"] > 0,
        "one plot": len(list(out.glob("bench-*.png"))) == 1,
    }
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        fail(f"the server benchmark's report is wrong: {', '.join(failed)}", report.read_text())


def check_engine_benchmark(out: Path) -> None:
    result = subprocess.run(
        [sys.executable, "benchmarks/engine_batching.py", "--seconds", "0.3", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    if result.returncode != 0:
        fail("benchmarks/engine_batching.py failed", result.stdout + result.stderr)
    (report,) = out.glob("engine-cpu-*.json")
    runs = json.loads(report.read_text())["runs"]
    if [run["concurrency"] for run in runs] != [1, 16, 64] or not all(
        run[mode]["sentences_per_s"] > 0 and run[mode]["p99_ms"] >= run[mode]["p50_ms"] > 0
        for run in runs
        for mode in ("unbatched", "batched")
    ):
        fail("the engine benchmark's report is wrong", report.read_text())


def main() -> None:
    with tempfile.TemporaryDirectory() as server_out, tempfile.TemporaryDirectory() as engine_out:
        check_server_benchmark(Path(server_out))
        check_engine_benchmark(Path(engine_out))
    print("bench-smoke: both benchmarks ran end to end")


if __name__ == "__main__":
    main()
