"""/v1/predict, /v1/predict/batch, /v1/embeddings and /v1/models over the app, with real weights."""

import base64
import re
import sys

import numpy as np
import pytest

from mlapi.serving.types import PredictInput
from mlapi.web.state import state_of


@pytest.fixture
def app(uncached_app):
    """Without the prediction cache: these tests compare fresh model outputs with each other."""
    return uncached_app


@pytest.fixture
def headers(factory):
    return factory.key_headers(factory.user(tier="enterprise"))


def predict(client, headers, **body):
    return client.post("/v1/predict", json=body, headers=headers)


def test_predict_response_shape(client, headers):
    response = predict(client, headers, text="  I love this product, it works perfectly.  ")
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) >= {"request_id", "result", "confidence", "latency_ms", "model", "model_version", "timestamp"}
    assert body["cached"] is False
    assert body["result"] == "positive"
    assert body["model"] == "sentiment" and body["model_version"] == "1.1"
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert 0.5 < body["confidence"] <= 1 and body["latency_ms"] > 0
    assert set(body["scores"]) == {"negative", "positive"}


def test_predict_a_pinned_version(client, headers):
    body = predict(client, headers, text="Terrible, it broke on day one.", model_version="1.0").get_json()
    assert (body["model_version"], body["result"]) == ("1.0", "negative")


def test_labels_override_and_temperature(client, headers):
    body = predict(
        client, headers, text="Our flight was delayed by six hours.", labels=["travel", "cooking", "music"]
    ).get_json()
    assert body["result"] == "travel" and set(body["scores"]) == {"travel", "cooking", "music"}
    warm = predict(client, headers, text="It was fine.", temperature=2).get_json()["confidence"]
    cold = predict(client, headers, text="It was fine.", temperature=0).get_json()["confidence"]
    assert cold > warm


def test_max_tokens_truncates(client, headers):
    text = "Wonderful! " + "This was a terrible, miserable waste of money. " * 20
    assert predict(client, headers, text=text).get_json()["result"] == "negative"
    assert predict(client, headers, text=text, max_tokens=4).get_json()["result"] == "positive"


