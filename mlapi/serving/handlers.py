"""Handlers turn a manifest into a loaded model that predicts or embeds, in batches.

Built in: ``sentence-similarity-classifier`` (zero-shot classification by cosine similarity
to label prototypes) and ``sentence-embedding``. A manifest may instead name its own class as
``package.module:ClassName``, a subclass of :class:`Handler`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import torch
from cachetools import LRUCache

from mlapi.serving.encoder import QUANTIZATIONS, SentenceEncoder, load_encoder
from mlapi.serving.errors import ManifestError, UnsupportedTask
from mlapi.serving.manifest import Manifest
from mlapi.serving.types import Embedding, PredictInput, Prediction

# Fallback label descriptions for labels a request brings along (zero-shot with any labels).
LABEL_TEMPLATES = ("{label}", "This text is about {label}.", "This is {label}.", "It is {label}.")
MIN_TEMPERATURE = 1e-3  # temperature 0 means "most likely label takes all"
MAX_CACHED_LABELS = 1024  # label prototypes remembered per model version and worker


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
        return [
            Embedding(vector.tolist(), tokens)
            for vector, tokens in zip(encoded.vectors, encoded.token_counts, strict=True)
        ]


class SentenceSimilarityClassifier(_EncoderHandler):
    """Zero-shot classification: cosine similarity of the text to one prototype per label.

    A prototype is the normalised mean embedding of the label's descriptions (a prompt
    ensemble from the manifest, or generic templates for labels a request brings), embedded
    once per label and remembered: the manifest's own labels for good, labels that requests bring
    the last ``MAX_CACHED_LABELS`` of them. ``confidence`` is the softmax of the similarities over
    ``temperature``. Embedding a request's own labels is work it causes in the shared runner: the
    web layer charges for it (mlapi.api.v1.inference).
    """

    capabilities = frozenset({"predict"})

    def load(self) -> None:
        super().load()
        options = self.manifest.options
        self.default_temperature = float(options.get("default_temperature", 0.05))
        descriptions = options.get("label_descriptions", {})
        self.descriptions = {label: tuple(descriptions.get(label, ())) for label in self.manifest.labels}
        self._prototype_by_label: LRUCache[str, torch.Tensor] = LRUCache(maxsize=MAX_CACHED_LABELS)
        self._own_prototypes: dict[str, torch.Tensor] = {}
        # The manifest's labels, embedded once here and never evicted: every default request needs them.
        self._own_prototypes = dict(
            zip(self.manifest.labels, self._prototypes(tuple(self.manifest.labels)), strict=True)
        )

    def _phrases(self, label: str) -> tuple[str, ...]:
        return self.descriptions.get(label) or tuple(t.format(label=label) for t in LABEL_TEMPLATES)

    def _prototypes(self, labels: tuple[str, ...]) -> torch.Tensor:
        # Only the model's runner thread calls this (and load, before it starts): no lock needed.
        known = {label: self._own_prototypes.get(label, self._prototype_by_label.get(label)) for label in labels}
        known = {label: prototype for label, prototype in known.items() if prototype is not None}
        missing = [label for label in dict.fromkeys(labels) if label not in known]
        if missing:
            texts, owners = [], []
            for index, label in enumerate(missing):
                phrases = self._phrases(label)
                texts.extend(phrases)
                owners.extend([index] * len(phrases))
            vectors = self.encoder.encode(texts).vectors
            owner = torch.tensor(owners)
            for index, label in enumerate(missing):
                known[label] = torch.nn.functional.normalize(vectors[owner == index].mean(dim=0), dim=0)
                self._prototype_by_label[label] = known[label]
        return torch.stack([known[label] for label in labels])

    def predict(self, items: Sequence[PredictInput]) -> list[Prediction]:
        limits = [min(item.max_tokens or self.max_length, self.max_length) for item in items]
        encoded = self.encoder.encode([item.text for item in items], limits)
        predictions = []
        for item, vector, tokens in zip(items, encoded.vectors, encoded.token_counts, strict=True):
            labels = item.labels or self.manifest.labels
            similarities = self._prototypes(tuple(labels)) @ vector
            temperature = max(
                self.default_temperature if item.temperature is None else item.temperature, MIN_TEMPERATURE
            )
            probabilities = torch.softmax(similarities / temperature, dim=0).tolist()
            best = max(range(len(labels)), key=probabilities.__getitem__)
            predictions.append(
                Prediction(labels[best], probabilities[best], dict(zip(labels, probabilities, strict=True)), tokens)
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
