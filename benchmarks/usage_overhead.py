"""What metering and the monthly quota cost a request: the same server from two trees, in one window.

    .venv/bin/python benchmarks/usage_overhead.py BASELINE_TREE [--seconds 8] [--rounds 2]

BASELINE_TREE is a checkout of the code before metering (e.g. ``git worktree add /tmp/base
<commit>``). Three configurations are measured in turn, ``rounds`` times each, with wrk on
POST /v1/predict at concurrency 16 (2 workers, Redis limits, an API key, the cache off):
the baseline tree; this tree with an unlimited account (metering only); this tree with a
monthly quota (metering plus one Redis reservation per request). Printed: req/s and p99 per run,
and each median as a ratio to the baseline's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402 (the benchmark's own Server and wrk helpers)

CONNECTIONS = 16


def measure(root: Path, extra_env: dict[str, str], seconds: float, bodies: Path) -> dict:
    bench.ROOT = root  # the Server runs `mlapi` and Gunicorn from this tree
    server = bench.Server(workers=2, threads=CONNECTIONS // 2 + 1, redis_url="redis://127.0.0.1:6379/0")
    server.env.update(extra_env)
    server.env["PYTHONPATH"] = str(root)
    key = server.start()
    try:
        bench.wrk(f"{server.url}/v1/predict", bodies, key, CONNECTIONS, 2)  # warm-up
        return bench.wrk(f"{server.url}/v1/predict", bodies, key, CONNECTIONS, seconds)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    bodies = Path(tempfile.mkdtemp()) / "bodies.jsonl"
    bodies.write_text("\n".join(json.dumps({"text": t, "model_version": bench.VERSION}) for t in bench.CORPUS) + "\n")
    here = HERE.parent
    configs = {
        "baseline (before metering)": (args.baseline.resolve(), {}),
        "metering, unlimited account": (here, {}),
        "metering + monthly quota": (here, {"MLAPI_TIER_MONTHLY": "enterprise=1000000000"}),
    }
    runs: dict[str, list[dict]] = {name: [] for name in configs}
    for _ in range(args.rounds):
        for name, (root, env) in configs.items():
            result = measure(root, env, args.seconds, bodies)
            runs[name].append(result)
            rate, p99, failed = result["req_per_s"], result["p99_ms"], result["non_2xx"]
            print(f"{name:30s} {rate:7.1f} req/s  p99 {p99:6.1f} ms  non-2xx {failed}")
    base = statistics.median(r["req_per_s"] for r in runs["baseline (before metering)"])
    for name, results in runs.items():
        median = statistics.median(r["req_per_s"] for r in results)
        print(f"median {name:30s} {median:7.1f} req/s  ratio to baseline {median / base:.3f}")


if __name__ == "__main__":
    main()
