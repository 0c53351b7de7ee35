"""/v2: the Open Inference Protocol (KServe V2) over the app, with real weights.

The binary tensor data extension is exercised here byte by byte; tests/test_v2_clients.py runs
the real tritonclient against a real Gunicorn.
"""

import json
import struct

import numpy as np
import pytest

from mlapi.api.v2 import codec

TEXTS = ["I love this phone, the battery lasts for days.", "The delivery was late and the box was crushed."]


@pytest.fixture
def app(uncached_app):
    """Without the prediction cache: these tests compare fresh model outputs with v1's."""
    return uncached_app


@pytest.fixture
def headers(factory):
    return factory.key_headers(factory.user(tier="enterprise"))


def text_input(texts, shape=None):
    return {"name": "text", "datatype": "BYTES", "shape": shape or [len(texts)], "data": texts}


def infer(client, headers, model, body, version=None):
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    return client.post(path, data=json.dumps(body), headers={**headers, "Content-Type": "application/json"})


def binary_body(texts, outputs=None, parameters=None):
    blob = b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in texts)
    header = {
        "inputs": [
            {"name": "text", "datatype": "BYTES", "shape": [len(texts)], "parameters": {"binary_data_size": len(blob)}}
        ],
        **({"outputs": outputs} if outputs else {}),
        **({"parameters": parameters} if parameters else {}),
    }
    encoded = json.dumps(header).encode()
    return encoded + blob, len(encoded)


def test_server_metadata_and_health_need_no_credentials(client):
    assert client.get("/v2").get_json() == {
        "name": "mlapi",
        "version": client.get("/health").get_json()["version"],
        "extensions": ["binary_tensor_data"],
    }
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert client.get("/v2/health/ready").get_json() == {"ready": True}


