"""Accuracy of the ``sentiment`` versions on the labelled set in benchmarks/data/sentiment.jsonl.

    .venv/bin/python benchmarks/sentiment_accuracy.py [--split heldout|train|all] [--model-dir models]

The set holds 240 short English sentences written for this project (12 domains, balanced);
half is held out. The label descriptions in the manifests were chosen by looking at the
``train`` half only; the figure to report is the ``heldout`` one.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mlapi.serving.registry import ModelRegistry
from mlapi.serving.store import ModelStore
from mlapi.serving.types import PredictInput

DATA = Path(__file__).parent / "data" / "sentiment.jsonl"


def load(split: str) -> list[dict]:
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    return [row for row in rows if split == "all" or row["split"] == split]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="heldout", choices=["heldout", "train", "all"])
    parser.add_argument("--model-dir", default="models", type=Path)
    parser.add_argument("--show-errors", action="store_true")
    args = parser.parse_args()
    rows = load(args.split)
    registry = ModelRegistry(ModelStore.open(args.model_dir), "cpu").load()
    print(f"{'model':<16}{'accuracy':>10}{'n':>6}{'ms/sentence':>13}")
    for version in registry.store.versions("sentiment"):
        handler = registry.resolve("sentiment", version)
        started = time.perf_counter()
        predictions = []
        for start in range(0, len(rows), 32):
            predictions += handler.predict([PredictInput(r["text"]) for r in rows[start : start + 32]])
        elapsed_ms = (time.perf_counter() - started) * 1000 / len(rows)
        correct = [p.label == r["label"] for p, r in zip(predictions, rows, strict=True)]
        print(f"sentiment:{version:<6}{sum(correct) / len(rows):>10.3f}{len(rows):>6}{elapsed_ms:>13.2f}")
        if args.show_errors:
            for ok, p, r in zip(correct, predictions, rows, strict=True):
                if not ok:
                    print(f"    {r['label']:>8} -> {p.label:<8} {p.confidence:.2f}  {r['text']}")


if __name__ == "__main__":
    main()
