"""The audit log: every administrative action, by API or CLI, writes one row in its own transaction."""

import getpass
import json

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from mlapi.accounts import audit, user_accounts
from mlapi.accounts.audit import Actor
from mlapi.accounts.tables import AuditEvent
from mlapi.extensions import db
from tests.factories import PASSWORD

CLI_ACTOR = f"cli:{getpass.getuser()}"


@pytest.fixture
def root(factory):
    # enterprise: these tests send more requests than the free tier's quota allows.
    return factory.user("root", admin=True, tier="enterprise")


@pytest.fixture
def admin_headers(factory, root):
    return factory.key_headers(root, scopes=("admin", "keys:write", "inference", "models:read"))


def events(**filters) -> list[AuditEvent]:
    """Every matching event, newest first."""
    return audit.list_events(db.session, **filters)[0]


class Recorder:
    """Checks that one action added exactly one audit row, and returns it."""

    def __init__(self) -> None:
        self.seen = len(events())

    def one(self) -> AuditEvent:
        rows = events()
        assert len(rows) == self.seen + 1, [(e.action, e.target) for e in rows]
        self.seen += 1
        return rows[0]

    def events(self, count: int) -> list[AuditEvent]:
        """The ``count`` rows one action added (one per change it made)."""
        rows = events()
        assert len(rows) == self.seen + count, [(e.action, e.target) for e in rows]
        self.seen += count
        for event in rows[:count]:
            assert event.source == "cli" and event.actor == CLI_ACTOR and event.target == "carl"
        return rows[:count]

    def none(self) -> None:
        assert len(events()) == self.seen


def assert_api_event(event, response, actor, action, target, detail=None):
    assert (event.actor, event.action, event.target, event.source) == (actor, action, target, "api")
    assert event.request_id == response.headers["X-Request-ID"]
    assert event.ip_address == "127.0.0.1"
    assert event.detail == detail
    assert event.occurred_at.tzinfo is not None


def assert_cli_event(event, action, target, detail=None):
    assert (event.actor, event.action, event.target, event.source) == (CLI_ACTOR, action, target, "cli")
    assert (event.request_id, event.ip_address) == (None, None)
    assert event.detail == detail


def test_each_api_action_writes_one_row(client, factory, admin_headers):
    recorder = Recorder()

    created = client.post(
        "/v1/admin/users",
        json={"username": "ann", "password": "secret password 1", "tier": "pro"},
        headers=admin_headers,
    )
    assert created.status_code == 201
    assert_api_event(recorder.one(), created, "root", "user.created", "ann", {"tier": "pro", "is_admin": False})

    steps = [
        ({"tier": "enterprise"}, "user.tier_changed", {"from": "pro", "to": "enterprise"}),
        ({"disabled": True}, "user.disabled", None),
        ({"disabled": False}, "user.enabled", None),
        ({"is_admin": True}, "user.admin_granted", None),
        ({"is_admin": False}, "user.admin_revoked", None),
        ({"monthly_quota": 5000}, "user.monthly_quota_changed", {"from": None, "to": 5000}),
        ({"monthly_quota": None}, "user.monthly_quota_changed", {"from": 5000, "to": None}),
        ({"rate_limit": "500/minute"}, "user.rate_limit_changed", {"from": None, "to": "500/minute"}),
        ({"rate_limit": None}, "user.rate_limit_changed", {"from": "500/minute", "to": None}),
    ]
    for body, action, detail in steps:
        response = client.patch("/v1/admin/users/ann", json=body, headers=admin_headers)
        assert response.status_code == 200
        assert_api_event(recorder.one(), response, "root", action, "ann", detail)

    ann = user_accounts.get_user(db.session, "ann")
    ann_headers = factory.token_headers(ann)
    own = client.post("/v1/api-keys", json={"label": "laptop"}, headers=ann_headers)
    assert own.status_code == 201
    key = own.get_json()
    key_detail = {
        "key_id": key["id"],
        "prefix": key["prefix"],
        "label": "laptop",
        "scopes": ["inference", "models:read", "usage:read"],
        "models": ["*"],
        "parent_key_id": None,
    }
    assert_api_event(recorder.one(), own, "ann", "key.created", "ann", key_detail)

    revoked = client.delete(f"/v1/api-keys/{key['id']}", headers=ann_headers)
    assert revoked.status_code == 204
    assert_api_event(recorder.one(), revoked, "ann", "key.revoked", "ann", key_detail)

    second = client.post("/v1/api-keys", json={"label": "ci"}, headers=ann_headers).get_json()
    recorder.one()
    by_admin = client.delete(f"/v1/admin/users/ann/api-keys/{second['id']}", headers=admin_headers)
    assert by_admin.status_code == 204
    assert_api_event(
        recorder.one(),
        by_admin,
        "root",
        "key.revoked",
        "ann",
        {
            "key_id": second["id"],
            "prefix": second["prefix"],
            "label": "ci",
            "scopes": ["inference", "models:read", "usage:read"],
            "models": ["*"],
            "parent_key_id": None,
        },
    )


