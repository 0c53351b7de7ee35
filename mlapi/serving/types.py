"""Inputs and outputs of the serving core."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PredictInput:
    text: str
    labels: tuple[str, ...] | None = None
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float
    scores: dict[str, float]
    tokens: int = 0  # input tokens the model read for it (none for one from the cache)


@dataclass(frozen=True)
class Embedding:
    vector: list[float]
    tokens: int
