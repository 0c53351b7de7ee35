"""Every error status answers in the one JSON envelope."""

import logging

import marshmallow as ma
import pytest
from flask import Flask

from mlapi.extensions import api
from mlapi.web.errors import APIError
from mlapi.web.openapi import Blueprint

ENVELOPE_KEYS = {"error", "detail", "status_code", "request_id", "timestamp"}


class ProbeEchoSchema(ma.Schema):
    text = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=10))


class ProbeFormSchema(ma.Schema):
    username = ma.fields.String(required=True)


@pytest.fixture
def app(app: Flask) -> Flask:
    """The app plus a probe blueprint whose views fail in each way a real endpoint can."""
    probe = Blueprint("probe", __name__, url_prefix="/probe")

    @probe.route("/echo", methods=["POST"])
    @probe.arguments(ProbeEchoSchema)
    def echo(body):
        return body

    @probe.route("/form", methods=["POST"])
    @probe.arguments(ProbeFormSchema, location="form")
    def form(body):
        return body

    @probe.route("/status/<int:code>", methods=["GET"])
    def status(code):
        raise APIError(code, f"probe {code}", headers={"Retry-After": "7"} if code in (429, 503) else None)

    @probe.route("/crash", methods=["GET"])
    def crash():
        raise RuntimeError("secret internal detail")

    api.register_blueprint(probe)
    return app


def assert_envelope(response, status_code):
    assert response.status_code == status_code
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert ENVELOPE_KEYS <= body.keys()
    assert body["status_code"] == status_code
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert body["timestamp"].endswith("Z")
    return body


def test_malformed_json_is_400(client):
    response = client.post("/probe/echo", data="{not json", content_type="application/json")
    body = assert_envelope(response, 400)
    assert body["error"] == "bad_request"
    assert "JSON" in body["detail"]


@pytest.mark.parametrize("code", [401, 403, 429, 503])
def test_raised_api_errors_use_the_envelope(client, code):
    response = client.get(f"/probe/status/{code}")
    body = assert_envelope(response, code)
    assert body["detail"] == f"probe {code}"
    if code in (429, 503):
        assert response.headers["Retry-After"] == "7"


def test_unknown_path_is_404(client):
    body = assert_envelope(client.get("/no/such/path"), 404)
    assert body["error"] == "not_found"


def test_wrong_method_is_405_with_allow_header(client):
    response = client.delete("/health")
    assert_envelope(response, 405)
    assert "GET" in response.headers["Allow"]


def test_body_over_the_limit_is_413_even_where_the_body_is_not_read(client):
    big = b"x" * (1024 * 1024 + 1)
    assert_envelope(client.post("/probe/echo", data=big, content_type="application/json"), 413)
    assert_envelope(client.get("/probe/status/401", data=big, content_type="text/plain"), 413)


def test_body_within_the_limit_is_accepted(client):
    response = client.post("/probe/echo", json={"text": "hello"})
    assert response.status_code == 200
    assert response.get_json() == {"text": "hello"}


def test_json_endpoint_answers_415_to_other_content_types(client):
    body = assert_envelope(client.post("/probe/echo", data="text=hello", content_type="text/plain"), 415)
    assert "application/json" in body["detail"]
    assert_envelope(client.post("/probe/echo", data={"text": "hello"}), 415)


def test_form_endpoint_answers_415_to_json(client):
    assert_envelope(client.post("/probe/form", json={"username": "x"}), 415)
    assert client.post("/probe/form", data={"username": "x"}).status_code == 200


def test_validation_errors_are_422_with_errors_per_field(client):
    response = client.post("/probe/echo", json={"text": "", "surprise": 1})
    body = assert_envelope(response, 422)
    assert body["error"] == "validation_error"
    assert set(body["errors"]) == {"text", "surprise"}


def test_missing_required_field_is_422(client):
    body = assert_envelope(client.post("/probe/echo", json={}), 422)
    assert "text" in body["errors"]


def test_wrong_json_type_is_422(client):
    body = assert_envelope(client.post("/probe/echo", json=["a", "list"]), 422)
    assert body["errors"]


def test_unexpected_exception_is_500_without_leaking_and_is_logged(client, caplog):
    with caplog.at_level(logging.ERROR, logger="mlapi.web.errors"):
        caplog.handler.setLevel(logging.ERROR)
        logging.getLogger("mlapi").addHandler(caplog.handler)
        try:
            response = client.get("/probe/crash")
        finally:
            logging.getLogger("mlapi").removeHandler(caplog.handler)
    body = assert_envelope(response, 500)
    assert "secret internal detail" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert body["error"] == "internal_server_error"
    record = next(r for r in caplog.records if r.name == "mlapi.web.errors")
    assert record.exc_info is not None
    assert "secret internal detail" in str(record.exc_info[1])