def test_the_audit_log_never_holds_a_secret(client, factory, admin_headers):
    password = "a very secret password"
    client.post("/v1/admin/users", json={"username": "sam", "password": password}, headers=admin_headers)
    key = client.post(
        "/v1/api-keys", json={"label": "x"}, headers=factory.token_headers(user_accounts.get_user(db.session, "sam"))
    ).get_json()["key"]
    with db.engine.connect() as connection:
        dumped = str(connection.execute(text("SELECT * FROM audit_events")).all())
    assert "sam" in dumped and "key.created" in dumped
    assert password not in dumped and key not in dumped
    assert user_accounts.get_user(db.session, "sam").password_hash not in dumped


def test_one_patch_with_two_changes_writes_two_rows_and_a_no_op_none(client, factory, admin_headers):
    factory.user("pat", tier="free")
    recorder = Recorder()
    response = client.patch("/v1/admin/users/pat", json={"tier": "pro", "is_admin": True}, headers=admin_headers)
    assert response.status_code == 200
    assert {e.action for e in events()[:2]} == {"user.tier_changed", "user.admin_granted"}
    recorder.seen += 2
    for unchanged in ({"tier": "pro"}, {"is_admin": True}, {"disabled": False}, {}):
        assert client.patch("/v1/admin/users/pat", json=unchanged, headers=admin_headers).status_code == 200
    recorder.none()


def test_failed_api_actions_write_nothing(client, factory, admin_headers):
    member = factory.user("mia", tier="enterprise")
    member_headers = factory.token_headers(member)
    other_key_id = factory.api_key(factory.user("olaf"))[0].id
    recorder = Recorder()
    duplicate = client.post(
        "/v1/admin/users", json={"username": "mia", "password": "long enough pw"}, headers=admin_headers
    )
    assert duplicate.status_code == 409
    assert client.patch("/v1/admin/users/ghost", json={"tier": "pro"}, headers=admin_headers).status_code == 404
    assert client.patch("/v1/admin/users/mia", json={"tier": "gold"}, headers=admin_headers).status_code == 422
    assert client.delete("/v1/admin/users/mia/api-keys/999999", headers=admin_headers).status_code == 404
    assert client.delete(f"/v1/admin/users/mia/api-keys/{other_key_id}", headers=admin_headers).status_code == 404
    assert client.delete(f"/v1/admin/users/ghost/api-keys/{other_key_id}", headers=admin_headers).status_code == 404
    assert client.delete("/v1/api-keys/999999", headers=member_headers).status_code == 404
    assert client.delete(f"/v1/api-keys/{other_key_id}", headers=member_headers).status_code == 404
    assert client.post("/v1/api-keys", json={"label": ""}, headers=member_headers).status_code == 422
    assert client.patch("/v1/admin/users/olaf", json={"tier": "pro"}, headers=member_headers).status_code == 403
    recorder.none()


def test_revoking_a_key_twice_is_audited_once(client, factory):
    owner = factory.user("rex")
    record, _ = factory.api_key(owner)
    headers = factory.token_headers(owner)
    recorder = Recorder()
    assert client.delete(f"/v1/api-keys/{record.id}", headers=headers).status_code == 204
    recorder.one()
    assert client.delete(f"/v1/api-keys/{record.id}", headers=headers).status_code == 204
    recorder.none()


