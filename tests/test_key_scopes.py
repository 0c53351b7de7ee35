"""What a leaked API key can do: no more than its scopes and models allow.

Each test plays the attacker holding one key. Lineage, where the database decides, is in
every_database/test_key_lineage.py.
"""

from __future__ import annotations

import pytest

from mlapi.accounts import api_keys, audit
from mlapi.extensions import db
from tests.key_requests import PREDICT, assert_403, create, key


@pytest.fixture
def alice(factory):
    return factory.user("alice", tier="enterprise")


def test_a_new_key_gets_the_default_scopes_and_every_model(client, factory, alice):
    body = create(client, factory.token_headers(alice)).get_json()
    assert (body["scopes"], body["models"], body["parent_key_id"]) == (
        ["inference", "models:read", "usage:read"],
        ["*"],
        None,
    )
    assert client.post("/v1/predict", json=PREDICT, headers=key(body)).status_code == 200
    assert client.get("/v1/models", headers=key(body)).status_code == 200
    assert client.get("/v1/usage", headers=key(body)).status_code == 200


def test_a_keys_child_gets_the_defaults_its_parent_holds(client, factory, alice):
    """A key made before usage:read joined the defaults still makes children without naming scopes."""
    parent = factory.key_headers(alice, scopes=("inference", "keys:write"), models=("sentiment",))
    child = create(client, parent).get_json()
    assert (child["scopes"], child["models"]) == (["inference"], ["sentiment"])
    only_keys = factory.key_headers(alice, scopes=("keys:write",))
    refused = assert_403(create(client, only_keys), "insufficient_scope")
    assert "none of the default scopes" in refused["detail"]


def test_a_default_key_cannot_create_keys(client, factory, alice):
    """The leak this closes: any key could mint further never-expiring keys."""
    leaked = create(client, factory.token_headers(alice)).get_json()
    refused = assert_403(create(client, key(leaked), label="persistence"), "insufficient_scope")
    assert "'keys:write'" in refused["detail"]
    assert 'scope="keys:write"' in create(client, key(leaked)).headers["WWW-Authenticate"]
    assert_403(client.get("/v1/api-keys", headers=key(leaked)), "insufficient_scope")
    assert_403(client.delete(f"/v1/api-keys/{leaked['id']}", headers=key(leaked)), "insufficient_scope")
    assert [k.id for k in api_keys.list_api_keys(db.session, alice)] == [leaked["id"]]


@pytest.mark.parametrize(
    "scopes,allowed",
    [
        (["inference"], {"predict", "batch", "embeddings", "v2_infer"}),
        (["models:read"], {"models", "model", "v2_model", "v2_ready"}),
        (["keys:write"], {"keys"}),
        (["usage:read"], set()),
    ],
)
def test_each_endpoint_needs_its_scope(client, factory, alice, scopes, allowed):
    headers = key(create(client, factory.token_headers(alice), scopes=scopes).get_json())
    v2_body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["fine"]}]}
    calls = {
        "predict": lambda: client.post("/v1/predict", json=PREDICT, headers=headers),
        "batch": lambda: client.post("/v1/predict/batch", json={"inputs": ["a", "b"]}, headers=headers),
        "embeddings": lambda: client.post("/v1/embeddings", json={"input": "a"}, headers=headers),
        "v2_infer": lambda: client.post("/v2/models/sentiment/infer", json=v2_body, headers=headers),
        "models": lambda: client.get("/v1/models", headers=headers),
        "model": lambda: client.get("/v1/models/sentiment", headers=headers),
        "v2_model": lambda: client.get("/v2/models/sentiment", headers=headers),
        "v2_ready": lambda: client.get("/v2/models/sentiment/ready", headers=headers),
        "keys": lambda: client.get("/v1/api-keys", headers=headers),
        "admin": lambda: client.get("/v1/admin/users", headers=headers),
    }
    for name, call in calls.items():
        response = call()
        if name in allowed:
            assert response.status_code == 200, (name, response.get_json())
        else:
            assert response.status_code == 403, (name, response.get_json())
            body = response.get_json()
            assert body["code" if name.startswith("v2") else "error"] == "insufficient_scope", name
    # Every credential may say whose it is.
    assert client.get("/v1/users/me", headers=headers).status_code == 200


def test_the_admin_scope_is_for_administrators_keys_only(client, factory, alice):
    assert_403(create(client, factory.token_headers(alice), scopes=["admin"]), "insufficient_scope")
    root = factory.user("root", admin=True)
    admin_key = create(client, factory.token_headers(root), scopes=["admin"]).get_json()
    assert client.get("/v1/admin/users", headers=key(admin_key)).status_code == 200
    # An admin's key without the scope is no admin credential.
    plain = create(client, factory.token_headers(root)).get_json()
    assert_403(client.get("/v1/admin/users", headers=key(plain)), "insufficient_scope")


def test_a_password_login_keeps_every_right_of_its_account(client, factory, alice):
    headers = factory.token_headers(alice)
    assert client.post("/v1/predict", json=PREDICT, headers=headers).status_code == 200
    assert client.get("/v1/api-keys", headers=headers).status_code == 200
    assert create(client, headers, scopes=["keys:write", "usage:read"], models=["minilm"]).status_code == 201


