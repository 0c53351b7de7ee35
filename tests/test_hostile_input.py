"""Numbers and sizes a client sends are bounded before use; malformed ones are a 4xx, never a 500.

Each case was once a freeze or a 500: a /v2 shape of 80,000 large integers (math.prod held the
GIL for seconds, three times per request), a JSON integer past Python's 4,300-digit limit
(a ValueError webargs did not take for bad JSON), float() of a 400-digit parameter (an
OverflowError), and "²" in Inference-Header-Content-Length (str.isdigit takes it, int does not).
"""

from __future__ import annotations

import json
import time

import pytest

from mlapi.api.v2 import codec

LONG_INTEGER = "9" * 5000  # past Python's int-string limit of 4,300 digits


@pytest.fixture
def headers(factory):
    return factory.key_headers(factory.user(tier="free"), scopes=("inference", "models:read", "keys:write"))


def huge_shape_body() -> bytes:
    """Just under 1 MiB: a shape of tens of thousands of large integers."""
    dimension = "9" * 40
    count = (1024 * 1024 - 200) // (len(dimension) + 1)
    return (
        '{"inputs": [{"name": "text", "datatype": "BYTES", "shape": ['
        + ",".join([dimension] * count)
        + '], "data": ["x"]}]}'
    ).encode()


def test_the_shape_check_bounds_before_any_arithmetic():
    shape = json.loads(huge_shape_body())["inputs"][0]["shape"]
    started = time.perf_counter()
    with pytest.raises(codec.ProtocolError, match=r"\[n\] or \[n, 1\]"):
        codec.text_count(shape, 100)
    assert time.perf_counter() - started < 0.1  # math.prod over it took seconds
    assert codec.RawRequest({"inputs": [{"shape": shape}]}, b"").declared_texts(100) is None
    with pytest.raises(codec.ProtocolError, match="1 to 100 texts; got far more"):
        codec.text_count([10**4000], 100)
    assert codec.text_count([7, 1], 100) == 7


def test_a_huge_shape_is_a_400_costing_one_request(client, headers):
    before = int(client.get("/v1/users/me", headers=headers).headers["X-RateLimit-Remaining"])
    response = client.post(
        "/v2/models/sentiment/infer", data=huge_shape_body(), headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 400 and "[n] or [n, 1]" in response.get_json()["error"]
    assert len(response.data) < 1000  # the message does not echo the shape
    after = int(client.get("/v1/users/me", headers=headers).headers["X-RateLimit-Remaining"])
    assert before - after == 2  # the refused request and this look


@pytest.mark.parametrize(
    "path,body",
    [
        ("/v1/predict", '{"text": "hi", "temperature": %s}'),
        ("/v1/predict/batch", '{"inputs": ["hi"], "n": %s}'),
        ("/v1/embeddings", '{"input": "hi", "dimensions": %s}'),
        ("/v1/api-keys", '{"label": "x", "expires_in_days": %s}'),
        ("/v2/models/sentiment/infer", '{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [%s]}]}'),
    ],
)
def test_an_integer_past_pythons_digit_limit_is_a_400(client, headers, path, body):
    response = client.post(path, data=body % LONG_INTEGER, headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 400, response.get_json()


def test_a_v2_parameter_too_large_for_a_float_is_a_400(client, headers):
    body = {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hi"]}],
        "parameters": {"max_tokens": 10**400, "temperature": -(10**400)},
    }
    response = client.post("/v2/models/sentiment/infer", json=body, headers=headers)
    assert response.status_code == 400 and "must be a" in response.get_json()["error"]


@pytest.mark.parametrize("value", ["²", "١٢", "1" * 5000, "+5", " 5"])
def test_a_header_length_that_is_not_a_plain_number_is_a_400(client, headers, value):
    response = client.post(
        "/v2/models/sentiment/infer", data=b"{}", headers={**headers, "Inference-Header-Content-Length": value}
    )
    assert response.status_code == 400, response.get_json()
    assert "Inference-Header-Content-Length" in response.get_json()["error"]
