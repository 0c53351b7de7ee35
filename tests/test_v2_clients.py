"""Clients nobody here wrote, against a real Gunicorn with two workers.

- ``tritonclient[http]`` (NVIDIA's client for the Open Inference Protocol) runs inference on
  ``sentiment`` and ``minilm`` through ``/v2``, with its defaults (binary tensor data both ways)
  and with JSON tensors; the outputs must equal ``/v1``'s.
- The official ``openai`` package calls ``/v1/embeddings`` with its base URL and API key pointed
  at mlapi, and must get the vectors of a direct call.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import requests

from mlapi.extensions import db
from tests.conftest import make_test_app
from tests.factories import Factory
from tests.gunicorn_server import GunicornServer

pytestmark = pytest.mark.integration

TEXTS = [
    "I love this phone, the battery lasts for days.",
    "The delivery was late and the box was crushed.",
    "Ünïcode and emoji survive the trip 👍",
]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[GunicornServer, str]]:
    workdir = tmp_path_factory.mktemp("v2-clients")
    database = f"sqlite:///{workdir / 'clients.db'}"
    app = make_test_app(database, load_models=False)
    with app.app_context():
        factory = Factory(app)
        _, key = factory.api_key(factory.user(tier="enterprise"))
    db.dispose()
    # No prediction cache: every answer below comes from the model.
    with GunicornServer(workdir / "gunicorn.log", {"MLAPI_DATABASE_URL": database, "MLAPI_CACHE_TTL_S": "0"}) as server:
        yield server, key


def v1_predictions(server: GunicornServer, key: str) -> list[dict]:
    response = requests.post(
        f"{server.url}/v1/predict/batch",
        json={"inputs": TEXTS, "model_version": "1.0"},
        headers={"X-API-Key": key},
        timeout=60,
    )
    response.raise_for_status()
    return response.json()["predictions"]


def v1_embeddings(server: GunicornServer, key: str) -> np.ndarray:
    response = requests.post(
        f"{server.url}/v1/embeddings", json={"input": TEXTS}, headers={"X-API-Key": key}, timeout=60
    )
    response.raise_for_status()
    return np.array([item["embedding"] for item in response.json()["data"]], dtype=np.float32)


@pytest.fixture(scope="module")
def triton(served):
    import tritonclient.http as httpclient

    server, _ = served
    client = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"), network_timeout=60)
    yield client
    client.close()


def text_tensor(binary: bool):
    import tritonclient.http as httpclient

    tensor = httpclient.InferInput("text", [len(TEXTS)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=np.object_), binary_data=binary)
    return tensor


def test_tritonclient_server_and_model_metadata(triton, served):
    _, key = served
    auth = {"X-API-Key": key}
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.get_server_metadata()["name"] == "mlapi"
    assert triton.is_model_ready("sentiment", headers=auth)
    assert triton.is_model_ready("minilm", "1.0", headers=auth)
    assert not triton.is_model_ready("nope", headers=auth)
    metadata = triton.get_model_metadata("minilm", headers=auth)
    assert metadata["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_sentiment_equals_v1(triton, served, binary):
    import tritonclient.http as httpclient

    server, key = served
    outputs = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in ("label", "confidence")]
    result = triton.infer(
        "sentiment",
        [text_tensor(binary)],
        model_version="1.0",
        outputs=outputs,
        headers={"X-API-Key": key},
        request_id="triton-1",
    )
    # BYTES come back as bytes from binary data, as str from JSON (the client's own choice).
    labels = [label.decode() if isinstance(label, bytes) else label for label in result.as_numpy("label")]
    confidence = result.as_numpy("confidence")
    assert confidence.dtype == np.float32 and confidence.shape == (len(TEXTS),)
    expected = v1_predictions(server, key)
    assert labels == [p["result"] for p in expected]
    assert confidence == pytest.approx([p["confidence"] for p in expected], abs=1e-6)
    assert result.get_response()["id"] == "triton-1"


def test_tritonclient_defaults_embed_like_v1(triton, served):
    server, key = served
    # No outputs named: the client asks for every output as binary data.
    result = triton.infer("minilm", [text_tensor(binary=True)], headers={"Authorization": f"Bearer {key}"})
    vectors = result.as_numpy("embedding")
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 384)
    assert np.allclose(vectors, v1_embeddings(server, key), atol=1e-5)


def test_tritonclient_sees_the_protocols_errors(triton, served):
    from tritonclient.utils import InferenceServerException

    _, key = served
    with pytest.raises(InferenceServerException) as unknown:
        triton.infer("nope", [text_tensor(binary=True)], headers={"X-API-Key": key})
    assert unknown.value.status() == "404" and "sentiment" in unknown.value.message()
    with pytest.raises(InferenceServerException) as unauthorised:
        triton.infer("sentiment", [text_tensor(binary=True)])
    assert unauthorised.value.status() == "401" and "X-API-Key" in unauthorised.value.message()


@pytest.mark.parametrize("encoding_format", [None, "float"])
def test_openai_client_embeddings_equal_a_direct_call(served, encoding_format):
    import openai

    server, key = served
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=60)
    options = {"encoding_format": encoding_format} if encoding_format else {}  # default: base64 on the wire
    response = client.embeddings.create(model="minilm", input=TEXTS, **options)
    vectors = np.array([item.embedding for item in response.data], dtype=np.float32)
    assert [item.index for item in response.data] == [0, 1, 2]
    assert response.model == "minilm" and response.usage.prompt_tokens > 0
    assert np.allclose(vectors, v1_embeddings(server, key), atol=1e-6)


def test_openai_client_gets_a_typed_authentication_error(served):
    import openai

    server, _ = served
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="mlapi_not-a-real-key", max_retries=0, timeout=60)
    with pytest.raises(openai.AuthenticationError):
        client.embeddings.create(model="minilm", input="hello")
