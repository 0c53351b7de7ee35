"""Key lineage on SQLite and on PostgreSQL: a child holds no more than its parent and dies with it,
also when the two race; and keys made before the upgrade keep inference only."""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import OperationalError

from mlapi.accounts import api_keys, audit, user_accounts
from mlapi.accounts.tables import ApiKey, utcnow
from mlapi.cli.db_commands import upgrade_database
from mlapi.extensions import db
from tests.conftest import make_test_app
from tests.key_requests import PREDICT, assert_403, create, key


@pytest.fixture
def alice(factory):
    return factory.user("alice", tier="enterprise")


def test_a_key_grants_no_more_than_it_holds(client, factory, alice):
    parent = create(
        client,
        factory.token_headers(alice),
        scopes=["inference", "keys:write"],
        models=["sentiment"],
        expires_in_days=5,
    ).get_json()
    assert_403(create(client, key(parent), scopes=["inference", "models:read"]), "insufficient_scope")
    assert_403(create(client, key(parent), scopes=["inference"], models=["*"]), "model_not_allowed")
    assert_403(create(client, key(parent), scopes=["inference"], models=["sentiment", "minilm"]), "model_not_allowed")

    child = create(client, key(parent), scopes=["inference"], models=["sentiment"], expires_in_days=365)
    assert child.status_code == 201, child.get_json()
    body = child.get_json()
    assert body["parent_key_id"] == parent["id"]
    assert body["expires_at"] == parent["expires_at"]  # capped: a child never outlives its parent
    forever = create(client, key(parent), scopes=["inference"], models=["sentiment"]).get_json()
    assert forever["expires_at"] == parent["expires_at"]


def test_revoking_a_key_revokes_every_key_created_from_it(client, factory, alice):
    session = factory.token_headers(alice)
    writer = ["inference", "models:read", "keys:write"]
    leaked = create(client, session, scopes=writer).get_json()
    child = create(client, key(leaked), scopes=writer).get_json()
    grandchild = create(client, key(child), scopes=["inference"]).get_json()
    sibling = create(client, session).get_json()
    for body in (leaked, child, grandchild, sibling):
        assert client.post("/v1/predict", json=PREDICT, headers=key(body)).status_code == 200

    assert client.delete(f"/v1/api-keys/{leaked['id']}", headers=session).status_code == 204
    for body in (leaked, child, grandchild):
        response = client.post("/v1/predict", json=PREDICT, headers=key(body))
        assert response.status_code == 401 and response.get_json()["error"] == "revoked_key"
    assert client.post("/v1/predict", json=PREDICT, headers=key(sibling)).status_code == 200

    rows = audit.list_events(db.session, action="key.revoked")[0]
    assert sorted((row.detail["key_id"], row.detail.get("revoked_with")) for row in rows) == [
        (leaked["id"], None),
        (child["id"], leaked["id"]),
        (grandchild["id"], leaked["id"]),
    ]


def test_a_revoked_parent_cannot_get_children_through_a_stale_check(app, factory, alice):
    """The store refuses a child of a key revoked after the request's credential check."""
    parent, _ = factory.api_key(alice, scopes=("inference", "keys:write"))
    api_keys.revoke_api_key(db.session, parent.id)
    with pytest.raises(api_keys.Conflict):
        api_keys.create_api_key(db.session, alice, "late", scopes=["inference"], parent_key_id=parent.id)


def create_racer(app, parent_id: int) -> None:
    """In a thread of its own: alice's key "racer", created by the key ``parent_id``."""
    with app.app_context():
        owner = user_accounts.get_user(db.session, "alice")
        api_keys.create_api_key(db.session, owner, "racer", scopes=["inference"], parent_key_id=parent_id)
        db.session.remove()


