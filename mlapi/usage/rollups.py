"""The daily usage rollups: add a worker's counts exactly once, and report on them.

A cell is one account's use of one model version through one endpoint family with one credential
on one UTC day; its counters only ever grow, by upserts (``INSERT ... ON CONFLICT DO UPDATE``), so
any number of workers and instances add to one row without reading it first.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mlapi.accounts.tables import UsageFlush, UsageRollup, User

# What a report may group by; "key" is the credential (an API key, or a password login's session).
GROUPINGS = ("account", "day", "model", "key")
COUNTERS = ("requests", "items", "cached_items", "tokens", "model_ms")
_CELL_COLUMNS = ("account_id", "day", "credential", "model", "model_version", "family")
ROWS_PER_STATEMENT = 80


@dataclass(frozen=True, order=True)
class Cell:
    account_id: int
    day: date
    credential: str  # key:<id> or session:<login session id>
    model: str
    model_version: str
    family: str


@dataclass
class Counts:
    requests: int = 0
    items: int = 0
    cached_items: int = 0
    tokens: int = 0
    model_ms: float = 0.0

    def add(self, other: Counts) -> None:
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))


# The databases whose upsert (INSERT ... ON CONFLICT DO UPDATE) the rollups use.
DIALECTS = ("postgresql", "sqlite")


def _insert_for(session: Session):  # noqa: ANN202 (the dialect's insert construct)
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def add(session: Session, flush_id: str, cells: Mapping[Cell, Counts], *, commit: bool = True) -> bool:
    """Add ``cells`` to the rollups in one transaction, recorded as flush ``flush_id``.

    False (and nothing added) when that flush had already committed: a retry of a flush whose
    commit failed with its outcome unknown adds nothing twice. With ``commit=False`` the caller
    commits (and learns then whether it failed).
    """
    session.add(UsageFlush(id=flush_id))
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        return False
    # Sorted: two flushes touching the same rows lock them in one order, and never deadlock.
    rows = [
        {**dict(zip(_CELL_COLUMNS, astuple(cell), strict=True)), **counts.__dict__}
        for cell, counts in sorted(cells.items())
    ]
    insert_for, table = _insert_for(session), UsageRollup.__table__
    # In chunks: a statement holds at most 999 parameters on older SQLite builds (11 per row here).
    for first in range(0, len(rows), ROWS_PER_STATEMENT):
        insert = insert_for(UsageRollup).values(rows[first : first + ROWS_PER_STATEMENT])
        session.execute(
            insert.on_conflict_do_update(
                index_elements=list(_CELL_COLUMNS),
                set_={name: table.c[name] + insert.excluded[name] for name in COUNTERS},
            )
        )
    if commit:
        session.commit()
    return True


def items_since(session: Session, account_id: int, since: date) -> int:
    """Items the account used from ``since`` (a month's first day) on, as flushed so far."""
    total = session.scalar(
        select(func.coalesce(func.sum(UsageRollup.items), 0)).where(
            UsageRollup.account_id == account_id, UsageRollup.day >= since
        )
    )
    return int(total or 0)


def items_by_account_since(session: Session, since: date) -> list[tuple[int, str, int | None, int]]:
    """(account id, tier, own monthly quota, items) of each account with usage from ``since`` on."""
    rows = session.execute(
        select(User.id, User.tier, User.monthly_quota, func.sum(UsageRollup.items))
        .join_from(UsageRollup, User, UsageRollup.account_id == User.id)
        .where(UsageRollup.day >= since)
        .group_by(User.id, User.tier, User.monthly_quota)
    ).all()
    return [(account_id, tier, quota, int(items)) for account_id, tier, quota, items in rows]


@dataclass(frozen=True)
class Report:
    start: date
    end: date
    group_by: tuple[str, ...]
    rows: list[dict[str, Any]]
    totals: dict[str, int | float]

    @property
    def columns(self) -> list[str]:
        return [*group_columns(self.group_by), *COUNTERS]


def group_columns(group_by: Sequence[str]) -> list[str]:
    """The columns that name a group, in report order."""
    names = {"account": ["account"], "day": ["day"], "model": ["model"], "key": ["key_id", "session_id"]}
    return [column for grouping in group_by for column in names[grouping]]


class ReportTooLarge(ValueError):
    """More rows than the caller will take: a narrower period or fewer groupings."""


def report(
    session: Session,
    start: date,
    end: date,
    group_by: Sequence[str],
    *,
    account_id: int | None = None,
    max_rows: int | None = None,
) -> Report:
    """Usage from ``start`` to ``end`` (both included), one row per group, ordered by the groups;
    ``ReportTooLarge`` past ``max_rows``."""
    unknown = [g for g in group_by if g not in GROUPINGS]
    if unknown or not group_by or len(set(group_by)) != len(group_by):
        raise ValueError(f"group_by takes distinct names from {', '.join(GROUPINGS)}")
    dimensions = {
        "account": User.username,
        "day": UsageRollup.day,
        "model": UsageRollup.model,
        "key": UsageRollup.credential,
    }
    chosen = [dimensions[name].label(name) for name in group_by]
    sums = [func.sum(getattr(UsageRollup, name)).label(name) for name in COUNTERS]
    query: Select = select(*chosen, *sums).where(UsageRollup.day >= start, UsageRollup.day <= end)
    if "account" in group_by:
        query = query.join_from(UsageRollup, User, UsageRollup.account_id == User.id)
    if account_id is not None:
        query = query.where(UsageRollup.account_id == account_id)
    query = query.group_by(*(dimensions[name] for name in group_by)).order_by(*(dimensions[n] for n in group_by))
    if max_rows is not None:
        query = query.limit(max_rows + 1)
    rows = [_row(group_by, row._mapping) for row in session.execute(query)]
    if max_rows is not None and len(rows) > max_rows:
        raise ReportTooLarge(f"more than {max_rows} rows; ask for a shorter period or fewer groupings")
    totals: dict[str, int | float] = {name: 0 for name in COUNTERS}
    for row in rows:
        for name in COUNTERS:
            totals[name] += row[name]
    totals["model_ms"] = round(totals["model_ms"], 3)
    return Report(start, end, tuple(group_by), rows, totals)


def _row(group_by: Iterable[str], values: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name in group_by:
        if name == "key":
            kind, _, ident = values["key"].partition(":")
            row["key_id"] = int(ident) if kind == "key" else None
            row["session_id"] = ident if kind == "session" else None
        else:
            row[name] = values[name]
    for name in COUNTERS:
        value = values[name] or 0
        row[name] = round(float(value), 3) if name == "model_ms" else int(value)
    return row


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def as_csv(report: Report) -> str:
    """The report's rows under a header row; no totals row, so that every row is one group."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(report.columns)
    for row in report.rows:
        writer.writerow([_csv_cell(row[column]) for column in report.columns])
    return out.getvalue()


def _csv_cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def prune(session: Session, before: date) -> int:
    """Drop the rollups of days before ``before``; returns how many rows went."""
    result = session.execute(delete(UsageRollup).where(UsageRollup.day < before))
    session.commit()
    return result.rowcount or 0


def prune_flushes(session: Session, before: datetime) -> int:
    """Forget flush ids recorded before ``before`` (they only guard retries, which come within minutes)."""
    result = session.execute(delete(UsageFlush).where(UsageFlush.flushed_at < before))
    session.commit()
    return result.rowcount or 0
