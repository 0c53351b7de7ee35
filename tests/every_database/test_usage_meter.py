"""The usage meter adds every count to the rollups exactly once, through database failures,
on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from mlapi.extensions import db
from mlapi.usage import rollups
from mlapi.usage.meter import UsageMeter
from mlapi.usage.rollups import Cell, Counts
from tests.conftest import make_test_app
from tests.factories import Factory

DAY = date(2026, 12, 5)


@pytest.fixture
def app(database_url):
    app = make_test_app(database_url, load_models=False)
    yield app
    db.dispose()


@pytest.fixture
def account_id(app) -> int:
    return Factory(app).user("metered").id


class CommitThenLoseTheConnection(Session):
    """A COMMIT that reaches the database, whose answer never comes back: the outcome is unknown."""

    def commit(self) -> None:
        super().commit()
        raise OperationalError("COMMIT", {}, ConnectionResetError("connection lost after COMMIT"))


class Sessions:
    """What the meter opens: the real database, or a failure the test chooses."""

    def __init__(self) -> None:
        self.failure: str | None = None

    def __call__(self) -> Session:
        if self.failure == "unreachable":
            return Session(create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"))
        if self.failure == "commit_lost":
            return CommitThenLoseTheConnection(db.engine)
        return Session(db.engine)


def cell(account_id: int, model: str = "sentiment") -> Cell:
    return Cell(account_id, DAY, "key:1", model, "1.1", "predict")


def stored(account_id: int) -> dict:
    with Session(db.engine) as session:
        report = rollups.report(session, DAY, DAY, ("model",), account_id=account_id)
    return {row["model"]: (row["requests"], row["items"]) for row in report.rows}


def test_a_flush_whose_commit_was_lost_is_not_counted_twice(account_id):
    sessions = Sessions()
    meter = UsageMeter(sessions, interval_s=60)
    meter.record(cell(account_id), Counts(1, 3))
    sessions.failure = "commit_lost"
    assert meter.flush() is False
    assert meter.unflushed_items(account_id, DAY) == 3  # in doubt: still counted against the quota here
    meter.record(cell(account_id), Counts(1, 2))

    sessions.failure = None
    assert meter.flush() is True
    assert stored(account_id) == {"sentiment": (2, 5)}
    assert meter.unflushed_items(account_id, DAY) == 0


def test_counts_wait_in_memory_while_the_database_is_unreachable(account_id):
    sessions = Sessions()
    meter = UsageMeter(sessions, interval_s=60)
    sessions.failure = "unreachable"
    meter.record(cell(account_id), Counts(1, 1))
    assert meter.flush() is False
    meter.record(cell(account_id), Counts(1, 4))
    meter.record(cell(account_id, "minilm"), Counts(1, 2))
    assert meter.flush() is False
    assert meter.unflushed_items(account_id, DAY) == 7

    sessions.failure = None
    assert meter.flush() is True
    assert stored(account_id) == {"sentiment": (2, 5), "minilm": (1, 2)}
    assert meter.flush() is True and stored(account_id) == {"sentiment": (2, 5), "minilm": (1, 2)}


def test_a_flush_id_is_applied_once(account_id):
    cells = {cell(account_id): Counts(1, 3)}
    with Session(db.engine) as session:
        assert rollups.add(session, "flush-1", cells) is True
        assert rollups.add(session, "flush-1", cells) is False
        assert rollups.add(session, "flush-2", cells) is True
    assert stored(account_id) == {"sentiment": (2, 6)}


def test_close_flushes_what_is_left_and_stops_the_thread(account_id):
    meter = UsageMeter(Sessions(), interval_s=10)
    meter.record(cell(account_id), Counts(1, 2))
    thread = meter._thread
    assert thread is not None and thread.is_alive()
    meter.close()
    assert not thread.is_alive()
    assert stored(account_id) == {"sentiment": (1, 2)}


def test_a_count_the_database_refuses_for_good_is_dropped_alone(account_id, caplog):
    meter = UsageMeter(Sessions(), interval_s=60)
    meter.record(cell(account_id), Counts(1, 3))
    meter.record(cell(account_id + 1000), Counts(1, 9))  # no such account: a foreign key refuses it
    meter.record(cell(account_id, "minilm"), Counts(1, 2))
    assert meter.flush() is True
    assert stored(account_id) == {"sentiment": (1, 3), "minilm": (1, 2)}
    assert "refuses it for good" in caplog.text
    meter.record(cell(account_id), Counts(1, 1))
    assert meter.flush() is True and stored(account_id) == {"sentiment": (2, 4), "minilm": (1, 2)}


def test_many_cells_flush_in_one_transaction(app):
    factory = Factory(app)
    accounts = [factory.user(f"many{i}").id for i in range(3)]
    meter = UsageMeter(Sessions(), interval_s=60)
    for i in range(1500):  # more parameters than one SQLite statement takes
        meter.record(Cell(accounts[i % 3], DAY, f"key:{i}", "sentiment", "1.1", "predict"), Counts(1, 2))
    assert meter.flush() is True
    with Session(db.engine) as session:
        assert rollups.report(session, DAY, DAY, ("day",)).totals["items"] == 3000