def test_a_child_committed_while_its_parent_is_being_revoked_is_revoked_too(app, factory, alice):
    """The race: the revocation reads the lineage, then a child of the parent commits. The child must
    not survive. Events order the two transactions; no timing is involved."""
    parent, _ = factory.api_key(alice, scopes=("inference", "keys:write"))
    child_inserted, lineage_read, child_committed = threading.Event(), threading.Event(), threading.Event()
    creator = threading.Thread(target=create_racer, args=(app, parent.id))
    revoker = threading.Thread(target=lambda: revoke())

    def hold_the_commit(_session) -> None:  # the child is inserted and its parent's row locked
        if threading.current_thread() is creator:
            child_inserted.set()
            assert lineage_read.wait(timeout=30)

    def child_is_committed(_session) -> None:
        if threading.current_thread() is creator:
            child_committed.set()

    def after_the_lineage_read(state):
        result = state.invoke_statement()
        reads_the_lineage = "WHERE api_keys.user_id" in str(state.statement)  # all the account's keys
        if threading.current_thread() is revoker and reads_the_lineage and not lineage_read.is_set():
            lineage_read.set()
            assert child_committed.wait(timeout=30)  # the revocation goes on with a stale lineage
        return result

    def revoke() -> None:
        with app.app_context():
            assert child_inserted.wait(timeout=30)
            api_keys.revoke_api_key(db.session, parent.id)
            db.session.remove()

    factory_events = db.session.session_factory
    event.listen(factory_events, "before_commit", hold_the_commit)
    event.listen(factory_events, "after_commit", child_is_committed)
    event.listen(factory_events, "do_orm_execute", after_the_lineage_read)
    try:
        creator.start()
        revoker.start()
        creator.join(timeout=60)
        revoker.join(timeout=60)
    finally:
        event.remove(factory_events, "before_commit", hold_the_commit)
        event.remove(factory_events, "after_commit", child_is_committed)
        event.remove(factory_events, "do_orm_execute", after_the_lineage_read)
    assert lineage_read.is_set() and child_committed.is_set()
    db.session.expire_all()
    keys = {key.label: key for key in api_keys.list_api_keys(db.session, alice)}
    assert keys["racer"].parent_key_id == parent.id
    assert keys["racer"].revoked_at is not None


def test_the_parent_stays_locked_from_its_check_until_the_child_commits(app, factory, alice, database_url):
    """The other order of the race: the child's parent is checked, then a revocation tries to commit
    before the child does. It must wait: a write to the parent is refused while the child is on its way."""
    parent, _ = factory.api_key(alice, scopes=("inference", "keys:write"))
    checked, probed = threading.Event(), threading.Event()
    creator = threading.Thread(target=create_racer, args=(app, parent.id))

    def after_the_parent_check(state):
        result = state.invoke_statement()
        if threading.current_thread() is creator and state.is_select and "WHERE api_keys.id" in str(state.statement):
            checked.set()
            assert probed.wait(timeout=30)
        return result

    event.listen(db.session.session_factory, "do_orm_execute", after_the_parent_check)
    try:
        creator.start()
        assert checked.wait(timeout=30)
        try:
            with pytest.raises((sqlite3.OperationalError, OperationalError), match="locked|lock"):
                take_a_write_lock_at_once(database_url, parent.id)
        finally:
            probed.set()
            creator.join(timeout=60)
    finally:
        event.remove(db.session.session_factory, "do_orm_execute", after_the_parent_check)
    assert "racer" in {key.label for key in api_keys.list_api_keys(db.session, alice)}


def take_a_write_lock_at_once(database_url: str, key_id: int) -> None:
    """From another connection, without waiting: raises if someone holds the key's row (or SQLite's database)."""
    if database_url.startswith("sqlite"):
        connection = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=0)
        try:
            connection.execute("BEGIN IMMEDIATE")
        finally:
            connection.close()
        return
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("SELECT id FROM api_keys WHERE id = :id FOR UPDATE NOWAIT"), {"id": key_id})
    finally:
        engine.dispose()


def test_keys_made_before_the_upgrade_keep_inference_only(database_url):
    """The migration gives existing keys the default scopes: they predict, and no longer mint keys."""
    app = make_test_app(database_url, migrate=False)
    try:
        upgrade_database("0002")
        key_value = "mlapi_" + "k" * 43
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO users (username, password_hash, tier, is_admin, disabled, created_at, updated_at) "
                    "VALUES ('old', 'x', 'pro', true, false, :now, :now)"
                ),
                {"now": utcnow()},
            )
            connection.execute(
                text(
                    "INSERT INTO api_keys (user_id, label, prefix, key_hash, created_at) "
                    "VALUES ((SELECT id FROM users WHERE username = 'old'), 'legacy', :prefix, :hash, :now)"
                ),
                {"prefix": key_value[:12], "hash": api_keys.hash_key(key_value), "now": utcnow() - timedelta(days=9)},
            )
        upgrade_database()
        record = db.session.query(ApiKey).one()
        assert (record.scopes, record.models, record.parent_key_id) == (["inference", "models:read"], ["*"], None)
        client = app.test_client()
        headers = {"X-API-Key": key_value}
        assert client.post("/v1/predict", json=PREDICT, headers=headers).status_code == 200
        assert client.post("/v1/api-keys", json={"label": "x"}, headers=headers).status_code == 403
        assert client.get("/v1/admin/users", headers=headers).status_code == 403  # an admin's key, before
    finally:
        db.dispose()
