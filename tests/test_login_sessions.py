"""Tokens a leak cannot outlive: refresh rotation with reuse detection, password change, disable.

Through the real endpoints and the real `mlapi` command; the rotation race on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import jwt as pyjwt
import pytest

from mlapi.accounts import audit, sessions, user_accounts
from mlapi.accounts.audit import Actor
from mlapi.accounts.tables import LoginSession
from mlapi.extensions import db
from tests.factories import PASSWORD

NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def rita(factory):
    return factory.user("rita", tier="enterprise")


def login(client, username="rita", password=PASSWORD) -> dict:
    response = client.post("/v1/token", data={"username": username, "password": password})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def refresh(client, token: str):
    return client.post("/v1/token/refresh", headers=bearer(token))


def me(client, token: str):
    return client.get("/v1/users/me", headers=bearer(token))


def assert_refused(response, error: str = "revoked_token") -> None:
    assert response.status_code == 401, response.get_json()
    assert response.get_json()["error"] == error


def test_every_token_names_its_login_session(client, rita):
    tokens = login(client)
    access, refresh_claims = (
        pyjwt.decode(tokens[k], options={"verify_signature": False}) for k in ("access_token", "refresh_token")
    )
    assert access["sid"] == refresh_claims["sid"]
    assert db.session.get(LoginSession, access["sid"]).refresh_jti == refresh_claims["jti"]
    # A second login is a second session.
    assert pyjwt.decode(login(client)["access_token"], options={"verify_signature": False})["sid"] != access["sid"]


def test_refresh_rotates_and_a_spent_token_is_refused(client, rita):
    first = login(client)["refresh_token"]
    second = refresh(client, first).get_json()["refresh_token"]
    third = refresh(client, second).get_json()
    assert third["refresh_token"] not in (first, second)
    assert me(client, third["access_token"]).status_code == 200


def test_reusing_a_spent_refresh_token_ends_the_whole_session(client, rita):
    """The stolen-token race of OAuth 2.0 Security BCP 4.14: whoever refreshes second loses, and so does the first."""
    tokens = login(client)
    stolen = tokens["refresh_token"]
    legitimate = refresh(client, stolen).get_json()  # the user refreshes; the thief still holds `stolen`

    assert_refused(refresh(client, stolen), "refresh_token_reused")
    # Every token of the session is dead now, the ones issued after the stolen one included.
    assert_refused(refresh(client, legitimate["refresh_token"]))
    assert_refused(me(client, legitimate["access_token"]))
    assert_refused(me(client, tokens["access_token"]))
    # Other sessions of the same user live on; a new login works.
    assert me(client, login(client)["access_token"]).status_code == 200

    [event] = audit.list_events(db.session, action="session.refresh_reused")[0]
    assert event.target == "rita" and event.detail["session_id"]


def test_two_refreshes_racing_with_one_token_get_one_new_token_and_end_the_session(db_app, db_factory):
    """The rotation is one conditional UPDATE: of two concurrent uses of a token exactly one wins,
    and the loser is a reuse, which ends the session (the server cannot tell the thief apart)."""
    app = db_app
    issued = sessions.start(db.session, db_factory.user("rita"), timedelta(hours=1))
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def use_token() -> None:
        with app.app_context():
            barrier.wait(timeout=10)
            try:
                sessions.rotate(
                    db.session, issued.session_id, issued.refresh_jti, username="rita", actor=Actor("rita", "api")
                )
                outcomes.append("rotated")
            except sessions.RefreshTokenReused:
                outcomes.append("reused")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=use_token) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["reused", "rotated"]
    db.session.expire_all()
    assert db.session.get(LoginSession, issued.session_id).revoked_reason == "refresh_reused"


@pytest.mark.parametrize("change", ["password", "disable"])
def test_a_login_that_checked_the_old_password_gets_no_session_after_the_change(db_app, db_factory, change):
    """The login's password check and its session are apart in time (argon2 takes a while): a
    password change or a disable committed in between must win."""
    db_factory.user("slow")
    checked = user_accounts.authenticate(db.session, "slow", PASSWORD)
    assert checked is not None
    db.session.expunge(checked)  # the login's own copy, as another request's session holds it
    if change == "password":
        user_accounts.change_password(db.session, "slow", NEW_PASSWORD, actor=Actor("cli:ops", "cli"))
    else:
        user_accounts.update_user(db.session, "slow", disabled=True)
    with pytest.raises(sessions.SessionEnded):
        sessions.start(db.session, checked, timedelta(hours=1))
    assert db.session.query(LoginSession).count() == 0


def test_keys_made_by_a_stolen_session_die_with_it(client, factory, rita):
    """A stolen token's holder can mint a key; once the theft shows (a refresh token used twice), the
    keys that session created, and their children, are revoked. Other keys live on."""
    tokens = login(client)
    made = client.post(
        "/v1/api-keys",
        json={"label": "by thief", "scopes": ["inference", "keys:write"]},
        headers=bearer(tokens["access_token"]),
    ).get_json()
    child = client.post(
        "/v1/api-keys", json={"label": "child", "scopes": ["inference"]}, headers={"X-API-Key": made["key"]}
    ).get_json()
    other = factory.key_headers(rita)
    refresh(client, tokens["refresh_token"])
    assert_refused(refresh(client, tokens["refresh_token"]), "refresh_token_reused")
    for key in (made["key"], child["key"]):
        response = client.get("/v1/users/me", headers={"X-API-Key": key})
        assert response.status_code == 401 and response.get_json()["error"] == "revoked_key"
    assert client.get("/v1/users/me", headers=other).status_code == 200


def test_a_password_change_can_revoke_every_key_too(client, factory, rita):
    tokens = login(client)
    key = factory.key_headers(rita)
    response = client.post(
        "/v1/users/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD, "revoke_api_keys": True},
        headers=bearer(tokens["access_token"]),
    )
    assert response.status_code == 204
    assert client.get("/v1/users/me", headers=key).get_json()["error"] == "revoked_key"


def test_a_refresh_never_extends_the_session(client, rita):
    tokens = login(client)
    claims = pyjwt.decode(tokens["refresh_token"], options={"verify_signature": False})
    rotated = refresh(client, tokens["refresh_token"]).get_json()
    assert pyjwt.decode(rotated["refresh_token"], options={"verify_signature": False})["exp"] <= claims["exp"]


def test_revoking_a_refresh_token_logs_the_session_out(client, rita):
    tokens = login(client)
    assert client.post("/v1/token/revoke", headers=bearer(tokens["refresh_token"])).status_code == 204
    assert_refused(me(client, tokens["access_token"]))
    assert_refused(refresh(client, tokens["refresh_token"]))


def test_revoking_an_access_token_keeps_its_session(client, rita):
    tokens = login(client)
    assert client.post("/v1/token/revoke", headers=bearer(tokens["access_token"])).status_code == 204
    assert_refused(me(client, tokens["access_token"]))
    assert me(client, refresh(client, tokens["refresh_token"]).get_json()["access_token"]).status_code == 200


def change_password(client, token: str, current: str = PASSWORD, new: str = NEW_PASSWORD):
    return client.post(
        "/v1/users/me/password", json={"current_password": current, "new_password": new}, headers=bearer(token)
    )


def test_a_password_change_ends_every_session(client, factory, rita):
    here, elsewhere = login(client), login(client)
    key = factory.key_headers(rita)
    response = change_password(client, here["access_token"])
    assert response.status_code == 204 and response.data == b""
    for tokens in (here, elsewhere):
        assert_refused(me(client, tokens["access_token"]))
        assert_refused(refresh(client, tokens["refresh_token"]))
    assert client.post("/v1/token", data={"username": "rita", "password": PASSWORD}).status_code == 401
    assert me(client, login(client, password=NEW_PASSWORD)["access_token"]).status_code == 200
    assert client.get("/v1/users/me", headers=key).status_code == 200  # keys are not sessions

    [event] = audit.list_events(db.session, action="user.password_changed")[0]
    assert (event.actor, event.target, event.detail) == ("rita", "rita", {"sessions_ended": 2})


def test_a_wrong_current_password_is_403_and_changes_nothing(client, rita):
    tokens = login(client)
    response = change_password(client, tokens["access_token"], current="not my password")
    assert response.status_code == 403 and response.get_json()["error"] == "wrong_password"
    assert me(client, tokens["access_token"]).status_code == 200
    assert user_accounts.authenticate(db.session, "rita", PASSWORD) is not None


def test_wrong_current_passwords_share_the_login_limit(app, client, rita):
    """A stolen token must not be a faster way to guess the password than the login form."""
    tokens = login(client)  # one of the five logins a minute for rita from this address
    statuses = [change_password(client, tokens["access_token"], current=f"guess {i}").status_code for i in range(5)]
    assert statuses == [403, 403, 403, 403, 429]
    assert client.post("/v1/token", data={"username": "rita", "password": PASSWORD}).status_code == 429


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"current_password": PASSWORD},
        {"current_password": PASSWORD, "new_password": "short"},
        {"current_password": PASSWORD, "new_password": "x" * 1025},
    ],
)
def test_password_change_validation(client, rita, body):
    tokens = login(client)
    response = client.post("/v1/users/me/password", json=body, headers=bearer(tokens["access_token"]))
    assert response.status_code == 422 and response.get_json()["error"] == "validation_error"
    assert me(client, tokens["access_token"]).status_code == 200


def test_an_api_key_cannot_change_the_password(client, factory, rita):
    from mlapi.accounts.tables import SCOPES

    response = client.post(
        "/v1/users/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=factory.key_headers(rita, scopes=SCOPES[:-1]),
    )
    assert response.status_code == 403 and response.get_json()["error"] == "insufficient_scope"
    assert user_accounts.authenticate(db.session, "rita", PASSWORD) is not None


def test_disabling_a_user_ends_their_sessions_for_good(client, factory, rita):
    tokens = login(client)
    key = factory.key_headers(rita)
    root = factory.token_headers(factory.user("root", admin=True))
    assert client.patch("/v1/admin/users/rita", json={"disabled": True}, headers=root).status_code == 200
    assert_refused(me(client, tokens["access_token"]), "disabled_user")
    assert client.patch("/v1/admin/users/rita", json={"disabled": False}, headers=root).status_code == 200
    # Enabled again: the old tokens stay dead, the API keys work again, a new login works.
    assert_refused(me(client, tokens["access_token"]))
    assert_refused(refresh(client, tokens["refresh_token"]))
    assert client.get("/v1/users/me", headers=key).status_code == 200
    assert me(client, login(client)["access_token"]).status_code == 200


def test_the_cli_disable_ends_sessions_too(app, client, rita):
    tokens = login(client)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["users", "disable", "rita"]).exit_code == 0
    assert runner.invoke(args=["users", "enable", "rita"]).exit_code == 0
    assert_refused(me(client, tokens["access_token"]))


def test_cli_set_password_prompts_twice_and_ends_every_session(app, client, rita):
    tokens = login(client)
    runner = app.test_cli_runner()
    mismatch = runner.invoke(args=["users", "set-password", "rita"], input=f"{NEW_PASSWORD}\nsomething else\n")
    assert mismatch.exit_code != 0
    assert me(client, tokens["access_token"]).status_code == 200

    result = runner.invoke(args=["users", "set-password", "rita"], input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert NEW_PASSWORD not in result.output
    assert_refused(me(client, tokens["access_token"]))
    assert me(client, login(client, password=NEW_PASSWORD)["access_token"]).status_code == 200
    [event] = audit.list_events(db.session, action="user.password_changed")[0]
    assert event.source == "cli"


def test_cli_set_password_refuses_a_short_password_and_an_unknown_user(app, rita):
    runner = app.test_cli_runner()
    short = runner.invoke(args=["users", "set-password", "rita", "--password", "short"])
    assert short.exit_code == 1 and "8 to 1024 characters" in short.output
    unknown = runner.invoke(args=["users", "set-password", "nobody", "--password", NEW_PASSWORD])
    assert unknown.exit_code == 1 and "no user 'nobody'" in unknown.output


def test_cli_set_password_keeps_keys_unless_asked(app, client, factory, rita):
    key = factory.key_headers(rita)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["users", "set-password", "rita", "--password", NEW_PASSWORD]).exit_code == 0
    assert client.get("/v1/users/me", headers=key).status_code == 200
    result = runner.invoke(args=["users", "set-password", "rita", "--password", PASSWORD, "--revoke-keys"])
    assert result.exit_code == 0 and "API keys are revoked" in result.output
    assert client.get("/v1/users/me", headers=key).get_json()["error"] == "revoked_key"