def test_model_metadata(client, headers):
    sentiment = client.get("/v2/models/sentiment", headers=headers).get_json()
    assert sentiment == {
        "name": "sentiment",
        "versions": ["1.0", "1.1"],
        "platform": "pytorch",
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "confidence", "datatype": "FP32", "shape": [-1]},
        ],
    }
    minilm = client.get("/v2/models/minilm/versions/1.0", headers=headers).get_json()
    assert minilm["versions"] == ["1.0"]
    assert minilm["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}]


def test_model_ready(client, headers):
    assert client.get("/v2/models/sentiment/ready", headers=headers).get_json() == {
        "name": "sentiment",
        "version": "1.1",
        "ready": True,
    }
    assert client.get("/v2/models/sentiment/versions/1.0/ready", headers=headers).get_json()["version"] == "1.0"


def test_sentiment_infer_matches_v1(client, headers):
    response = infer(client, headers, "sentiment", {"id": "req-1", "inputs": [text_input(TEXTS)]}, version="1.0")
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("sentiment", "1.0", "req-1")
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["label"]["datatype"] == "BYTES" and outputs["label"]["shape"] == [2]
    assert outputs["confidence"]["datatype"] == "FP32" and outputs["confidence"]["shape"] == [2]
    v1 = client.post("/v1/predict/batch", json={"inputs": TEXTS, "model_version": "1.0"}, headers=headers).get_json()
    assert outputs["label"]["data"] == [p["result"] for p in v1["predictions"]] == ["positive", "negative"]
    assert outputs["confidence"]["data"] == pytest.approx([p["confidence"] for p in v1["predictions"]], abs=1e-6)


def test_embedding_infer_is_an_fp32_n_by_384_tensor_equal_to_v1(client, headers):
    body = infer(client, headers, "minilm", {"inputs": [text_input(TEXTS, shape=[2, 1])]}).get_json()
    (output,) = body["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("embedding", "FP32", [2, 384])
    v1 = client.post("/v1/embeddings", json={"input": TEXTS}, headers=headers).get_json()
    expected = np.array([d["embedding"] for d in v1["data"]])
    assert np.allclose(np.array(output["data"]).reshape(2, 384), expected, atol=1e-6)


def test_binary_tensor_data_both_ways(client, headers):
    body, header_length = binary_body(TEXTS, parameters={"binary_data_output": True})
    response = client.post(
        "/v2/models/minilm/infer", data=body, headers={**headers, "Inference-Header-Content-Length": str(header_length)}
    )
    assert response.status_code == 200 and response.mimetype == "application/octet-stream"
    length = int(response.headers["Inference-Header-Content-Length"])
    header = json.loads(response.data[:length])
    (output,) = header["outputs"]
    assert output["parameters"] == {"binary_data_size": 2 * 384 * 4} and "data" not in output
    vectors = np.frombuffer(response.data[length:], dtype="<f4").reshape(2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_requested_outputs_choose_what_comes_back_and_how(client, headers):
    body, header_length = binary_body(TEXTS, outputs=[{"name": "label", "parameters": {"binary_data": True}}])
    response = client.post(
        "/v2/models/sentiment/infer",
        data=body,
        headers={**headers, "Inference-Header-Content-Length": str(header_length)},
    )
    length = int(response.headers["Inference-Header-Content-Length"])
    (output,) = json.loads(response.data[:length])["outputs"]
    assert output["name"] == "label"
    labels, blob, offset = [], response.data[length:], 0
    while offset < len(blob):
        (size,) = struct.unpack_from("<I", blob, offset)
        labels.append(blob[offset + 4 : offset + 4 + size].decode())
        offset += 4 + size
    assert labels == ["positive", "negative"]


def test_parameters_carry_v1s_options(client, headers):
    sharp = infer(
        client, headers, "sentiment", {"inputs": [text_input(TEXTS[:1])], "parameters": {"temperature": 0.01}}
    ).get_json()
    soft = infer(
        client, headers, "sentiment", {"inputs": [text_input(TEXTS[:1])], "parameters": {"temperature": 2}}
    ).get_json()
    confidence = {b["outputs"][1]["data"][0] for b in (sharp, soft)}
    assert len(confidence) == 2 and max(confidence) > 0.99


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inputs": []}, "exactly one tensor"),
        ({"inputs": [{**text_input(["a"]), "name": "other"}]}, "unknown input 'other'"),
        ({"inputs": [{**text_input(["a"]), "datatype": "FP32"}]}, "datatype BYTES"),
        ({"inputs": [text_input(["a", "b"], shape=[3])]}, "has 2 elements"),
        ({"inputs": [text_input(["a", "b"], shape=[1, 2])]}, "shape [n] or [n, 1]"),
        ({"inputs": [text_input(["a"], shape=[-1])]}, "1 to 100 texts"),
        ({"inputs": [text_input(["x"] * 101)]}, "1 to 100 texts"),
        ({"inputs": [text_input(["   "])]}, "Must not be blank"),
        ({"inputs": [text_input(["x" * 5001])]}, "element 0"),
        ({"inputs": [{**text_input(["a"]), "data": [1]}]}, "must be a string"),
        ({"inputs": [text_input(["\ud800"])]}, "unpaired UTF-16 surrogate"),
        ({"inputs": [text_input(["a\x00b"])]}, "NUL character"),
        ({"inputs": [text_input(["a"])], "outputs": [{"name": "embedding"}]}, "unknown output 'embedding'"),
        ({"inputs": [text_input(["a"])], "parameters": {"temperature": 3}}, "'temperature' must be"),
        ({"inputs": [text_input(["a"])], "parameters": {"max_tokens": 1.5}}, "'max_tokens' must be"),
        ({"inputs": [text_input(["a"])], "id": 7}, "'id' must be a string"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_requests_get_400_in_the_protocols_error_form(client, headers, body, message):
    response = infer(client, headers, "sentiment", body)
    assert response.status_code == 400
    error = response.get_json()
    assert message in error["error"]  # the protocol's clients show this field
    assert error["code"] == "invalid_request" and error["request_id"] == response.headers["X-Request-ID"]


def test_malformed_bodies_and_headers(client, headers):
    assert client.post("/v2/models/sentiment/infer", data=b"\xff{", headers=headers).status_code == 400
    assert (
        client.post(
            "/v2/models/sentiment/infer", data=b"{}", headers={**headers, "Inference-Header-Content-Length": "abc"}
        ).status_code
        == 400
    )
    assert (
        client.post(
            "/v2/models/sentiment/infer", data=b"{}", headers={**headers, "Inference-Header-Content-Length": "99"}
        ).status_code
        == 400
    )
    body, header_length = binary_body(["ok"])
    truncated = client.post(
        "/v2/models/sentiment/infer",
        data=body[:-1],
        headers={**headers, "Inference-Header-Content-Length": str(header_length)},
    )
    assert truncated.status_code == 400 and "binary_data_size" in truncated.get_json()["error"]
    wrong_type = client.post("/v2/models/sentiment/infer", data="{}", headers={**headers, "Content-Type": "text/plain"})
    assert wrong_type.status_code == 415 and wrong_type.get_json()["code"] == "unsupported_media_type"
    nested = "[" * 100_000 + "]" * 100_000
    deep = client.post(
        "/v2/models/sentiment/infer", data=nested, headers={**headers, "Content-Type": "application/json"}
    )
    assert deep.status_code == 400


def test_unknown_model_or_version_is_404(client, headers):
    for path in ("/v2/models/nope", "/v2/models/sentiment/versions/9.9", "/v2/models/nope/ready"):
        response = client.get(path, headers=headers)
        assert response.status_code == 404, path
        assert response.get_json()["code"] == "model_not_found"
        assert "sentiment" in response.get_json()["error"]
    assert infer(client, headers, "nope", {"inputs": [text_input(["a"])]}).status_code == 404


def test_same_authentication_as_v1(client):
    response = infer(client, {}, "sentiment", {"inputs": [text_input(["a"])]})
    assert response.status_code == 401
    assert response.get_json()["code"] == "missing_credentials"
    assert "WWW-Authenticate" in response.headers
    assert client.get("/v2/models/sentiment", headers={"X-API-Key": "mlapi_wrong"}).status_code == 401


def test_a_request_costs_one_per_text(client, factory):
    headers = factory.key_headers(factory.user(tier="free"))  # 10 a minute
    first = infer(client, headers, "sentiment", {"inputs": [text_input(["good"] * 6)]})
    assert first.headers["X-RateLimit-Remaining"] == "4"
    second = infer(client, headers, "sentiment", {"inputs": [text_input(["good"] * 6)]})
    assert second.status_code == 429 and second.get_json()["code"] == "rate_limit_exceeded"
    too_big = infer(client, headers, "sentiment", {"inputs": [text_input(["good"] * 11)]})
    assert too_big.status_code == 422


def test_v1_errors_keep_the_envelope(client):
    body = client.get("/v1/nope").get_json()
    assert body["error"] == "not_found" and "code" not in body


def test_the_codec_rejects_truncated_length_prefixes():
    signature = codec.signature(frozenset({"predict"}), None)
    header = json.dumps(
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 3}}]}
    ).encode()
    with pytest.raises(codec.ProtocolError, match="truncated"):
        codec.decode_request(
            codec.read_body(header + b"\x05\x00\x00", len(header)), signature, max_items=100, validate_text=len
        )


def test_v2_is_in_the_openapi_document(client):
    paths = client.get("/v1/openapi.json").get_json()["paths"]
    assert {
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{name}",
        "/v2/models/{name}/versions/{version}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
    } <= set(paths)


def test_server_ready_is_503_in_the_protocols_form_when_a_dependency_fails(app, client):
    from mlapi.web import readiness

    def broken() -> None:
        raise ConnectionError("down")

    readiness.register_check(app, "database", broken)
    response = client.get("/v2/health/ready")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    body = response.get_json()
    assert body["ready"] is False and body["code"] == "not_ready"
    assert body["error"] == "Not ready: database unavailable."
    assert body["checks"]["database"] == {"status": "fail", "detail": "ConnectionError"}
    assert client.get("/v2/health/live").status_code == 200
