"""The migrations and the models agree, on SQLite and on PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from mlapi.accounts.tables import Base
from mlapi.cli.db_commands import upgrade_database
from mlapi.extensions import db
from tests.conftest import make_test_app


def test_migrated_schema_matches_the_models(database_url):
    make_test_app(database_url, migrate=False)
    try:
        assert not inspect(db.engine).get_table_names()
        upgrade_database()
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        db.dispose()


def test_downgrade_to_base_and_back(database_url):
    app = make_test_app(database_url)
    runner = app.test_cli_runner()
    try:
        assert runner.invoke(args=["db", "downgrade", "base"]).exit_code == 0
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
        assert {"users", "api_keys", "revoked_tokens"} <= set(inspect(db.engine).get_table_names())
        current = runner.invoke(args=["db", "current"])
        assert current.exit_code == 0
    finally:
        db.dispose()
