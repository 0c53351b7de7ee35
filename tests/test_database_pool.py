"""Pooled database connections: a request gives its connection back once its credential is checked,
and a pool with none free answers 503, not 500."""

from contextlib import ExitStack

import pytest
from flask import Flask

from mlapi.extensions import api, db
from mlapi.web.auth import requires_auth
from mlapi.web.openapi import Blueprint


@pytest.fixture
def app(app: Flask) -> Flask:
    probe = Blueprint("pool_probe", __name__, url_prefix="/pool-probe")

    @probe.route("", methods=["GET"])
    @requires_auth(probe)
    def checked_out():
        # What a view that now waits on a model would hold.
        return {"checked_out": db.engine.pool.checkedout()}

    api.register_blueprint(probe)
    return app


@pytest.mark.parametrize("credential", ["key", "token"])
def test_the_connection_goes_back_to_the_pool_after_authentication(client, factory, credential):
    user = factory.user()
    headers = factory.key_headers(user) if credential == "key" else factory.token_headers(user)
    client.get("/pool-probe", headers=headers)  # a key's first use also records last_used_at, and commits
    response = client.get("/pool-probe", headers=headers)
    assert response.status_code == 200
    assert response.get_json() == {"checked_out": 0}


def test_an_exhausted_pool_is_503_database_unavailable(client, factory):
    headers = factory.key_headers(factory.user())
    pool = db.engine.pool
    with ExitStack() as held:
        for _ in range(pool.size() + pool._max_overflow):  # every connection the pool may open
            held.enter_context(db.engine.connect())
        response = client.get("/v1/users/me", headers=headers)  # waits the pool's 5 s timeout
    assert response.status_code == 503
    body = response.get_json()
    assert body["error"] == "database_unavailable" and response.headers["Retry-After"] == "1"
    assert client.get("/v1/users/me", headers=headers).status_code == 200