def test_a_key_limited_to_a_model_can_use_and_see_only_that_model(client, factory, alice):
    headers = key(create(client, factory.token_headers(alice), models=["minilm"]).get_json())
    assert client.post("/v1/embeddings", json={"input": "hello"}, headers=headers).status_code == 200
    refused = assert_403(client.post("/v1/predict", json=PREDICT, headers=headers), "model_not_allowed")
    assert "'sentiment'" in refused["detail"] and "minilm" in refused["detail"]
    assert_403(client.post("/v1/predict", json={**PREDICT, "model": "sentiment"}, headers=headers), "model_not_allowed")
    assert_403(client.post("/v1/predict/batch", json={"inputs": ["a"]}, headers=headers), "model_not_allowed")
    assert_403(client.get("/v1/models/sentiment", headers=headers), "model_not_allowed")
    assert client.get("/v1/models/minilm", headers=headers).status_code == 200
    assert [m["name"] for m in client.get("/v1/models", headers=headers).get_json()["data"]] == ["minilm"]

    for path in ("/v2/models/sentiment", "/v2/models/sentiment/ready", "/v2/models/sentiment/versions/1.0"):
        response = client.get(path, headers=headers)
        assert response.status_code == 403 and response.get_json()["code"] == "model_not_allowed", path
    v2_body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hello"]}]}
    assert client.post("/v2/models/sentiment/infer", json=v2_body, headers=headers).status_code == 403
    assert client.post("/v2/models/minilm/infer", json=v2_body, headers=headers).status_code == 200
    assert client.get("/v2/models/minilm", headers=headers).status_code == 200


def test_a_refused_request_costs_one_whatever_it_asked_for(client, factory):
    user = factory.user("frugal", tier="free")  # 10 a minute
    headers = key(create(client, factory.token_headers(user), models=["minilm"]).get_json())
    before = int(client.get("/v1/users/me", headers=headers).headers["X-RateLimit-Remaining"])
    refused = client.post("/v1/predict/batch", json={"inputs": ["a"] * 8}, headers=headers)
    assert refused.status_code == 403
    assert int(refused.headers["X-RateLimit-Remaining"]) == before - 1


def test_a_key_manages_only_its_own_lineage(client, factory, alice):
    session = factory.token_headers(alice)
    writer = ["inference", "models:read", "keys:write"]
    first, second = create(client, session, scopes=writer).get_json(), create(client, session, scopes=writer).get_json()
    child = create(client, key(first), scopes=["inference"]).get_json()

    listed = client.get("/v1/api-keys", headers=key(first)).get_json()["data"]
    assert [k["id"] for k in listed] == [first["id"], child["id"]]
    assert client.delete(f"/v1/api-keys/{second['id']}", headers=key(first)).status_code == 404
    assert client.post("/v1/predict", json=PREDICT, headers=key(second)).status_code == 200
    # A child cannot revoke its parent either.
    child_writer = create(client, key(first), scopes=["keys:write"]).get_json()
    assert client.delete(f"/v1/api-keys/{first['id']}", headers=key(child_writer)).status_code == 404
    assert client.delete(f"/v1/api-keys/{child['id']}", headers=key(first)).status_code == 204
    assert len(client.get("/v1/api-keys", headers=session).get_json()["data"]) == 4


def test_the_audit_log_names_the_key_that_acted(client, factory, alice):
    writer = create(client, factory.token_headers(alice), scopes=["inference", "keys:write"]).get_json()
    made = create(client, key(writer), scopes=["inference"])
    assert made.status_code == 201
    event = audit.list_events(db.session, action="key.created")[0][0]
    assert (event.actor, event.actor_key_id) == ("alice", writer["id"])
    assert event.detail["parent_key_id"] == writer["id"]
    by_password = audit.list_events(db.session, action="key.created")[0][1]
    assert (by_password.actor, by_password.actor_key_id) == ("alice", None)


@pytest.mark.parametrize(
    "body",
    [
        {"scopes": []},
        {"scopes": ["everything"]},
        {"scopes": "inference"},
        {"models": []},
        {"models": ["*", "sentiment"]},
        {"models": ["bad name!"]},
        {"models": ["m" * 65]},
        {"models": [f"m{i}" for i in range(51)]},
    ],
)
def test_bad_scopes_and_models_are_422(client, factory, alice, body):
    response = create(client, factory.token_headers(alice), **body)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["error"] == "validation_error"


def test_an_unknown_model_names_only_the_models_the_key_may_use(client, factory, alice):
    headers = key(create(client, factory.token_headers(alice), models=["minilm", "not-deployed-yet"]).get_json())
    response = client.post("/v1/embeddings", json={"input": "hi", "model": "not-deployed-yet"}, headers=headers)
    assert response.status_code == 404
    assert response.get_json()["detail"] == "no model 'not-deployed-yet'; available models: minilm"
    everything = factory.token_headers(alice)
    response = client.post("/v1/embeddings", json={"input": "hi", "model": "nope"}, headers=everything)
    assert response.get_json()["detail"] == "no model 'nope'; available models: minilm, sentiment"
