"""A user's own model plugged in with a manifest and a small handler: a ``torch.export`` program.

The "model" scores texts as short or long from their length; what matters here is the plumbing:
the manifest names this class, the weights are a ``.pt2`` file beside it, and the registry loads,
warms up and serves it like the built-in handlers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from mlapi.serving.handlers import Handler
from mlapi.serving.types import PredictInput, Prediction


class LengthScorer(torch.nn.Module):
    def forward(self, lengths: torch.Tensor) -> torch.Tensor:
        # logits for (short, long): longer texts lean "long" past 20 characters
        return torch.stack([20.0 - lengths, lengths - 20.0], dim=1) / 5.0


def export_length_scorer(path: Path) -> None:
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(LengthScorer(), (torch.tensor([1.0, 2.0]),), dynamic_shapes={"lengths": {0: batch}})
    torch.export.save(program, path)


class ExportedLengthClassifier(Handler):
    capabilities = frozenset({"predict"})

    def load(self) -> None:
        self.module = torch.export.load(self.manifest.weights_path()).module()

    def predict(self, items: Sequence[PredictInput]) -> list[Prediction]:
        lengths = torch.tensor([float(len(item.text)) for item in items])
        probabilities = torch.softmax(self.module(lengths), dim=1).tolist()
        labels = self.manifest.labels
        return [Prediction(labels[int(p[1] > p[0])], max(p), dict(zip(labels, p, strict=True))) for p in probabilities]


class ScriptedClassifier(Handler):
    """A test model whose behaviour the text scripts: ``sleep:<s>`` waits, ``boom`` fails the batch.

    Loaded from a manifest like any model, it lets tests provoke overload, deadlines and failures
    through the real batcher and HTTP layer. It records every batch it runs.
    """

    capabilities = frozenset({"predict"})
    batches: list[list[str]] = []

    def load(self) -> None:
        type(self).batches = []

    def predict(self, items: Sequence[PredictInput]) -> list[Prediction]:
        texts = [item.text for item in items]
        type(self).batches.append(texts)
        for text in texts:
            if text == "boom":
                raise RuntimeError("scripted failure")
            if text.startswith("sleep:"):
                import time

                time.sleep(float(text.removeprefix("sleep:")))
        return [Prediction(self.manifest.labels[0], 1.0, {self.manifest.labels[0]: 1.0}) for _ in items]

    def warmup(self) -> None:
        """Nothing to warm up; keeps ``batches`` to what the test sends."""


class GatedClassifier(ScriptedClassifier):
    """Loads only when the test says so: ``load`` blocks reading the FIFO named by the ``gate`` option.

    A FIFO works across processes (a Gunicorn worker) without a sleep: the test writes ``open`` (or
    ``fail``, to make loading fail) and closes it when it wants the load to end.
    """

    def load(self) -> None:
        super().load()
        with open(self.manifest.options["gate"]) as gate:
            if gate.read().strip() == "fail":
                raise RuntimeError("the gate failed this load")


def open_gate(fifo: Path, word: str = "open") -> None:
    """Release a GatedClassifier waiting on ``fifo`` (blocks until its load is reading it)."""
    with fifo.open("w") as gate:
        gate.write(word)
