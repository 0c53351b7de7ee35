"""Requests that the key scope and lineage tests share."""

from __future__ import annotations

PREDICT = {"text": "The support team fixed it in minutes."}


def key(body: dict) -> dict[str, str]:
    """Headers that present the key of a ``POST /v1/api-keys`` answer."""
    return {"X-API-Key": body["key"]}


def create(client, headers, **body):
    return client.post("/v1/api-keys", json={"label": "k", **body}, headers=headers)


def assert_403(response, error: str) -> dict:
    assert response.status_code == 403, response.get_json()
    body = response.get_json()
    assert body["error"] == error and body["status_code"] == 403
    return body