def test_an_action_and_its_audit_row_commit_or_roll_back_together(factory):
    # Without the audit table the audit row cannot be written: the user must not be created either.
    db.session.remove()
    with db.engine.begin() as connection:
        connection.execute(text("DROP TABLE audit_events"))
    with pytest.raises(DBAPIError):
        user_accounts.create_user(db.session, "ghost", PASSWORD, actor=Actor("root", "api"))
    db.session.rollback()
    assert user_accounts.find_user(db.session, "ghost") is None


def invoke(runner, *args):
    result = runner.invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return result


def test_each_cli_action_writes_one_row(runner):
    recorder = Recorder()
    invoke(runner, "users", "create", "carl", "--password", "a good password", "--tier", "pro", "--admin")
    assert_cli_event(recorder.one(), "user.created", "carl", {"tier": "pro", "is_admin": True})
    invoke(runner, "users", "set-tier", "carl", "enterprise")
    assert_cli_event(recorder.one(), "user.tier_changed", "carl", {"from": "pro", "to": "enterprise"})
    invoke(runner, "users", "disable", "carl")
    assert_cli_event(recorder.one(), "user.disabled", "carl")
    invoke(runner, "users", "enable", "carl")
    assert_cli_event(recorder.one(), "user.enabled", "carl")
    invoke(runner, "users", "set-quota", "carl", "--monthly", "900", "--rate-limit", "50/minute")
    assert {(e.action, e.detail["to"]) for e in recorder.events(2)} == {
        ("user.monthly_quota_changed", 900),
        ("user.rate_limit_changed", "50/minute"),
    }
    invoke(runner, "users", "set-quota", "carl", "--tier-default")
    assert {(e.action, e.detail["to"]) for e in recorder.events(2)} == {
        ("user.monthly_quota_changed", None),
        ("user.rate_limit_changed", None),
    }

    key = invoke(runner, "keys", "create", "carl", "--label", "deploy").stdout.strip().splitlines()[0]
    created = recorder.one()
    key_detail = {
        "key_id": created.detail["key_id"],
        "prefix": key[:12],
        "label": "deploy",
        "scopes": ["inference", "models:read", "usage:read"],
        "models": ["*"],
        "parent_key_id": None,
    }
    assert_cli_event(created, "key.created", "carl", key_detail)
    invoke(runner, "keys", "revoke", str(key_detail["key_id"]))
    assert_cli_event(recorder.one(), "key.revoked", "carl", key_detail)

    invoke(runner, "bootstrap")
    assert_cli_event(recorder.one(), "user.created", "demo_user", {"tier": "pro", "is_admin": False})
    invoke(runner, "bootstrap")
    recorder.none()


def test_failed_cli_actions_write_nothing(runner):
    invoke(runner, "users", "create", "fay", "--password", "first password")
    recorder = Recorder()
    for args in (
        ("users", "create", "fay", "--password", "second password"),
        ("users", "set-tier", "ghost", "pro"),
        ("users", "disable", "ghost"),
        ("keys", "create", "ghost"),
        ("keys", "revoke", "4242"),
    ):
        assert runner.invoke(args=list(args)).exit_code == 1
    assert runner.invoke(args=["users", "set-tier", "fay", "free"]).exit_code == 0  # unchanged: nothing to record
    recorder.none()


def record_events(count: int) -> None:
    """``count`` events, alternating actions and actors, oldest first."""
    for n in range(count):
        actor = Actor("alice" if n % 2 else "bob", "api")
        action = audit.Action.USER_DISABLED if n % 2 else audit.Action.USER_ENABLED
        audit.record(db.session, actor, action, f"target{n}")
    db.session.commit()


def test_the_endpoint_is_for_admins_only(client, factory):
    assert client.get("/v1/admin/audit").status_code == 401
    response = client.get("/v1/admin/audit", headers=factory.token_headers(factory.user("nonadmin")))
    assert response.status_code == 403
    assert response.get_json()["error"] == "forbidden"


