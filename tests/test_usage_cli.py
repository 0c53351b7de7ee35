"""``mlapi usage report | prune`` and ``mlapi users set-quota``, on the real store."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, timedelta

import pytest
from sqlalchemy.orm import Session

from mlapi.accounts import user_accounts
from mlapi.accounts.tables import utcnow
from mlapi.extensions import db
from mlapi.usage import rollups
from mlapi.usage.rollups import Cell, Counts

TODAY = utcnow().date()


@pytest.fixture
def usage(app, factory):
    """Alice used sentiment on two days and minilm today; bob used sentiment today."""
    alice, bob = factory.user("alice", tier="pro"), factory.user("bob")
    old = TODAY - timedelta(days=500)
    cells = {
        Cell(alice.id, TODAY, "key:1", "sentiment", "1.1", "predict"): Counts(3, 5, 1, 40, 12.5),
        Cell(alice.id, TODAY, "key:1", "minilm", "1.0", "embeddings"): Counts(1, 2, 0, 10, 3.0),
        Cell(alice.id, TODAY - timedelta(days=1), "session:abc", "sentiment", "1.1", "batch"): Counts(1, 4, 0, 30, 8.0),
        Cell(bob.id, TODAY, "key:2", "sentiment", "1.0", "v2"): Counts(2, 2, 0, 12, 4.0),
        Cell(bob.id, old, "key:2", "sentiment", "1.0", "v2"): Counts(7, 7, 0, 70, 9.0),
    }
    with Session(db.engine) as session:
        rollups.add(session, "fixture", cells)
    return old


def invoke(runner, *args):
    result = runner.invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_report_per_account_and_model_as_csv(runner, usage):
    start = (TODAY - timedelta(days=1)).isoformat()
    out = invoke(runner, "usage", "report", "--start", start, "--by", "account,model", "--format", "csv")
    rows = [(r["account"], r["model"], r["requests"], r["items"]) for r in csv.DictReader(io.StringIO(out))]
    assert rows == [("alice", "minilm", "1", "2"), ("alice", "sentiment", "4", "9"), ("bob", "sentiment", "2", "2")]


def test_report_as_json_and_as_a_table(runner, usage):
    start = (TODAY - timedelta(days=1)).isoformat()
    body = json.loads(
        invoke(runner, "usage", "report", "--start", start, "--by", "day", "--account", "alice", "--format", "json")
    )
    assert [(row["day"], row["items"]) for row in body["data"]] == [(start, 4), (TODAY.isoformat(), 7)]
    assert body["totals"]["items"] == 11 and body["group_by"] == "day"

    table = invoke(runner, "usage", "report", "--start", start, "--by", "key").splitlines()
    assert table[0].split() == ["key_id", "session_id", "requests", "items", "cached_items", "tokens", "model_ms"]
    assert table[-1].split()[:3] == ["total", "7", "13"]


def test_report_refuses_bad_options(runner, usage):
    assert runner.invoke(args=["usage", "report", "--by", "tier"]).exit_code == 2
    assert runner.invoke(args=["usage", "report", "--start", "2026-02-30"]).exit_code == 2
    assert runner.invoke(args=["usage", "report", "--start", "2026-03-02", "--end", "2026-03-01"]).exit_code == 2
    unknown = runner.invoke(args=["usage", "report", "--account", "nobody"])
    assert unknown.exit_code == 1 and "no user 'nobody'" in unknown.output


def test_prune_drops_what_is_older_than_the_retention(runner, usage):
    out = invoke(runner, "usage", "prune")
    assert out.startswith("dropped 1 usage rollup rows")
    everything = rollups.report(db.session, date(2000, 1, 1), TODAY, ("day",))
    assert usage.isoformat() not in {row["day"].isoformat() for row in everything.rows}
    assert everything.totals["items"] == 13
    # A day is older than 1 day from the day before yesterday on: yesterday's row stays.
    assert invoke(runner, "usage", "prune", "--older-than-days", "1").startswith("dropped 0 ")


def test_set_quota_sets_and_clears_the_accounts_own_limits(runner, factory):
    factory.user("carol")
    assert "monthly quota 900 items, rate limit 50/minute" in invoke(
        runner, "users", "set-quota", "carol", "--monthly", "900", "--rate-limit", "50/minute"
    )
    carol = user_accounts.get_user(db.session, "carol")
    assert (carol.monthly_quota, carol.rate_limit) == (900, "50/minute")
    invoke(runner, "users", "set-quota", "carol", "--monthly", "tier-default")
    db.session.expire_all()
    carol = user_accounts.get_user(db.session, "carol")
    assert (carol.monthly_quota, carol.rate_limit) == (None, "50/minute")


@pytest.mark.parametrize(
    "args",
    [
        ["carol"],
        ["carol", "--tier-default", "--monthly", "5"],
        ["carol", "--monthly", "lots"],
        ["carol", "--monthly", "-5"],
        ["carol", "--rate-limit", "often"],
        ["nobody", "--monthly", "5"],
    ],
)
def test_set_quota_refuses_bad_values(runner, factory, args):
    factory.user("carol")
    result = runner.invoke(args=["users", "set-quota", *args])
    assert result.exit_code != 0
    carol = user_accounts.get_user(db.session, "carol")
    assert (carol.monthly_quota, carol.rate_limit) == (None, None)
