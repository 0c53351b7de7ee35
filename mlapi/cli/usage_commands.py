"""``mlapi usage``: usage reports for billing, and pruning old rollups."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import click
from flask import current_app
from flask.cli import AppGroup

from mlapi.accounts import user_accounts
from mlapi.accounts.tables import utcnow
from mlapi.cli.common import store_errors_reported
from mlapi.extensions import db
from mlapi.usage import rollups
from mlapi.usage.periods import month_start

group = AppGroup("usage", help="Report usage per account, day, model or key; prune old rollups.")
# Flush ids only guard a retry of a flush whose outcome was unknown, which comes within seconds.
FLUSH_IDS_KEPT = timedelta(days=1)


class _Groupings(click.ParamType):
    name = "GROUPS"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        names = tuple(name.strip() for name in str(value).split(","))
        if any(name not in rollups.GROUPINGS for name in names) or len(set(names)) != len(names):
            self.fail(f"expected distinct names from {', '.join(rollups.GROUPINGS)}, joined by commas", param, ctx)
        return names


def _table(report: rollups.Report) -> str:
    header = report.columns
    cells = [["-" if row[c] is None else str(row[c]) for c in header] for row in report.rows]
    totals = ["total", *[""] * (len(header) - len(rollups.COUNTERS) - 1), *map(str, report.totals.values())]
    widths = [max(len(line[i]) for line in [header, *cells, totals]) for i in range(len(header))]
    lines = [
        "  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)).rstrip()
        for line in [header, *cells, totals]
    ]
    return "\n".join(lines)


@group.command("report")
@click.option(
    "--start", type=click.DateTime(["%Y-%m-%d"]), default=None, help="First day (UTC). Default: this month's first."
)
@click.option(
    "--end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Last day (UTC), included. Default: today."
)
@click.option(
    "--by",
    "group_by",
    type=_Groupings(),
    default="account",
    show_default=True,
    help="account, day, model or key, or several joined by commas (account,model).",
)
@click.option("--account", default=None, help="Only this username's usage.")
@click.option("--format", "output", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
def report(
    start: datetime | None, end: datetime | None, group_by: tuple[str, ...], account: str | None, output: str
) -> None:
    """Requests, items, cached items, tokens and model time per group, from START to END."""
    last: date = end.date() if end else utcnow().date()
    first: date = start.date() if start else month_start(last)
    if last < first:
        raise click.BadParameter("--end must not come before --start")
    with store_errors_reported():
        account_id = user_accounts.get_user(db.session, account).id if account else None
    found = rollups.report(db.session, first, last, group_by, account_id=account_id)
    if output == "csv":
        click.echo(rollups.as_csv(found), nl=False)
    elif output == "json":
        body = {"start": first.isoformat(), "end": last.isoformat(), "group_by": ",".join(group_by)}
        click.echo(json.dumps({**body, "data": found.rows, "totals": found.totals}, indent=2, default=str))
    else:
        click.echo(_table(found))


@group.command("prune")
@click.option(
    "--older-than-days",
    type=click.IntRange(1, 36500),
    default=None,
    help="Default: MLAPI_USAGE_RETENTION_DAYS (400).",
)
def prune(older_than_days: int | None) -> None:
    """Drop the usage rollups of days older than the retention period (never this month's or last month's)."""
    days = older_than_days or current_app.config["MLAPI_SETTINGS"].usage_retention_days
    today = utcnow().date()
    # Never this month or the last: they are the bill being prepared, and what the quotas count.
    before = min(today - timedelta(days=days), month_start(month_start(today) - timedelta(days=1)))
    dropped = rollups.prune(db.session, before)
    rollups.prune_flushes(db.session, utcnow() - FLUSH_IDS_KEPT)
    click.echo(f"dropped {dropped} usage rollup rows of days before {before.isoformat()}")
