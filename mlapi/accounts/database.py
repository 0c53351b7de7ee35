"""Engine and session handling for the store, independent of any web framework."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from mlapi.accounts.changes import watch_credentials


class Database:
    """One engine and a thread-scoped session factory, bound once per process."""

    def __init__(self, on_credentials_changed: Callable[[], None]) -> None:
        """``on_credentials_changed`` is called after each commit that revoked a key or changed a
        user (see mlapi.accounts.changes); whoever caches credentials decides what to do."""
        self._engine: Engine | None = None
        self.session: scoped_session[Session] = scoped_session(sessionmaker(expire_on_commit=False))
        watch_credentials(self.session.session_factory, on_credentials_changed)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("Database.bind(url) has not been called")
        return self._engine

    def bind(self, url: str) -> None:
        if self._engine is not None:
            self._engine.dispose()
        self._engine = make_engine(url)
        self.session.remove()
        self.session.configure(bind=self._engine)

    def release_connection(self) -> None:
        """End this thread's transaction, so that its connection goes back to the pool.

        Objects already loaded stay usable (``expire_on_commit=False``); the next query begins anew.
        A thread that has not touched the database (a cached credential) has nothing to release.
        """
        if self.session.registry.has() and self.session().in_transaction():
            self.session.commit()

    def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.session.remove()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 15}, pool_timeout=5)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # pool_pre_ping: a database restart must not surface as errors on the first requests after it.
    options: dict = {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 10, "pool_timeout": 5}
    if url.startswith("postgresql") and "connect_timeout" not in make_url(url).query:
        # An unreachable host (not a refused port) would otherwise hold a request for the kernel's
        # TCP timeout, minutes, before the 503.
        options["connect_args"] = {"connect_timeout": 5}
    return create_engine(url, **options)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 (DB-API objects are untyped)
    cursor = dbapi_connection.cursor()
    # WAL lets readers in other Gunicorn workers proceed while one worker writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()
