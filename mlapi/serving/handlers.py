"""Handlers turn a manifest into a loaded model that predicts or embeds, in batches.

Built in: ``sentence-similarity-classifier`` (zero-shot classification by cosine similarity
to label prototypes) and ``sentence-embedding``. A manifest may instead name its own class as
``package.module:ClassName``, a subclass of :class:`Handler`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from functools import lru_cache

import torch

from mlapi.serving.encoder import QUANTIZATIONS, SentenceEncoder, load_encoder
from mlapi.serving.errors import ManifestError, UnsupportedTask
from mlapi.serving.manifest import Manifest
from mlapi.serving.types import Embedding, PredictInput, Prediction

# Fallback label descriptions for labels a request brings along (zero-shot with any labels).
LABEL_TEMPLATES = ("{label}", "This text is about {label}.", "This is {label}.", "It is {label}.")
MIN_TEMPERATURE = 1e-3  # temperature 0 means "most likely label takes all"


class Handler:
    """A loaded model version. Subclasses implement ``load`` and ``predict`` or ``embed``."""

    capabilities: frozenset[str] = frozenset()

    def __init__(self, manifest: Manifest, device: str) -> None:
        self.manifest = manifest
        self.requested_device = device

    @property
    def device(self) -> str:
        return self.requested_device

    def load(self) -> None:
        raise NotImplementedError

    def warmup(self) -> None:
        """One forward pass before the first request, so that it does not pay for lazy set-up."""
        if "predict" in self.capabilities:
            self.predict([PredictInput("warm-up")])
        if "embed" in self.capabilities:
            self.embed(["warm-up"])

    def require(self, capability: str) -> None:
        """Raise UnsupportedTask unless this model can ``predict`` or ``embed``."""
        if capability not in self.capabilities:
            advice = "use /v1/embeddings" if capability == "predict" else "use /v1/predict"
            raise UnsupportedTask(f"model {self.manifest.name!r} does not {capability}; {advice}")

    def predict(self, items: Sequence[PredictInput]) -> list[Prediction]:
        self.require("predict")
        raise NotImplementedError

    def embed(self, texts: Sequence[str]) -> list[Embedding]:
        self.require("embed")
        raise NotImplementedError

    def describe(self) -> dict:
        return {"task": self.manifest.task, "device": self.device, "labels": list(self.manifest.labels)}


class _EncoderHandler(Handler):
    encoder: SentenceEncoder

    def load(self) -> None:
        quantization = self.manifest.options.get("quantization")
        if quantization not in QUANTIZATIONS:
            raise ManifestError(f"{self.manifest.path}: unknown quantization {quantization!r}")
        self.encoder = load_encoder(self.manifest.weights_path(), self.requested_device, quantization)
        self.max_length = min(int(self.manifest.options.get("max_length", 256)), self.encoder.max_length)

    @property
    def device(self) -> str:
        return str(self.encoder.device)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "dimensions": self.encoder.dimensions,
            "max_tokens": self.max_length,
            "quantization": self.encoder.quantization,
        }


class SentenceEmbeddingHandler(_EncoderHandler):
    capabilities = frozenset({"embed"})

    def embed(self, texts: Sequence[str]) -> list[Embedding]:
        encoded = self.encoder.encode(texts, [self.max_length] * len(texts))
        return [Embedding(vector.tolist(), tokens) for vector, tokens in zip(encoded.vectors, encoded.token_counts)]


class SentenceSimilarityClassifier(_EncoderHandler):
    """Zero-shot classification: cosine similarity of the text to one prototype per label.

    A prototype is the normalised mean embedding of the label's descriptions (a prompt
    ensemble from the manifest, or generic templates for labels a request brings), embedded
    once per label set. ``confidence`` is the softmax of the similarities over ``temperature``.
    """

    capabilities = frozenset({"predict"})

    def load(self) -> None:
        super().load()
        options = self.manifest.options
        self.default_temperature = float(options.get("default_temperature", 0.05))
        descriptions = options.get("label_descriptions", {})
        self.descriptions = {label: tuple(descriptions.get(label, ())) for label in self.manifest.labels}
        self._prototypes = lru_cache(maxsize=256)(self._compute_prototypes)

    def _compute_prototypes(self, labels: tuple[str, ...]) -> torch.Tensor:
        texts, owners = [], []
        for index, label in enumerate(labels):
            phrases = self.descriptions.get(label) or tuple(t.format(label=label) for t in LABEL_TEMPLATES)
            texts.extend(phrases)
            owners.extend([index] * len(phrases))
        vectors = self.encoder.encode(texts).vectors
        owner = torch.tensor(owners)
        means = torch.stack([vectors[owner == i].mean(dim=0) for i in range(len(labels))])
        return torch.nn.functional.normalize(means, dim=1)

    def predict(self, items: Sequence[PredictInput]) -> list[Prediction]:
        limits = [min(item.max_tokens or self.max_length, self.max_length) for item in items]
        vectors = self.encoder.encode([item.text for item in items], limits).vectors
        predictions = []
        for item, vector in zip(items, vectors):
            labels = item.labels or self.manifest.labels
            similarities = self._prototypes(tuple(labels)) @ vector
            temperature = max(self.default_temperature if item.temperature is None else item.temperature, MIN_TEMPERATURE)
            probabilities = torch.softmax(similarities / temperature, dim=0).tolist()
            best = max(range(len(labels)), key=probabilities.__getitem__)
            predictions.append(
                Prediction(labels[best], probabilities[best], dict(zip(labels, probabilities)))
            )
        return predictions

    def describe(self) -> dict:
        return {**super().describe(), "default_temperature": self.default_temperature}


BUILT_IN = {
    "sentence-similarity-classifier": SentenceSimilarityClassifier,
    "sentence-embedding": SentenceEmbeddingHandler,
}


def handler_class(manifest: Manifest) -> type[Handler]:
    if manifest.handler in BUILT_IN:
        return BUILT_IN[manifest.handler]
    module_name, _, class_name = manifest.handler.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ManifestError(f"{manifest.path}: cannot import handler {manifest.handler!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Handler)):
        raise ManifestError(f"{manifest.path}: handler {manifest.handler!r} is not a mlapi Handler")
    return cls
