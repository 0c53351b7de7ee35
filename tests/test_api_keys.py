from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from mlapi.accounts.api_keys import LAST_USED_RESOLUTION
from mlapi.accounts.tables import ApiKey
from mlapi.extensions import db


@pytest.fixture
def alice(factory):
    return factory.user("alice")


@pytest.fixture
def headers(factory, alice):
    return factory.token_headers(alice)


def test_create_shows_the_key_once(client, headers):
    response = client.post("/v1/api-keys", json={"label": "ci", "expires_in_days": 30}, headers=headers)
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["key"].startswith("mlapi_") and len(body["key"]) >= len("mlapi_") + 43
    assert body["key"].startswith(body["prefix"])
    assert body["label"] == "ci"
    expires = datetime.fromisoformat(body["expires_at"])
    created = datetime.fromisoformat(body["created_at"])
    assert expires - created == timedelta(days=30)

    listed = client.get("/v1/api-keys", headers=headers).get_json()["data"]
    assert [k["id"] for k in listed] == [body["id"]]
    assert "key" not in listed[0] and body["key"] not in str(listed)
    assert client.get("/v1/users/me", headers={"X-API-Key": body["key"]}).status_code == 200


def test_keys_never_expire_unless_asked(client, headers):
    body = client.post("/v1/api-keys", json={"label": "forever"}, headers=headers).get_json()
    assert body["expires_at"] is None


@pytest.mark.parametrize(
    "payload",
    [{}, {"label": ""}, {"label": "x" * 101}, {"label": "ok", "expires_in_days": 0}, {"label": "ok", "extra": 1}],
)
def test_create_validation(client, headers, payload):
    response = client.post("/v1/api-keys", json=payload, headers=headers)
    assert response.status_code == 422
    assert response.get_json()["errors"]


def test_revoke_own_key(client, headers):
    key_id = client.post("/v1/api-keys", json={"label": "tmp"}, headers=headers).get_json()["id"]
    assert client.delete(f"/v1/api-keys/{key_id}", headers=headers).status_code == 204
    listed = client.get("/v1/api-keys", headers=headers).get_json()["data"]
    assert listed[0]["revoked_at"] is not None
    assert client.delete(f"/v1/api-keys/{key_id}", headers=headers).status_code == 204


def test_cannot_revoke_another_users_key(client, factory, headers):
    other_key, other_secret = factory.api_key(factory.user("bob"))
    response = client.delete(f"/v1/api-keys/{other_key.id}", headers=headers)
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"
    assert client.get("/v1/users/me", headers={"X-API-Key": other_secret}).status_code == 200
    assert client.delete("/v1/api-keys/999999", headers=headers).status_code == 404


def test_last_used_is_written_at_most_once_a_minute(client, factory, alice):
    record, key = factory.api_key(alice)
    client.get("/v1/users/me", headers={"X-API-Key": key})
    db.session.expire_all()
    first = db.session.get(ApiKey, record.id).last_used_at
    assert first is not None
    client.get("/v1/users/me", headers={"X-API-Key": key})
    db.session.expire_all()
    assert db.session.get(ApiKey, record.id).last_used_at == first

    long_ago = datetime.now(UTC) - LAST_USED_RESOLUTION - timedelta(seconds=1)
    db.session.execute(update(ApiKey).where(ApiKey.id == record.id).values(last_used_at=long_ago))
    db.session.commit()
    client.get("/v1/users/me", headers={"X-API-Key": key})
    db.session.expire_all()
    assert db.session.get(ApiKey, record.id).last_used_at > first


@pytest.mark.parametrize("key_id", ["99999999999999999999", "2147483648"])
def test_out_of_range_ids_are_404(client, headers, key_id):
    response = client.delete(f"/v1/api-keys/{key_id}", headers=headers)
    assert response.status_code == 404 and response.get_json()["error"] == "not_found"
