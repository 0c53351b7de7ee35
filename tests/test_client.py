"""mlapi.client and the `mlapi predict`/`mlapi embed` commands against a real server."""

import os
import subprocess
import sys
import time

import jwt as pyjwt
import pytest
import requests

from mlapi.client import AuthenticationError, Client, NotFoundError, RateLimitedError, ValidationError
from mlapi.extensions import db
from tests.conftest import make_test_app
from tests.factories import PASSWORD, Factory
from tests.gunicorn_server import ROOT, GunicornServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("client")
    url = f"sqlite:///{workdir / 'client.db'}"
    app = make_test_app(url, load_models=False)
    factory = Factory(app)
    keys = {
        "main": factory.api_key(factory.user("client-main", tier="enterprise"))[1],
        "burst": factory.api_key(factory.user("client-burst", tier="free"))[1],
    }
    factory.user("client-pw", tier="enterprise")
    db.dispose()
    env = {
        "MLAPI_DATABASE_URL": url,
        "MLAPI_TIER_LIMITS": "free=2/second",
        "MLAPI_CACHE_TTL_S": "0",
        "MLAPI_MODEL_DIR": str(ROOT / "models"),
    }
    with GunicornServer(workdir / "gunicorn.log", env, workers=2) as server:
        yield server, keys


def test_api_key_calls(served):
    server, keys = served
    client = Client(server.url, api_key=keys["main"])
    assert client.health()["status"] == "ok"
    assert client.predict("I love this, it is wonderful.")["result"] == "positive"
    batch = client.predict_batch(["Great!", "Awful, it broke."], model_version="1.0")
    assert [p["result"] for p in batch["predictions"]] == ["positive", "negative"]
    (vector,) = client.embed("hello")
    assert len(vector) == 384
    assert {m["id"] for m in client.models()} == {"minilm", "sentiment"}
    assert client.me()["username"] == "client-main"


def test_typed_errors(served):
    server, keys = served
    client = Client(server.url, api_key=keys["main"])
    with pytest.raises(NotFoundError) as missing:
        client.predict("x", model="nope")
    assert "minilm, sentiment" in missing.value.detail and missing.value.request_id
    with pytest.raises(ValidationError) as invalid:
        client.predict("   ")
    assert "text" in invalid.value.body["errors"]
    with pytest.raises(AuthenticationError) as refused:
        Client(server.url, api_key="mlapi_wrong").me()
    assert refused.value.error == "unknown_key"


def test_password_login_and_transparent_token_renewal(served):
    server, _ = served
    client = Client(server.url, username="client-pw", password=PASSWORD)
    assert client.me()["username"] == "client-pw"
    first = client.access_token
    revoked = requests.post(f"{server.url}/v1/token/revoke", headers={"Authorization": f"Bearer {first}"}, timeout=10)
    assert revoked.status_code == 204
    assert client.me()["username"] == "client-pw"  # refreshed behind the scenes
    assert client.access_token != first
    # Twice more: each renewal uses the refresh token the last one returned (a spent one would end
    # the session and force a new login).
    for _ in range(2):
        session_before = pyjwt.decode(client.access_token, options={"verify_signature": False})["sid"]
        requests.post(
            f"{server.url}/v1/token/revoke", headers={"Authorization": f"Bearer {client.access_token}"}, timeout=10
        )
        assert client.me()["username"] == "client-pw"
        assert pyjwt.decode(client.access_token, options={"verify_signature": False})["sid"] == session_before


def test_retries_honour_retry_after(served):
    server, keys = served
    client = Client(server.url, api_key=keys["burst"])
    started = time.monotonic()
    results = [client.predict(f"burst {i}")["result"] for i in range(4)]  # 2 per second allowed
    assert len(results) == 4
    assert time.monotonic() - started >= 0.5  # it had to wait for the window at least once


def test_a_wait_longer_than_max_wait_raises(served):
    server, keys = served
    client = Client(server.url, api_key=keys["burst"], max_wait=0.0)
    with pytest.raises(RateLimitedError) as limited:
        for i in range(5):
            client.predict(f"too fast {i}")
    assert limited.value.retry_after is not None and limited.value.retry_after > 0


def test_cli_predict_and_embed(served):
    server, keys = served
    env = {**os.environ, "MLAPI_API_KEY": keys["main"]}
    mlapi = [sys.executable, "-m", "mlapi.cli.main"]
    predicted = subprocess.run(
        [*mlapi, "predict", "What a lovely day", "--url", server.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert predicted.returncode == 0, predicted.stderr
    assert '"result": "positive"' in predicted.stdout
    embedded = subprocess.run(
        [*mlapi, "embed", "hello", "--url", server.url], env=env, capture_output=True, text=True, timeout=120
    )
    assert embedded.returncode == 0 and embedded.stdout.count(",") == 383
    refused = subprocess.run(
        [*mlapi, "predict", "x", "--url", server.url, "--model", "nope"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 1 and "model_not_found" in refused.stderr
    keyless = {k: v for k, v in env.items() if k != "MLAPI_API_KEY"}
    missing = subprocess.run(
        [*mlapi, "predict", "x", "--url", server.url], env=keyless, capture_output=True, text=True, timeout=120
    )
    assert missing.returncode == 1 and "MLAPI_API_KEY" in missing.stderr
