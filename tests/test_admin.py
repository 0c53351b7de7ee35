import pytest


@pytest.fixture
def admin_headers(factory):
    return factory.key_headers(factory.user("root", admin=True), scopes=("admin",))


def test_list_users_is_paginated(client, factory, admin_headers):
    for _ in range(4):
        factory.user()
    response = client.get("/v1/admin/users?page=2&page_size=2", headers=admin_headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body["pagination"] == {"page": 2, "page_size": 2, "total": 5, "pages": 3}
    assert len(body["data"]) == 2
    assert "password_hash" not in body["data"][0]
    assert client.get("/v1/admin/users?page_size=101", headers=admin_headers).status_code == 422
    assert client.get("/v1/admin/users?page=0", headers=admin_headers).status_code == 422


def test_create_user(client, admin_headers):
    payload = {"username": "newbie", "password": "long enough pw", "tier": "pro", "email": "n@example.com"}
    response = client.post("/v1/admin/users", json=payload, headers=admin_headers)
    assert response.status_code == 201
    body = response.get_json()
    assert (body["username"], body["tier"], body["is_admin"]) == ("newbie", "pro", False)
    assert "password" not in body
    login = client.post("/v1/token", data={"username": "newbie", "password": "long enough pw"})
    assert login.status_code == 200


def test_duplicate_username_is_409(client, factory, admin_headers):
    factory.user("taken")
    response = client.post(
        "/v1/admin/users", json={"username": "taken", "password": "long enough pw"}, headers=admin_headers
    )
    assert response.status_code == 409
    assert "taken" in response.get_json()["detail"]


@pytest.mark.parametrize(
    "payload",
    [
        {"username": "ok_name", "password": "short"},
        {"username": "bad name!", "password": "long enough pw"},
        {"username": "ok_name", "password": "long enough pw", "tier": "gold"},
        {"username": "ok_name", "password": "long enough pw", "email": "not-an-email"},
    ],
)
def test_create_user_validation(client, admin_headers, payload):
    response = client.post("/v1/admin/users", json=payload, headers=admin_headers)
    assert response.status_code == 422
    assert response.get_json()["errors"]


def test_patch_user(client, factory, admin_headers):
    user = factory.user("pat")
    member_headers = factory.token_headers(user)  # a password login: promotion gives it the admin endpoints
    response = client.patch("/v1/admin/users/pat", json={"tier": "enterprise", "is_admin": True}, headers=admin_headers)
    assert response.status_code == 200
    assert (response.get_json()["tier"], response.get_json()["is_admin"]) == ("enterprise", True)
    assert client.get("/v1/admin/users", headers=member_headers).status_code == 200
    client.patch("/v1/admin/users/pat", json={"disabled": True}, headers=admin_headers)
    assert client.get("/v1/users/me", headers=member_headers).status_code == 401


def test_patch_errors(client, admin_headers):
    assert client.patch("/v1/admin/users/ghost", json={"tier": "pro"}, headers=admin_headers).status_code == 404
    assert client.patch("/v1/admin/users/root", json={"tier": "gold"}, headers=admin_headers).status_code == 422


def test_revoke_a_users_key(client, factory, admin_headers):
    user = factory.user("kate")
    record, key = factory.api_key(user)
    assert client.delete(f"/v1/admin/users/kate/api-keys/{record.id}", headers=admin_headers).status_code == 204
    assert client.get("/v1/users/me", headers={"X-API-Key": key}).status_code == 401
    assert client.delete(f"/v1/admin/users/root/api-keys/{record.id}", headers=admin_headers).status_code == 404
    assert client.delete(f"/v1/admin/users/ghost/api-keys/{record.id}", headers=admin_headers).status_code == 404
