from sqlalchemy import inspect

from mlapi.extensions import db
from tests.conftest import make_test_app


def test_db_upgrade_migrates_an_empty_database_and_reports(tmp_path):
    app = make_test_app(f"sqlite:///{tmp_path / 'empty.db'}", migrate=False)
    try:
        assert inspect(db.engine).get_table_names() == []
        result = app.test_cli_runner().invoke(args=["db", "upgrade"])
        tables = set(inspect(db.engine).get_table_names())
    finally:
        db.dispose()
    assert result.exit_code == 0, result.output
    assert "upgraded to head" in result.output
    assert {"alembic_version", "users", "api_keys", "revoked_tokens"} <= tables
