"""The admin CLI, through Flask's CLI runner."""

import pytest

from mlapi.accounts import user_accounts
from mlapi.extensions import db


def invoke(runner, *args, input=None):
    return runner.invoke(args=list(args), input=input)


def test_users_create_list_and_administer(runner, client):
    result = invoke(runner, "users", "create", "carol", "--password", "a good password", "--tier", "pro", "--admin")
    assert result.exit_code == 0, result.output
    assert "created user carol" in result.output and "admin" in result.output
    users = invoke(runner, "users", "list").output.splitlines()
    assert users[0] == "id\tusername\ttier\tflags" and "carol\tpro\tadmin" in users[1]

    assert invoke(runner, "users", "set-tier", "carol", "enterprise").exit_code == 0
    assert user_accounts.get_user(db.session, "carol").tier == "enterprise"

    assert invoke(runner, "users", "disable", "carol").exit_code == 0
    db.session.expire_all()
    assert user_accounts.get_user(db.session, "carol").disabled
    login = client.post("/v1/token", data={"username": "carol", "password": "a good password"})
    assert login.status_code == 401
    assert invoke(runner, "users", "enable", "carol").exit_code == 0
    assert client.post("/v1/token", data={"username": "carol", "password": "a good password"}).status_code == 200


def test_users_create_prompts_for_a_confirmed_password(runner):
    result = invoke(runner, "users", "create", "dave", input="hidden pass 1\nhidden pass 1\n")
    assert result.exit_code == 0, result.output
    assert "hidden pass 1" not in result.output
    assert user_accounts.authenticate(db.session, "dave", "hidden pass 1") is not None


def test_users_create_refuses_a_mismatched_confirmation(runner):
    result = invoke(runner, "users", "create", "eve", input="one password\nanother one\n")
    assert result.exit_code != 0
    assert user_accounts.find_user(db.session, "eve") is None


@pytest.mark.parametrize(
    "args,message",
    [
        (("users", "set-tier", "ghost", "pro"), "no user 'ghost'"),
        (("users", "disable", "ghost"), "no user 'ghost'"),
        (("users", "enable", "ghost"), "no user 'ghost'"),
        (("keys", "create", "ghost"), "no user 'ghost'"),
        (("keys", "list", "ghost"), "no user 'ghost'"),
        (("keys", "revoke", "4242"), "no API key 4242"),
    ],
)
def test_unknown_targets_fail_in_one_line(runner, args, message):
    result = invoke(runner, *args)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: {message}"]


def test_duplicate_user_fails_and_writes_nothing(runner):
    invoke(runner, "users", "create", "frank", "--password", "first password")
    result = invoke(runner, "users", "create", "frank", "--password", "second password", "--tier", "pro")
    assert result.exit_code == 1
    assert result.output.strip() == "Error: user 'frank' already exists"
    users, total = user_accounts.list_users(db.session)
    assert total == 1
    assert user_accounts.authenticate(db.session, "frank", "first password").tier == "free"


def test_bad_tier_is_refused(runner):
    assert invoke(runner, "users", "create", "gina", "--password", "pw pw pw pw", "--tier", "gold").exit_code == 2
    assert user_accounts.find_user(db.session, "gina") is None
    invoke(runner, "users", "create", "gina", "--password", "pw pw pw pw")
    assert invoke(runner, "users", "set-tier", "gina", "gold").exit_code == 2


def test_keys_create_list_revoke(runner, client):
    invoke(runner, "users", "create", "hank", "--password", "pw pw pw pw")
    result = invoke(runner, "keys", "create", "hank", "--label", "deploy", "--expires-in-days", "10")
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[0]
    assert key.startswith("mlapi_")
    assert client.get("/v1/users/me", headers={"X-API-Key": key}).get_json()["username"] == "hank"

    listing = invoke(runner, "keys", "list", "hank").output.splitlines()
    assert listing[0].split("\t") == [
        "id",
        "prefix",
        "label",
        "created",
        "expires",
        "last_used",
        "revoked",
        "scopes",
        "models",
        "parent",
    ]
    [row] = listing[1:]
    assert "deploy" in row and key[:12] in row and key not in row
    key_id = row.split("\t")[0]
    assert invoke(runner, "keys", "revoke", key_id).exit_code == 0
    assert client.get("/v1/users/me", headers={"X-API-Key": key}).status_code == 401


