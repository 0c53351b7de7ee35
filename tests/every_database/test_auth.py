"""Tokens, keys and the one authentication path, on SQLite and on PostgreSQL."""

import base64
import json
import warnings
from datetime import timedelta

import jwt as pyjwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning
from sqlalchemy import update

from mlapi.accounts import user_accounts
from mlapi.accounts.tables import ApiKey, User, utcnow
from mlapi.extensions import db
from tests.factories import PASSWORD


def login(client, username, password=PASSWORD):
    return client.post("/v1/token", data={"username": username, "password": password})


def assert_401(response, reason):
    assert response.status_code == 401, response.get_json()
    body = response.get_json()
    assert body["error"] == reason
    assert body["status_code"] == 401 and body["request_id"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    return body


def test_login_returns_access_and_refresh_tokens(client, factory):
    factory.user("alice", tier="pro")
    response = login(client, "alice")
    assert response.status_code == 200
    body = response.get_json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 30 * 60
    assert response.headers["Cache-Control"] == "no-store"
    claims = pyjwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["tier"] == "pro" and claims["type"] == "access"
    assert isinstance(claims["sub"], str) and {"exp", "iat", "jti"} <= claims.keys()
    me = client.get("/v1/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.get_json()["username"] == "alice"


def test_login_accepts_the_full_oauth2_password_form(client, factory):
    factory.user("olga")
    form = {"grant_type": "password", "username": "olga", "password": PASSWORD, "scope": "", "client_id": "x"}
    assert client.post("/v1/token", data=form).status_code == 200


@pytest.mark.parametrize("username,password", [("alice", "wrong password"), ("nobody", PASSWORD)])
def test_login_failures_look_the_same(client, factory, username, password):
    factory.user("alice")
    body = assert_401(login(client, username, password), "invalid_credentials")
    assert body["detail"] == "Incorrect username or password."


def test_login_of_a_disabled_user_is_refused(client, factory):
    factory.user("dora")
    user_accounts.update_user(db.session, "dora", disabled=True)
    assert_401(login(client, "dora"), "disabled_user")


def test_login_validation(client):
    assert client.post("/v1/token", data={"username": "x"}).status_code == 422
    assert client.post("/v1/token", json={"username": "x", "password": "y"}).status_code == 415


def test_missing_credentials(client):
    assert_401(client.get("/v1/users/me"), "missing_credentials")
    assert_401(client.get("/v1/users/me", headers={"Authorization": "Basic abc"}), "missing_credentials")


def test_a_missing_or_unknown_credential_says_how_to_get_one(client):
    for response in (
        client.get("/v1/users/me"),
        client.get("/v1/users/me", headers={"X-API-Key": "mlapi_" + "x" * 43}),
    ):
        detail = response.get_json()["detail"]
        assert response.status_code == 401
        assert "POST /v1/token" in detail and "POST /v1/api-keys" in detail and "mlapi keys create" in detail


@pytest.mark.parametrize("placeholder", ["null", "undefined", "None"])
def test_a_placeholder_bearer_token_is_reported_missing_not_malformed(client, placeholder):
    """`TOKEN=$(curl ... | jq -r .access_token)` after a failed login sends 'Bearer null'."""
    for response in (
        client.get("/v1/users/me", headers={"Authorization": f"Bearer {placeholder}"}),
        client.post("/v1/token/refresh", headers={"Authorization": f"Bearer {placeholder}"}),
    ):
        body = assert_401(response, "missing_credentials")
        assert "missing" in body["detail"] and repr(placeholder) in body["detail"]
        assert "POST /v1/token" in body["detail"]


def test_api_key_in_either_header(client, factory):
    user = factory.user("kim")
    _, key = factory.api_key(user)
    for headers in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}):
        response = client.get("/v1/users/me", headers=headers)
        assert response.status_code == 200
        assert response.get_json()["username"] == "kim"


def test_api_key_in_the_query_string_is_not_accepted(client, factory):
    _, key = factory.api_key(factory.user())
    assert_401(client.get(f"/v1/users/me?api_key={key}"), "missing_credentials")
    assert_401(client.get(f"/v1/users/me?X-API-Key={key}"), "missing_credentials")


