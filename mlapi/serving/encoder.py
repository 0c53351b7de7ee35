"""Sentence encoding with a Hugging Face transformer: mean pooling over the attention mask, L2 norm.

Encoders are cached per process by (weights, quantization, device), so that models sharing
the same network (``sentiment`` 1.0 and ``minilm`` 1.0) share one loaded copy per worker; a reload
drops those no model uses any more (``forget_encoders_except``).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

QUANTIZATIONS = (None, "dynamic-int8")


@dataclass(frozen=True)
class Encoded:
    vectors: torch.Tensor  # [n, dim], float32, L2-normalised, on the CPU
    token_counts: list[int]


class SentenceEncoder:
    def __init__(self, weights: Path, device: str, quantization: str | None = None) -> None:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self.weights = weights
        self.quantization = quantization
        self.tokenizer = AutoTokenizer.from_pretrained(weights)
        model = AutoModel.from_pretrained(weights).eval()
        # Dynamic int8 quantises each forward pass's activations with one scale for the whole
        # tensor, so a text's answer would depend on its batch neighbours (and their padding):
        # such a model runs each text in a pass of its own, which is exact (see ``encode``).
        self.one_text_per_pass = quantization == "dynamic-int8"
        if quantization == "dynamic-int8":
            # int8 dynamic quantisation runs on CPU kernels (fbgemm/qnnpack) only.
            device = "cpu"
            model = _quantize_dynamic_int8(model)
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.dimensions = int(model.config.hidden_size)
        self.max_length = min(int(self.tokenizer.model_max_length), int(model.config.max_position_embeddings))
        # Fast tokenizers are not safe to call from several threads at once ("Already borrowed").
        self._tokenizer_lock = threading.Lock()

    def encode(self, texts: Sequence[str], max_lengths: Sequence[int] | None = None) -> Encoded:
        """Embed ``texts``, each truncated to its own ``max_lengths`` entry.

        One forward pass for all of them; or, for a quantised model, one pass per text, whose
        result then is the text's result alone, bit for bit, whatever else was batched with it.
        """
        limits = [min(m, self.max_length) for m in (max_lengths or [self.max_length] * len(texts))]
        if self.one_text_per_pass and len(texts) > 1:
            parts = [self._encode_together([text], [limit]) for text, limit in zip(texts, limits, strict=True)]
            return Encoded(torch.cat([p.vectors for p in parts]), [n for p in parts for n in p.token_counts])
        return self._encode_together(list(texts), limits)

    def _encode_together(self, texts: list[str], limits: list[int]) -> Encoded:
        with self._tokenizer_lock:
            batch = self._tokenize(texts, limits)
        batch = {key: value.to(self.device) for key, value in batch.items()}
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            vectors = torch.nn.functional.normalize(pooled, dim=1).float().cpu()
        return Encoded(vectors, batch["attention_mask"].sum(dim=1).tolist())

    def _tokenize(self, texts: list[str], limits: list[int]) -> dict[str, torch.Tensor]:
        if len(set(limits)) == 1:
            return dict(self.tokenizer(texts, padding=True, truncation=True, max_length=limits[0], return_tensors="pt"))
        features = [
            {key: value for key, value in self.tokenizer(text, truncation=True, max_length=limit).items()}
            for text, limit in zip(texts, limits, strict=True)
        ]
        return dict(self.tokenizer.pad(features, return_tensors="pt"))


def _quantize_dynamic_int8(model: torch.nn.Module) -> torch.nn.Module:
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which has no faster CPU
        # path for this model; the eager API still works in the pinned torch.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


_loaded: dict[tuple[Path, str, str | None], SentenceEncoder] = {}
_loading = threading.Lock()


def load_encoder(weights: Path, device: str, quantization: str | None = None) -> SentenceEncoder:
    """The process's encoder for these weights, quantization and device, loaded on first use."""
    key = (weights, device, quantization)
    with _loading:
        if key not in _loaded:
            _loaded[key] = SentenceEncoder(weights, device, quantization)
        return _loaded[key]


def forget_encoders_except(kept: Iterable[SentenceEncoder]) -> int:
    """Drop the encoders no loaded model uses any more (a reload retired them): their memory goes
    back once nothing else holds them. Returns how many were dropped."""
    keep = {id(encoder) for encoder in kept}
    with _loading:
        gone = [key for key, encoder in _loaded.items() if id(encoder) not in keep]
        for key in gone:
            del _loaded[key]
    return len(gone)