def test_bootstrap_creates_the_demo_user_once(runner, client):
    first = invoke(runner, "bootstrap")
    assert first.exit_code == 0 and "created development user demo_user" in first.output
    assert invoke(runner, "bootstrap").exit_code == 0
    assert user_accounts.list_users(db.session)[1] == 1
    login = client.post("/v1/token", data={"username": "demo_user", "password": "demo_password"})
    assert login.status_code == 200
    me = client.get("/v1/users/me", headers={"Authorization": f"Bearer {login.get_json()['access_token']}"})
    assert me.get_json()["tier"] == "pro"


def test_bootstrap_is_refused_in_production(tmp_path):
    from tests.conftest import make_test_app

    app = make_test_app(
        f"sqlite:///{tmp_path / 'prod.db'}",
        MLAPI_ENV="production",
        MLAPI_SECRET_KEY="Zq8-vN3wK7rB2xT9mJ5hL1cF6dG4sP0y-Aa",
    )
    try:
        result = app.test_cli_runner().invoke(args=["bootstrap"])
        assert result.exit_code == 1
        assert "refused in production" in result.output
        assert user_accounts.find_user(db.session, "demo_user") is None
    finally:
        db.dispose()


def test_models_list_reads_the_store_without_loading_it(runner):
    result = invoke(runner, "models", "list")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert [line.split("\t")[:2] for line in lines] == [
        ["name", "version"],
        ["minilm", "1.0*"],
        ["sentiment", "1.0 "],
        ["sentiment", "1.1*"],
    ]


def test_models_list_reports_a_broken_store_in_one_line(tmp_path):
    from tests.conftest import make_test_app

    broken = tmp_path / "models" / "x" / "1.0"
    broken.mkdir(parents=True)
    (broken / "manifest.json").write_text('{"task": "embedding", "handler": "sentence-embedding", "weights": "gone"}')
    app = make_test_app(f"sqlite:///{tmp_path / 'm.db'}", MLAPI_MODEL_DIR=str(tmp_path / "models"), load_models=False)
    try:
        result = app.test_cli_runner().invoke(args=["models", "list"])
    finally:
        db.dispose()
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {broken / 'manifest.json'}: weights not found at {broken / 'gone'}"
    ]


def test_keys_create_takes_scopes_and_models(runner, client):
    invoke(runner, "users", "create", "iris", "--password", "pw pw pw pw")
    result = invoke(
        runner, "keys", "create", "iris", "--scope", "inference", "--scope", "keys:write", "--model", "minilm"
    )
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert "scopes inference keys:write" in result.stderr and "models minilm" in result.stderr
    headers = {"X-API-Key": key}
    assert client.post("/v1/embeddings", json={"input": "hi"}, headers=headers).status_code == 200
    assert client.post("/v1/predict", json={"text": "hi"}, headers=headers).get_json()["error"] == "model_not_allowed"
    assert client.get("/v1/models", headers=headers).get_json()["error"] == "insufficient_scope"
    [row] = invoke(runner, "keys", "list", "iris").output.splitlines()[1:]
    assert row.split("\t")[-3:] == ["inference,keys:write", "minilm", "-"]

    child = client.post(
        "/v1/api-keys", json={"label": "c", "scopes": ["inference"], "models": ["minilm"]}, headers=headers
    ).get_json()
    parent_id = row.split("\t")[0]
    assert child["parent_key_id"] == int(parent_id)
    revoked = invoke(runner, "keys", "revoke", parent_id)
    assert revoked.exit_code == 0 and "with 1 key(s) created from it" in revoked.output
    assert client.get("/v1/users/me", headers={"X-API-Key": child["key"]}).get_json()["error"] == "revoked_key"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--scope", "everything"], "Invalid value for '--scope'"),
        (["--scope", "admin"], "only an administrator's key may carry the admin scope"),
        (["--model", "bad name!"], "models must be"),
    ],
)
def test_keys_create_refuses_bad_scopes_and_models(runner, args, message):
    invoke(runner, "users", "create", "jon", "--password", "pw pw pw pw")
    result = invoke(runner, "keys", "create", "jon", *args)
    assert result.exit_code != 0 and message in result.output
    assert "mlapi_" not in result.output
