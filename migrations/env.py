"""Alembic environment: runs on the connection that ``mlapi db`` hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

import mlapi.accounts.tables  # noqa: F401 (registers every table on the metadata)
from mlapi.accounts.tables import Base, UTCDateTime
from mlapi.config import load_settings

config = context.config
target_metadata = Base.metadata


def render_item(type_: str, obj: object, autogen_context: object) -> str | bool:
    """Write the store's column types as plain SQLAlchemy types, so migrations never import app code."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


MIGRATION_OPTIONS = {
    "target_metadata": target_metadata,
    "render_item": render_item,
    "compare_type": True,
    # SQLite cannot ALTER most things: batch mode copies the table instead.
    "render_as_batch": True,
}


def _database_url() -> str:
    url = load_settings().database_url
    if url is None:
        raise SystemExit("set MLAPI_DATABASE_URL, or run migrations with `mlapi db upgrade`")
    return url


def _run(connection: Connection) -> None:
    context.configure(connection=connection, **MIGRATION_OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=_database_url(), literal_binds=True, **MIGRATION_OPTIONS)
    with context.begin_transaction():
        context.run_migrations()
elif (shared := config.attributes.get("connection")) is not None:
    _run(shared)
else:  # a plain `alembic` invocation
    with create_engine(_database_url()).begin() as own_connection:
        _run(own_connection)