def test_the_endpoint_pages_newest_first(client, admin_headers):
    record_events(5)
    response = client.get("/v1/admin/audit?page=2&page_size=2", headers=admin_headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body["pagination"] == {"page": 2, "page_size": 2, "total": 5, "pages": 3}
    assert [e["target"] for e in body["data"]] == ["target2", "target1"]
    first = client.get("/v1/admin/audit", headers=admin_headers).get_json()["data"][0]
    assert first["target"] == "target4"
    assert set(first) == {
        "id",
        "occurred_at",
        "actor",
        "actor_key_id",
        "action",
        "target",
        "source",
        "request_id",
        "ip_address",
        "detail",
    }


def test_the_endpoint_filters(client, admin_headers):
    record_events(5)
    body = client.get("/v1/admin/audit?action=user.disabled", headers=admin_headers).get_json()
    assert [e["target"] for e in body["data"]] == ["target3", "target1"]
    assert body["pagination"]["total"] == 2
    body = client.get("/v1/admin/audit?actor=bob&action=user.enabled", headers=admin_headers).get_json()
    assert [e["target"] for e in body["data"]] == ["target4", "target2", "target0"]
    body = client.get("/v1/admin/audit?target=target2", headers=admin_headers).get_json()
    assert [e["actor"] for e in body["data"]] == ["bob"]
    assert client.get("/v1/admin/audit?actor=nobody", headers=admin_headers).get_json()["data"] == []


@pytest.mark.parametrize(
    "query",
    ["action=user.deleted", "page=0", "page_size=101", "page=x", "actor=", "actor=" + "a" * 129, "target=" + "t" * 65],
)
def test_the_endpoint_validates_its_query(client, admin_headers, query):
    response = client.get(f"/v1/admin/audit?{query}", headers=admin_headers)
    assert response.status_code == 422
    body = response.get_json()
    assert body["error"] == "validation_error" and body["errors"]
    assert body["request_id"] == response.headers["X-Request-ID"]


def test_the_endpoint_is_documented(client):
    spec = client.get("/v1/openapi.json").get_json()
    operation = spec["paths"]["/v1/admin/audit"]["get"]
    assert {"200", "401", "403", "422", "429"} <= set(operation["responses"])
    schema_ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    page_schema = spec["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]
    assert set(page_schema["properties"]) == {"data", "pagination"}
    action = next(p for p in operation["parameters"] if p["name"] == "action")
    assert set(action["schema"]["enum"]) == set(audit.ACTIONS)


def test_cli_list_prints_newest_first_and_filters(runner):
    record_events(3)
    lines = invoke(runner, "audit", "list").output.strip().splitlines()
    assert [line.split("\t")[1:5] for line in lines] == [
        ["bob", "user.enabled", "target2", "api"],
        ["alice", "user.disabled", "target1", "api"],
        ["bob", "user.enabled", "target0", "api"],
    ]
    assert invoke(runner, "audit", "list", "--limit", "1").output.count("\n") == 1
    only_alice = invoke(runner, "audit", "list", "--actor", "alice").output.strip().splitlines()
    assert [line.split("\t")[3] for line in only_alice] == ["target1"]
    enabled = invoke(runner, "audit", "list", "--action", "user.enabled", "--target", "target0").output
    assert enabled.count("\n") == 1 and "target0" in enabled


def test_cli_list_as_json_lines(runner):
    invoke(runner, "users", "create", "jo", "--password", "a good password")
    [line] = invoke(runner, "audit", "list", "--json").output.strip().splitlines()
    event = json.loads(line)
    assert {k: event[k] for k in ("actor", "action", "target", "source", "detail")} == {
        "actor": CLI_ACTOR,
        "action": "user.created",
        "target": "jo",
        "source": "cli",
        "detail": {"tier": "free", "is_admin": False},
    }


def test_cli_list_refuses_bad_options(runner):
    assert runner.invoke(args=["audit", "list", "--action", "user.deleted"]).exit_code == 2
    assert runner.invoke(args=["audit", "list", "--limit", "0"]).exit_code == 2


def test_cli_actor_without_a_login_name(runner, monkeypatch):
    # Containers may run under a uid with no passwd entry and no LOGNAME/USER: getuser() then raises.
    def no_login_name() -> str:
        raise OSError("No username set in the environment")

    monkeypatch.setattr(getpass, "getuser", no_login_name)
    invoke(runner, "users", "create", "uma", "--password", "a good password")
    assert events()[0].actor == "cli:unknown"
