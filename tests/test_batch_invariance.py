"""No answer depends on its batch neighbours: for every model version of the default store.

A text's result alone must equal its result inside a `/v1/predict/batch` (or `/v1/embeddings`)
of 100 with neighbours of 2 to 90 words, and inside a batch the dynamic batcher formed from
concurrent requests: the same label, confidence within 1e-4, embeddings within 1e-5. Otherwise a
caller's answer would change with other tenants' traffic. The versions are read from the store, so
a version added later is covered without editing this test.
"""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

from mlapi.serving.cache import SHARED
from mlapi.serving.engine import BatchingSettings, InferenceEngine
from mlapi.serving.registry import ModelRegistry
from mlapi.serving.store import ModelStore
from mlapi.serving.types import PredictInput
from tests.conftest import MODEL_DIR

CONFIDENCE_TOLERANCE = 1e-4
EMBEDDING_TOLERANCE = 1e-5
TARGETS = [
    "The food was fine but the service was painfully slow.",
    "I love this phone, the battery lasts for days.",
    "It was okay, I guess.",
]
WORDS = (
    "the food service was slow fast fine great awful phone battery lasts days refund broke love hate "
    "hotel staff rude friendly quiet noisy movie plot boring brilliant ticket price value"
).split()
VERSIONS = [manifest for manifest in ModelStore.open(MODEL_DIR).all()]


def neighbours(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 90))) for _ in range(count)]


def with_targets(seed: int) -> tuple[list[str], list[int]]:
    """99 - len(TARGETS) + len(TARGETS) = 100 texts, the targets at random places."""
    texts = neighbours(100 - len(TARGETS), seed)
    positions = sorted(random.Random(seed).sample(range(100), len(TARGETS)))
    for position, target in zip(positions, TARGETS, strict=True):
        texts.insert(position, target)
    return texts, positions


@pytest.fixture
def app(uncached_app):
    return uncached_app


@pytest.fixture
def headers(factory):
    return factory.key_headers(factory.user(tier="enterprise"))


def assert_same_prediction(alone: dict, grouped: dict) -> None:
    assert grouped["result"] == alone["result"]
    assert abs(grouped["confidence"] - alone["confidence"]) <= CONFIDENCE_TOLERANCE, (alone, grouped)


def assert_same_embedding(alone: list[float], grouped: list[float]) -> None:
    difference = float(np.max(np.abs(np.array(alone) - np.array(grouped))))
    assert difference <= EMBEDDING_TOLERANCE, difference


@pytest.mark.parametrize("manifest", VERSIONS, ids=lambda m: m.id)
def test_an_answer_alone_equals_the_answer_in_a_batch_request_of_100(client, headers, manifest):
    texts, positions = with_targets(seed=len(manifest.id))
    chosen = {"model": manifest.name, "model_version": manifest.version}
    if manifest.task == "embedding":
        batch = client.post("/v1/embeddings", json={"input": texts, **chosen}, headers=headers).get_json()["data"]
        for position, target in zip(positions, TARGETS, strict=True):
            alone = client.post("/v1/embeddings", json={"input": target, **chosen}, headers=headers).get_json()
            assert_same_embedding(alone["data"][0]["embedding"], batch[position]["embedding"])
        return
    batch = client.post("/v1/predict/batch", json={"inputs": texts, **chosen}, headers=headers).get_json()
    for position, target in zip(positions, TARGETS, strict=True):
        alone = client.post("/v1/predict", json={"text": target, **chosen}, headers=headers).get_json()
        assert_same_prediction(alone, batch["predictions"][position])


@pytest.fixture(scope="module")
def engine():
    """The serving core alone, batching concurrent single-text requests up to 32 with a 1 s wait."""
    registry = ModelRegistry(ModelStore.open(MODEL_DIR), "cpu").load()
    serving = InferenceEngine(
        registry, BatchingSettings(max_batch_size=32, max_delay_s=1.0, max_queue=256, timeout_s=60)
    )
    yield serving
    serving.close()


@pytest.mark.parametrize("manifest", VERSIONS, ids=lambda m: m.id)
def test_an_answer_alone_equals_the_answer_in_a_dynamically_formed_batch(engine, manifest):
    texts = TARGETS + neighbours(13, seed=7)
    embedding = manifest.task == "embedding"

    def run(text: str):
        if embedding:
            return engine.embed(manifest.name, manifest.version, [text])
        return engine.predict(manifest.name, manifest.version, [PredictInput(text)], cache_scope=SHARED)

    def value(outcome):
        if embedding:
            return outcome.embeddings[0].vector
        return {"result": outcome.predictions[0].label, "confidence": outcome.predictions[0].confidence}

    alone = {text: run(text) for text in TARGETS}
    assert all(outcome.batch_size == 1 for outcome in alone.values())

    together: dict[str, object] = {}
    start = threading.Barrier(len(texts))

    def concurrent_client(text: str) -> None:
        engine.arrivals.announce()  # as a view does: the runner waits for every announced request
        start.wait()
        together[text] = run(text)

    threads = [threading.Thread(target=concurrent_client, args=(text,)) for text in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for text in TARGETS:
        assert together[text].batch_size > 1, "the batcher did not group the concurrent requests"
        if manifest.task == "embedding":
            assert_same_embedding(value(alone[text]), value(together[text]))
        else:
            assert_same_prediction(value(alone[text]), value(together[text]))
