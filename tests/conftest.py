from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner

from mlapi import create_app
from mlapi.extensions import db
from mlapi.store.models import Base
from tests.services import fresh_postgres_database


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests configure the app explicitly; the developer's own MLAPI_* settings must not leak in."""
    for name in list(os.environ):
        if name.startswith("MLAPI_") and not name.startswith("MLAPI_TEST_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One fresh PostgreSQL database for this test run."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:  # noqa: ANN001
    """Parametrises a test over the embedded SQLite database and the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mlapi.db'}"
    return request.getfixturevalue("postgres_url")


def make_test_app(database_url: str, **overrides: str) -> Flask:
    app = create_app({"MLAPI_DATABASE_URL": database_url, **overrides})
    app.config["TESTING"] = True
    Base.metadata.drop_all(db.engine)
    Base.metadata.create_all(db.engine)
    return app


@pytest.fixture
def app(tmp_path) -> Iterator[Flask]:  # noqa: ANN001
    app = make_test_app(f"sqlite:///{tmp_path / 'mlapi.db'}")
    yield app
    db.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()
