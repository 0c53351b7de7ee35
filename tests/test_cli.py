from sqlalchemy import inspect

from mlapi.extensions import db


def test_db_upgrade_migrates_and_reports(runner):
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "upgraded to head" in result.output
    assert "alembic_version" in inspect(db.engine).get_table_names()