def test_batch_of_100_matches_singles_in_order(client, headers):
    texts = [f"Item {i}: " + ("I love it" if i % 2 else "I want a refund, it is useless") for i in range(100)]
    response = client.post("/v1/predict/batch", json={"inputs": texts, "model_version": "1.0"}, headers=headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body["count"] == 100 and [p["index"] for p in body["predictions"]] == list(range(100))
    for i in (0, 1, 2, 51, 98, 99):
        single = predict(client, headers, text=texts[i], model_version="1.0").get_json()
        assert body["predictions"][i]["result"] == single["result"]
        assert body["predictions"][i]["confidence"] == pytest.approx(single["confidence"], abs=1e-4)


def test_embeddings_are_openai_compatible(client, headers):
    body = client.post(
        "/v1/embeddings",
        json={"input": ["A man is eating food.", "A man is eating a piece of bread."]},
        headers=headers,
    ).get_json()
    assert body["object"] == "list" and body["model"] == "minilm"
    assert [d["index"] for d in body["data"]] == [0, 1] and body["data"][0]["object"] == "embedding"
    first, second = (np.array(d["embedding"]) for d in body["data"])
    assert len(first) == 384
    assert float(first @ second) == pytest.approx(0.755, abs=0.005)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0


def test_embeddings_single_string_and_base64(client, headers):
    as_floats = client.post("/v1/embeddings", json={"input": "hello world"}, headers=headers).get_json()
    as_base64 = client.post(
        "/v1/embeddings", json={"input": "hello world", "encoding_format": "base64"}, headers=headers
    ).get_json()
    decoded = np.frombuffer(base64.b64decode(as_base64["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, as_floats["data"][0]["embedding"], atol=1e-6)


@pytest.mark.parametrize(
    "path,body,field",
    [
        ("/v1/predict", {"text": ""}, "text"),
        ("/v1/predict", {"text": "   \n\t "}, "text"),
        ("/v1/predict", {"text": "\u3000\x1c\u2028\xa0"}, "text"),
        ("/v1/predict", {"text": "x" * 5001}, "text"),
        ("/v1/predict", {"text": "ok", "temperature": -0.1}, "temperature"),
        ("/v1/predict", {"text": "ok", "temperature": 2.01}, "temperature"),
        ("/v1/predict", {"text": "ok", "max_tokens": 0}, "max_tokens"),
        ("/v1/predict", {"text": "ok", "max_tokens": 2049}, "max_tokens"),
        ("/v1/predict", {"text": "ok", "max_tokens": 1.5}, "max_tokens"),
        ("/v1/predict", {"text": "ok", "labels": ["only-one"]}, "labels"),
        ("/v1/predict", {"text": "ok", "labels": [f"l{i}" for i in range(21)]}, "labels"),
        ("/v1/predict", {"text": "ok", "labels": ["a", "a"]}, "labels"),
        ("/v1/predict", {"text": "ok", "labels": ["a", " "]}, "labels"),
        ("/v1/predict", {"text": 42}, "text"),
        ("/v1/predict", {"text": "ok", "colour": "blue"}, "colour"),
        ("/v1/predict/batch", {"inputs": []}, "inputs"),
        ("/v1/predict/batch", {"inputs": ["x"] * 101}, "inputs"),
        ("/v1/predict/batch", {"inputs": ["fine", ""]}, "inputs"),
        ("/v1/predict/batch", {"inputs": "not a list"}, "inputs"),
        ("/v1/embeddings", {"input": []}, "input"),
        ("/v1/embeddings", {"input": ["x"] * 101}, "input"),
        ("/v1/embeddings", {"input": [1, 2]}, "input"),
        ("/v1/embeddings", {"input": ["fine", "   "]}, "input"),
        ("/v1/embeddings", {"input": "x" * 5001}, "input"),
        ("/v1/embeddings", {"input": "ok", "encoding_format": "int8"}, "encoding_format"),
    ],
)
def test_validation_limits(client, headers, path, body, field):
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["errors"]


def test_the_documented_text_pattern_refuses_exactly_the_blank_texts():
    """The OpenAPI pattern (JSON Schema semantics: a match anywhere) and str.strip agree on every character."""
    from mlapi.api.inputs import TEXT_SCHEMA

    pattern = re.compile(TEXT_SCHEMA["pattern"])
    for code in range(sys.maxunicode + 1):
        if not 0xD800 <= code <= 0xDFFF:  # surrogates are refused before validation
            char = chr(code)
            assert (pattern.search(char) is None) == (char.strip() == ""), hex(code)
    assert pattern.search("  ok  ") and not pattern.search(" \t\u3000 ")


@pytest.mark.parametrize(
    "body",
    [
        {"text": "x" * 5000},
        {"text": "ok", "temperature": 0},
        {"text": "ok", "temperature": 2},
        {"text": "ok", "max_tokens": 2048},
    ],
)
def test_validation_edges_are_accepted(client, headers, body):
    assert predict(client, headers, **body).status_code == 200


def test_embeddings_dimensions_other_than_the_models_are_refused(client, headers):
    response = client.post("/v1/embeddings", json={"input": "x", "dimensions": 128}, headers=headers)
    assert response.status_code == 422
    assert "384" in response.get_json()["detail"]
    assert list(response.get_json()["errors"]) == ["dimensions"]
    assert client.post("/v1/embeddings", json={"input": "x", "dimensions": 384}, headers=headers).status_code == 200


def test_unknown_model_and_version_are_404_naming_what_exists(client, headers):
    unknown = predict(client, headers, text="ok", model="gpt-9")
    assert unknown.status_code == 404
    assert unknown.get_json()["error"] == "model_not_found"
    assert "minilm, sentiment" in unknown.get_json()["detail"]
    version = predict(client, headers, text="ok", model_version="7.0")
    assert version.status_code == 404 and "1.0, 1.1, latest" in version.get_json()["detail"]
    batch = client.post("/v1/predict/batch", json={"inputs": ["ok"], "model": "nope"}, headers=headers)
    assert batch.status_code == 404


def test_wrong_task_is_422(client, headers):
    response = predict(client, headers, text="ok", model="minilm")
    assert response.status_code == 422 and response.get_json()["error"] == "unsupported_task"
    response = client.post("/v1/embeddings", json={"input": "ok", "model": "sentiment"}, headers=headers)
    assert response.status_code == 422


def test_inference_needs_credentials(client):
    assert client.post("/v1/predict", json={"text": "hi"}).status_code == 401
    assert client.get("/v1/models").status_code == 401


def test_every_request_takes_back_its_announcement_to_the_batchers(app, client, headers):
    """Inference requests announce themselves to the batchers as they start (mlapi.web.runtime.uses_models);
    whether they reach a model or end in an error, none may stay counted, or an idle runner would
    wait out its delay for a request that never comes."""
    arrivals = state_of(app).engine.arrivals
    outcomes = [
        predict(client, headers, text="Fine.").status_code,
        client.post("/v1/predict", json={"text": "hi"}).status_code,
        predict(client, headers, text="").status_code,
        predict(client, headers, text="hi", model="nope").status_code,
        client.post("/v1/embeddings", json={"input": "ok", "model": "sentiment"}, headers=headers).status_code,
        client.post("/v2/models/sentiment/infer", json={"inputs": []}, headers=headers).status_code,
    ]
    assert outcomes == [200, 401, 422, 404, 422, 400]
    assert arrivals.pending == 0


def test_models_catalog(client, headers):
    listing = client.get("/v1/models", headers=headers).get_json()
    assert listing["object"] == "list"
    by_name = {m["id"]: m for m in listing["data"]}
    assert set(by_name) == {"minilm", "sentiment"}
    sentiment = client.get("/v1/models/sentiment", headers=headers).get_json()
    assert sentiment["latest"] == "1.1"
    assert [v["version"] for v in sentiment["versions"]] == ["1.0", "1.1"]
    assert sentiment["versions"][1]["quantization"] == "dynamic-int8"
    assert all(v["device"] == "cpu" for v in sentiment["versions"])
    missing = client.get("/v1/models/unknown", headers=headers)
    assert missing.status_code == 404 and "minilm, sentiment" in missing.get_json()["detail"]


def test_health_reports_the_loaded_models(client):
    body = client.get("/health").get_json()
    assert body["models_loaded"] == ["minilm:1.0", "sentiment:1.0", "sentiment:1.1"]
    assert body["device"] == "cpu" and body["gpu_available"] is False
    assert client.get("/ready").get_json()["checks"]["models"] == {"status": "ok"}


def test_a_batch_costs_one_per_input(client, factory):
    headers = factory.key_headers(factory.user(tier="free"))
    response = client.post("/v1/predict/batch", json={"inputs": ["a", "b", "c", "d"]}, headers=headers)
    assert response.headers["X-RateLimit-Remaining"] == "6"
    response = client.post("/v1/embeddings", json={"input": ["a", "b", "c", "d", "e"]}, headers=headers)
    assert response.headers["X-RateLimit-Remaining"] == "1"
    assert client.post("/v1/predict/batch", json={"inputs": ["a", "b"]}, headers=headers).status_code == 429
    assert predict(client, headers, text="one more").status_code == 200


@pytest.mark.parametrize("body", ["[1, 2]", '"just a string"', '{"inputs": "not a list"}', "null", "{broken"])
def test_odd_bodies_still_count_against_the_quota(client, factory, body):
    headers = factory.key_headers(factory.user(tier="free"))
    response = client.post("/v1/predict/batch", data=body, content_type="application/json", headers=headers)
    assert response.status_code == (400 if body == "{broken" else 422), response.get_json()
    assert response.headers["X-RateLimit-Remaining"] == "9"


def remaining(response):
    return int(response.headers["X-RateLimit-Remaining"])


def test_labels_of_ones_own_cost_one_each_once_per_account(client, factory):
    """Embedding a new label's descriptions is work in the shared runner: the quota counts it."""
    alice = factory.key_headers(factory.user("alice", tier="pro"))
    bob = factory.key_headers(factory.user("bob", tier="pro"))
    text = {"text": "Our flight was delayed by six hours."}
    start = remaining(client.get("/v1/users/me", headers=alice))
    first = predict(client, alice, **text, labels=["travel", "cooking", "music"])
    assert first.status_code == 200 and first.get_json()["result"] == "travel"
    assert start - remaining(first) == 1 + 3
    again = predict(client, alice, **text, labels=["music", "travel", "cooking"])  # paid for, any order
    assert remaining(first) - remaining(again) == 1
    one_new = predict(client, alice, **text, labels=["travel", "sport"])
    assert remaining(again) - remaining(one_new) == 1 + 1
    own = predict(client, alice, **text, labels=["negative", "positive"])  # the model's own labels
    assert remaining(one_new) - remaining(own) == 1
    batch = client.post("/v1/predict/batch", json={"inputs": ["a", "b"], "labels": ["x-ray", "yacht"]}, headers=alice)
    assert remaining(own) - remaining(batch) == 2 + 2
    # Bob pays for the labels Alice used: the price tells no tenant what another sent.
    bob_start = remaining(client.get("/v1/users/me", headers=bob))
    bobs = predict(client, bob, **text, labels=["travel", "cooking", "music"])
    assert bob_start - remaining(bobs) == 1 + 3


def test_a_refused_request_pays_for_no_labels(client, factory):
    headers = factory.key_headers(factory.user(tier="free"))  # 10 a minute
    labels = [f"label {i}" for i in range(12)]
    refused = predict(client, headers, text="hello", labels=labels)
    assert refused.status_code == 422 and refused.get_json()["error"] == "exceeds_quota"
    assert "13 items" in refused.get_json()["detail"] and "fewer new labels" in refused.get_json()["detail"]
    invalid = predict(client, headers, text="hello", labels=["ok", "x" * 101])  # the validator refuses it
    assert invalid.status_code == 422 and remaining(invalid) == 9
    assert predict(client, headers, text="hello", labels=labels[:3]).status_code == 200


def test_the_label_prototypes_remembered_are_bounded(monkeypatch):
    from mlapi.serving import handlers
    from mlapi.serving.manifest import load_manifest
    from tests.conftest import MODEL_DIR

    monkeypatch.setattr(handlers, "MAX_CACHED_LABELS", 8)
    handler = handlers.SentenceSimilarityClassifier(
        load_manifest(MODEL_DIR / "sentiment" / "1.0" / "manifest.json"), "cpu"
    )
    handler.load()
    for i in range(5):
        handler.predict([PredictInput("hello", labels=(f"a{i}", f"b{i}"))])
    assert len(handler._prototype_by_label) == 8 and "a0" not in handler._prototype_by_label
    assert set(handler._own_prototypes) == {"negative", "positive"}  # never evicted
