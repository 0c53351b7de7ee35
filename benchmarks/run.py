"""Throughput and latency of the real server against the model-only limit, measured in one run.

    make bench                      # or: .venv/bin/python benchmarks/run.py [--quick]

(a) L, the model-only limit: as many processes as the server has workers, each with the
    server's torch threads, running the handler on batches of 8, 16 and 32; the best
    sentences/s is the ceiling of these cores.
(b) The real server (Gunicorn, Redis-backed limits, an API key, the cache off) under wrk on
    POST /v1/predict at concurrency 1, 16 and 64: req/s, p50, p99, non-2xx.
(c) POST /v1/predict/batch with 32 inputs: sentences/s.
(d) The bare model's p50 at batch 1 against the server's p50 at concurrency 1: the overhead.
Then L once more at its best batch size, to show how far the machine's speed drifted meanwhile.
wrk runs on the same cores as the server (the load generator is included in the budget).
Results: a table, benchmarks/results/bench-<time>.json and a PNG of throughput and p99.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
CORPUS = [json.loads(line)["text"] for line in (HERE / "data" / "sentiment.jsonl").read_text().splitlines() if line]
MODEL, VERSION = "sentiment", "1.0"  # fp32 all-MiniLM-L6-v2: the model the targets were set with
BATCH_SIZES = (8, 16, 32)
CONCURRENCY = (1, 16, 64)
SETTLE_S = 2.0  # a backlog of 64 requests drains in well under 2 s


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_handler(threads: int):
    import torch

    from mlapi.serving.registry import ModelRegistry
    from mlapi.serving.store import ModelStore

    torch.set_num_threads(threads)
    return ModelRegistry(ModelStore.open(ROOT / "models"), "cpu").load().resolve(MODEL, VERSION)


def _model_worker(threads: int, batch_size: int, seconds: float, ready, start, results) -> None:
    from mlapi.serving.types import PredictInput

    handler = load_handler(threads)
    batches = [[PredictInput(t) for t in CORPUS[i : i + batch_size]] for i in range(0, len(CORPUS), batch_size)]
    batches = [b for b in batches if len(b) == batch_size]
    handler.predict(batches[0])
    ready.wait()
    start.wait()
    done, began, index = 0, time.perf_counter(), 0
    while time.perf_counter() - began < seconds:
        handler.predict(batches[index % len(batches)])
        done += batch_size
        index += 1
    results.put(done / (time.perf_counter() - began))


def model_limit(processes: int, threads: int, seconds: float, batch_sizes=BATCH_SIZES) -> dict[int, float]:
    """Sentences/s of ``processes`` model-only processes in parallel, per batch size."""
    context = mp.get_context("spawn")
    rates = {}
    for batch_size in batch_sizes:
        ready, start, results = context.Barrier(processes + 1), context.Barrier(processes + 1), context.Queue()
        workers = [
            context.Process(target=_model_worker, args=(threads, batch_size, seconds, ready, start, results))
            for _ in range(processes)
        ]
        for worker in workers:
            worker.start()
        ready.wait()
        start.wait()
        rates[batch_size] = sum(results.get() for _ in workers)
        for worker in workers:
            worker.join()
    return rates


def bare_latency_ms(threads: int, calls: int) -> float:
    from mlapi.serving.types import PredictInput

    handler = load_handler(threads)
    samples = []
    for i in range(calls):
        item = [PredictInput(CORPUS[i % len(CORPUS)])]
        began = time.perf_counter()
        handler.predict(item)
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


class Server:
    """The real service: Gunicorn + Redis-backed limits, with an enterprise API key."""

    def __init__(self, workers: int, threads: int, redis_url: str | None) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="mlapi-bench-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "MLAPI_BIND": f"127.0.0.1:{self.port}",
            "MLAPI_WORKERS": str(workers),
            "MLAPI_THREADS": str(threads),
            "MLAPI_DATABASE_URL": f"sqlite:///{self.workdir / 'bench.db'}",
            # High limits for the benchmark account: the limiter still runs on every request.
            "MLAPI_TIER_LIMITS": "enterprise=100000000/minute",
            "MLAPI_REDIS_PREFIX": f"mlapi-bench-{os.getpid()}",
            # Every request reaches the model: the corpus repeats, and a cache would flatter us.
            "MLAPI_CACHE_TTL_S": "0",
        }
        if redis_url:
            self.env["MLAPI_REDIS_URL"] = redis_url
        self.workers = workers

    def start(self) -> str:
        cli = [sys.executable, "-m", "mlapi.cli.main"]

        def run(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([*cli, *args], cwd=ROOT, env=self.env, check=True, capture_output=True, text=True)

        run("db", "upgrade")
        run("users", "create", "bench", "--password", "benchmark-password", "--tier", "enterprise")
        key = run("keys", "create", "bench", "--label", "bench").stdout.strip()
        self.log = (self.workdir / "gunicorn.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.workdir / "gunicorn.log").read_text()[-3000:]
            if (self.workdir / "gunicorn.log").read_text().count("worker ready") >= self.workers:
                if requests.get(f"{self.url}/ready", timeout=5).status_code == 200:
                    return key
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not become ready")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self.log.close()


def wrk(url: str, bodies: Path, key: str, connections: int, seconds: float) -> dict:
    threads = min(connections, 2)
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(HERE / "wrk_post.lua"),
        url,
        "--",
        str(bodies),
        key,
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    summary = json.loads(next(line for line in output.splitlines() if line.startswith("{")))
    seconds_run = summary["duration_us"] / 1e6
    return {
        "concurrency": connections,
        "requests": summary["requests"],
        "req_per_s": summary["requests"] / seconds_run,
        "p50_ms": summary["p50_us"] / 1000,
        "p99_ms": summary["p99_us"] / 1000,
        "non_2xx": summary["non_2xx"],
        "socket_errors": summary["connect_errors"]
        + summary["read_errors"]
        + summary["write_errors"]
        + summary["timeouts"],
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["predict"]
    concurrency = [r["concurrency"] for r in runs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(concurrency, [r["req_per_s"] for r in runs], "o-", label="/v1/predict")
    left.axhline(results["model_limit"]["L"], color="grey", linestyle="--", label="model-only limit L")
    left.set(xscale="log", xlabel="concurrent connections", ylabel="sentences / s", title="Throughput")
    left.legend()
    right.plot(concurrency, [r["p99_ms"] for r in runs], "o-", color="tab:red")
    right.axhline(250, color="grey", linestyle="--", label="p99 target 250 ms")
    right.set(xscale="log", xlabel="concurrent connections", ylabel="ms", title="p99 latency")
    right.legend()
    fig.suptitle(f"mlapi {MODEL}:{VERSION}, {results['setup']['workers']} workers, {os.cpu_count()} cores")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description="mlapi throughput benchmark")
    parser.add_argument("--quick", action="store_true", help="short runs: checks that everything works")
    parser.add_argument("--workers", type=int, default=2)
    # A worker holding more connections than threads queues the extra requests in its thread pool,
    # outside the batcher, for a whole forward pass: each worker gets threads for every connection
    # (they mostly wait on the batcher). Before connections were spread evenly over the workers
    # (mlapi.server.worker), 32 threads gave a p99 at concurrency 64 of 320-550 ms over nine
    # runs, and 64 threads 290-390 ms over eight, at the same throughput.
    parser.add_argument(
        "--threads",
        type=int,
        default=max(CONCURRENCY),
        help="request threads per worker (>= the connections one worker may hold)",
    )
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--redis-url", default=os.environ.get("MLAPI_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    seconds = 2.0 if args.quick else args.seconds
    torch_threads = max(1, (os.cpu_count() or 1) // args.workers)

    rates = model_limit(args.workers, torch_threads, seconds)
    limit = max(rates.values())
    bare_ms = bare_latency_ms(torch_threads, 20 if args.quick else 200)

    bodies = Path(tempfile.mkdtemp()) / "bodies.jsonl"
    bodies.write_text("\n".join(json.dumps({"text": t, "model_version": VERSION}) for t in CORPUS) + "\n")
    batch_bodies = bodies.with_name("batch.jsonl")
    batch_bodies.write_text(
        "\n".join(
            json.dumps({"inputs": [CORPUS[(i + j) % len(CORPUS)] for j in range(32)], "model_version": VERSION})
            for i in range(0, len(CORPUS), 8)
        )
        + "\n"
    )
    server = Server(args.workers, args.threads, args.redis_url)
    key = server.start()
    try:
        wrk(f"{server.url}/v1/predict", bodies, key, 16, 1 if args.quick else 3)  # warm-up
        predict_runs = []
        for connections in CONCURRENCY:
            predict_runs.append(wrk(f"{server.url}/v1/predict", bodies, key, connections, seconds))
            # wrk stops with requests still queued in the workers: let them drain, so that a run
            # never meets the previous run's backlog (it would fill the queue and count 503s).
            time.sleep(SETTLE_S)
        # Several connections per worker: Gunicorn hands a connection to whichever worker accepts
        # it, so with one or two per worker one of them may sit idle while the other queues.
        batch_run = wrk(f"{server.url}/v1/predict/batch", batch_bodies, key, 4 * args.workers, seconds)
    finally:
        server.stop()
    batch_run["sentences_per_s"] = batch_run["req_per_s"] * 32
    # This machine's speed drifts: L again at its best batch size, after the server runs, shows by
    # how much it moved meanwhile (the ratios stay against the L measured first).
    best_batch = max(rates, key=rates.get)
    limit_after = model_limit(args.workers, torch_threads, seconds, (best_batch,))[best_batch]

    results = {
        "when": datetime.now(UTC).isoformat(),
        "setup": {
            "workers": args.workers,
            "threads": args.threads,
            "torch_threads": torch_threads,
            "cores": os.cpu_count(),
            "model": f"{MODEL}:{VERSION}",
            "seconds": seconds,
            "quick": args.quick,
        },
        "model_limit": {"per_batch_size": rates, "L": limit, "L_after_server_runs": limit_after},
        "bare_model_p50_ms": bare_ms,
        "predict": predict_runs,
        "batch": batch_run,
        "overhead_ms_at_c1": predict_runs[0]["p50_ms"] - bare_ms,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    (args.out / f"bench-{stamp}.json").write_text(json.dumps(results, indent=2))
    plot(results, args.out / f"bench-{stamp}.png")

    print(
        f"\nmodel-only limit L = {limit:.0f} sentences/s "
        f"({', '.join(f'batch {b}: {r:.0f}' for b, r in rates.items())}); bare model p50 at batch 1: {bare_ms:.2f} ms"
    )
    print(
        f"L again after the server runs (batch {best_batch}): {limit_after:.0f} sentences/s "
        f"({(limit_after / limit - 1) * 100:+.0f}%: how much the machine's speed moved during the run)"
    )
    print(f"{'run':<22}{'req/s':>9}{'sent/s':>9}{'x L':>7}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}")
    for run in predict_runs:
        print(
            f"{'predict c=' + str(run['concurrency']):<22}{run['req_per_s']:>9.0f}{run['req_per_s']:>9.0f}"
            f"{run['req_per_s'] / limit:>7.2f}{run['p50_ms']:>9.1f}{run['p99_ms']:>9.1f}{run['non_2xx']:>9}"
        )
    print(
        f"{'batch(32) c=' + str(batch_run['concurrency']):<22}{batch_run['req_per_s']:>9.1f}"
        f"{batch_run['sentences_per_s']:>9.0f}{batch_run['sentences_per_s'] / limit:>7.2f}"
        f"{batch_run['p50_ms']:>9.1f}{batch_run['p99_ms']:>9.1f}{batch_run['non_2xx']:>9}"
    )
    print(f"overhead at c=1 (server p50 - bare model p50): {results['overhead_ms_at_c1']:.2f} ms")
    print(f"results: {args.out / f'bench-{stamp}.json'} and .png")


if __name__ == "__main__":
    main()