def test_unknown_revoked_and_expired_keys_are_refused(client, factory):
    user = factory.user()
    assert_401(client.get("/v1/users/me", headers={"X-API-Key": "mlapi_" + "x" * 43}), "unknown_key")
    revoked, revoked_key = factory.api_key(user, scopes=("keys:write",))
    client.delete(f"/v1/api-keys/{revoked.id}", headers={"X-API-Key": revoked_key})
    assert_401(client.get("/v1/users/me", headers={"X-API-Key": revoked_key}), "revoked_key")
    expired, expired_key = factory.api_key(user, expires_in_days=1)
    db.session.execute(update(ApiKey).where(ApiKey.id == expired.id).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    assert_401(client.get("/v1/users/me", headers={"X-API-Key": expired_key}), "expired_key")


def test_disabled_user_is_refused_with_key_and_token(client, factory):
    user = factory.user("dan")
    key_headers, token_headers = factory.key_headers(user), factory.token_headers(user)
    assert client.get("/v1/users/me", headers=key_headers).status_code == 200
    user_accounts.update_user(db.session, "dan", disabled=True)
    assert_401(client.get("/v1/users/me", headers=key_headers), "disabled_user")
    assert_401(client.get("/v1/users/me", headers=token_headers), "disabled_user")
    user_accounts.update_user(db.session, "dan", disabled=False)
    assert client.get("/v1/users/me", headers=key_headers).status_code == 200


def test_refresh_issues_a_working_access_token_and_the_next_refresh_token(client, factory):
    factory.user("rita")
    tokens = login(client, "rita").get_json()
    response = client.post("/v1/token/refresh", headers={"Authorization": f"Bearer {tokens['refresh_token']}"})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["refresh_token"] != tokens["refresh_token"]
    assert client.get("/v1/users/me", headers={"Authorization": f"Bearer {body['access_token']}"}).status_code == 200
    again = client.post("/v1/token/refresh", headers={"Authorization": f"Bearer {body['refresh_token']}"})
    assert again.status_code == 200


def test_token_types_are_not_interchangeable(client, factory):
    user = factory.user()
    refresh, access = factory.refresh_token(user), factory.access_token(user)
    assert_401(client.get("/v1/users/me", headers=factory.bearer(refresh)), "wrong_token_type")
    assert_401(client.post("/v1/token/refresh", headers=factory.bearer(access)), "wrong_token_type")


@pytest.mark.parametrize("kind", ["access", "refresh"])
def test_revoked_tokens_are_refused(client, factory, kind):
    user = factory.user()
    token = factory.access_token(user) if kind == "access" else factory.refresh_token(user)
    assert client.post("/v1/token/revoke", headers=factory.bearer(token)).status_code == 204
    probe = (
        client.get("/v1/users/me", headers=factory.bearer(token))
        if kind == "access"
        else client.post("/v1/token/refresh", headers=factory.bearer(token))
    )
    assert_401(probe, "revoked_token")
    assert_401(client.post("/v1/token/revoke", headers=factory.bearer(token)), "revoked_token")


def test_expired_token_is_refused(client, factory):
    token = factory.access_token(factory.user(), expires_delta=timedelta(seconds=-5))
    assert_401(client.get("/v1/users/me", headers=factory.bearer(token)), "expired_token")


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def hs512(claims: dict, secret: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)  # this forgery needs no strong key
        return pyjwt.encode(claims, secret, algorithm="HS512")


def test_forged_tokens_are_refused(app, client, factory):
    user = factory.user()
    good = factory.access_token(user)
    header, payload, signature = good.split(".")
    claims = pyjwt.decode(good, options={"verify_signature": False})
    secret = app.config["JWT_SECRET_KEY"]
    forged = {
        "tampered payload": f"{header}.{_b64({**claims, 'tier': 'enterprise', 'sub': '999'})}.{signature}",
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "wrong key": pyjwt.encode(claims, "another secret of at least thirty-two bytes", algorithm="HS256"),
        "other algorithm": hs512(claims, secret),
        "garbage": "not.a.jwt",
    }
    for name, token in forged.items():
        response = client.get("/v1/users/me", headers=factory.bearer(token))
        assert response.status_code == 401, name
        assert response.get_json()["error"] == "invalid_token", name


def test_token_of_a_deleted_user_is_refused(client, factory):
    user = factory.user()
    headers = factory.token_headers(user)
    db.session.delete(db.session.get(User, user.id))
    db.session.commit()
    assert_401(client.get("/v1/users/me", headers=headers), "unknown_user")


def test_tier_change_applies_on_the_next_request(client, factory):
    user = factory.user("tess", tier="free")
    headers = factory.token_headers(user)
    assert client.get("/v1/users/me", headers=headers).get_json()["tier"] == "free"
    user_accounts.update_user(db.session, "tess", tier="enterprise")
    assert client.get("/v1/users/me", headers=headers).get_json()["tier"] == "enterprise"


def test_secrets_never_reach_the_database_in_plain_text(client, factory):
    user = factory.user("sam")
    key = client.post("/v1/api-keys", json={"label": "k"}, headers=factory.token_headers(user)).get_json()["key"]
    with db.engine.connect() as connection:
        dump = " ".join(
            str(row) for table in ("users", "api_keys") for row in connection.exec_driver_sql(f"SELECT * FROM {table}")
        )
    assert PASSWORD not in dump
    assert key not in dump and key[len("mlapi_") :] not in dump
    assert "$argon2id$" in dump


def test_admin_endpoints_need_the_admin_role(client, factory):
    member = factory.user()
    assert client.get("/v1/admin/users", headers=factory.token_headers(member)).status_code == 403
    admin = factory.user(admin=True)
    assert client.get("/v1/admin/users", headers=factory.token_headers(admin)).status_code == 200
    assert client.get("/v1/admin/users", headers=factory.key_headers(admin, scopes=("admin",))).status_code == 200
    assert_401(client.get("/v1/admin/users"), "missing_credentials")
