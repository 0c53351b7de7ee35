from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import text

from mlapi.accounts import passwords
from mlapi.accounts.tables import Base
from mlapi.app import create_app
from mlapi.cli.db_commands import upgrade_database
from mlapi.extensions import db
from tests.factories import Factory
from tests.services import fresh_postgres_database

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "models"

# Cheap argon2 parameters, for tests only: production uses argon2-cffi's RFC 9106 defaults.
TEST_HASHER = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


@pytest.fixture(autouse=True, scope="session")
def cheap_password_hashing() -> Iterator[None]:
    passwords.use_hasher(TEST_HASHER)
    yield
    passwords.use_hasher(PasswordHasher())


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests configure the app explicitly; the developer's own MLAPI_* settings must not leak in."""
    for name in list(os.environ):
        if name.startswith("MLAPI_") and not name.startswith("MLAPI_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MLAPI_MODEL_DIR", str(MODEL_DIR))
    # Models are never downloaded at run time.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One fresh PostgreSQL database for this test run."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """Parametrises a test over the embedded SQLite database and the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mlapi.db'}"
    return request.getfixturevalue("postgres_url")


def make_test_app(database_url: str, *, migrate: bool = True, load_models: bool = True, **overrides: str) -> Flask:
    """An app on an empty database (emptied first), migrated to head by the real migrations."""
    app = create_app({"MLAPI_DATABASE_URL": database_url, **overrides}, load_models=load_models)
    app.config["TESTING"] = True
    Base.metadata.drop_all(db.engine)
    with db.engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    if migrate:
        upgrade_database()
    return app


@pytest.fixture
def app(tmp_path) -> Iterator[Flask]:
    app = make_test_app(f"sqlite:///{tmp_path / 'mlapi.db'}")
    yield app
    db.dispose()


@pytest.fixture
def db_app(database_url: str) -> Iterator[Flask]:
    """Like ``app``, once on SQLite and once on the PostgreSQL server."""
    app = make_test_app(database_url)
    yield app
    db.dispose()


@pytest.fixture
def uncached_app(tmp_path) -> Iterator[Flask]:
    """Like ``app``, without the prediction cache: for tests that compare fresh model outputs."""
    app = make_test_app(f"sqlite:///{tmp_path / 'mlapi.db'}", MLAPI_CACHE_TTL_S="0")
    yield app
    db.dispose()


@pytest.fixture
def factory(app: Flask) -> Factory:
    return Factory(app)


@pytest.fixture
def db_factory(db_app: Flask) -> Factory:
    return Factory(db_app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()
