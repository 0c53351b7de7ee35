"""What dynamic batching buys on a device: the serving engine with and without it, in one run.

    .venv/bin/python benchmarks/engine_batching.py [--device cuda:0] [--seconds 5]

No HTTP: C threads each submit one text at a time to one ``InferenceEngine`` (the path every
``/v1/predict`` request takes after its view), for C in 1, 16 and 64. Each concurrency runs twice
on the same loaded model: batched (``MLAPI_MAX_BATCH_SIZE`` 32, 5 ms delay) and unbatched
(batch size 1, one forward pass per request). It prints sentences/s, p50 and p99 of each and the
batched/unbatched ratio, and writes benchmarks/results/engine-<device>-<time>.json.
On a GPU a forward pass of 32 short texts costs about what one costs, so the ratio is the point.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
CORPUS = [json.loads(line)["text"] for line in (HERE / "data" / "sentiment.jsonl").read_text().splitlines() if line]
MODEL, VERSION = "sentiment", "1.0"
CONCURRENCY = (1, 16, 64)


def run(engine, concurrency: int, seconds: float) -> dict:
    from mlapi.serving.cache import SHARED
    from mlapi.serving.types import PredictInput

    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    start = threading.Barrier(concurrency + 1)
    stop_at: list[float] = []

    def client(index: int) -> None:
        start.wait()
        mine, i = latencies[index], index
        while time.perf_counter() < stop_at[0]:
            began = time.perf_counter()
            engine.predict(MODEL, VERSION, [PredictInput(CORPUS[i % len(CORPUS)])], cache_scope=SHARED)
            mine.append((time.perf_counter() - began) * 1000)
            i += concurrency

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    stop_at.append(time.perf_counter() + seconds)
    began = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    samples = sorted(x for mine in latencies for x in mine)
    return {
        "concurrency": concurrency,
        "sentences_per_s": len(samples) / elapsed,
        "p50_ms": statistics.median(samples),
        "p99_ms": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="dynamic batching on one device, batched vs unbatched")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    import torch

    from mlapi.serving.engine import BatchingSettings, InferenceEngine
    from mlapi.serving.registry import ModelRegistry
    from mlapi.serving.store import ModelStore

    registry = ModelRegistry(ModelStore.open(ROOT / "models"), args.device).load()
    device = registry.resolve(MODEL, VERSION).device
    rows = []
    for concurrency in CONCURRENCY:
        row = {"concurrency": concurrency}
        for label, batch_size in (("unbatched", 1), ("batched", 32)):
            engine = InferenceEngine(registry, BatchingSettings(max_batch_size=batch_size, max_queue=1024))
            try:
                run(engine, concurrency, min(1.0, args.seconds))  # warm-up
                row[label] = run(engine, concurrency, args.seconds)
            finally:
                engine.close()
        row["ratio"] = row["batched"]["sentences_per_s"] / row["unbatched"]["sentences_per_s"]
        rows.append(row)

    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
    results = {
        "when": datetime.now(UTC).isoformat(),
        "device": device,
        "device_name": name,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "model": f"{MODEL}:{VERSION}",
        "seconds": args.seconds,
        "runs": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = args.out / f"engine-{device.replace(':', '')}-{stamp}.json"
    path.write_text(json.dumps(results, indent=2))

    print(f"\n{MODEL}:{VERSION} on {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(
        f"{'concurrency':<13}{'unbatched/s':>12}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'batched/s':>11}{'p50 ms':>8}{'p99 ms':>8}{'ratio':>7}"
    )
    for row in rows:
        u, b = row["unbatched"], row["batched"]
        print(
            f"{row['concurrency']:<13}{u['sentences_per_s']:>12.0f}{u['p50_ms']:>8.1f}{u['p99_ms']:>8.1f}"
            f"{b['sentences_per_s']:>11.0f}{b['p50_ms']:>8.1f}{b['p99_ms']:>8.1f}{row['ratio']:>7.2f}"
        )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
