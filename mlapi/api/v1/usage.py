"""`/v1/usage` (the caller's account) and `/v1/admin/usage` (every account, JSON or CSV for billing)."""

from __future__ import annotations

import re

import marshmallow as ma
from flask import Response, request

from mlapi.accounts import user_accounts
from mlapi.accounts.tables import utcnow
from mlapi.extensions import db
from mlapi.usage import rollups
from mlapi.usage.periods import month_start
from mlapi.web.auth import current_account, requires_auth
from mlapi.web.errors import APIError
from mlapi.web.metering import monthly_limit
from mlapi.web.openapi import Blueprint
from mlapi.web.state import app_state

blp = Blueprint(
    "usage",
    __name__,
    url_prefix="/v1",
    description="What an account used: requests, items, tokens and model time, by day, model or key.",
)

MAX_RANGE_DAYS = 400
CSV = "text/csv"
MAX_GROUP_BY_LENGTH = 64
# One answer's rows at most (a year of days per model and key, for every tenant, would not fit
# in memory): a larger report is asked for in pieces (a shorter period, one account, fewer groupings).
MAX_ROWS = 50_000


class _GroupBy(ma.fields.String):
    """One grouping, or several joined by commas (``account,model``)."""

    def __init__(self, choices: tuple[str, ...], default: str) -> None:
        self.choices = choices
        name = "(" + "|".join(choices) + ")"
        self.pattern = f"^{name}(,{name})*$"
        super().__init__(
            load_default=lambda: (default,),  # what _deserialize would make of it
            metadata={
                "pattern": self.pattern,
                "maxLength": MAX_GROUP_BY_LENGTH,
                "description": f"One of {', '.join(choices)}, or several joined by commas (such as "
                f"`{choices[0]},{choices[-1]}`): one row per combination.",
                "default": default,
            },
        )

    def _deserialize(self, value, attr, data, **kwargs):  # noqa: ANN001, ANN003, ANN202 (marshmallow's signature)
        text = super()._deserialize(value, attr, data, **kwargs)
        if len(text) > MAX_GROUP_BY_LENGTH or not re.fullmatch(self.pattern, text):
            raise ma.ValidationError(f"Expected names from {', '.join(self.choices)}, joined by commas.")
        return tuple(dict.fromkeys(text.split(",")))  # a name given twice groups once


class _PeriodArgs(ma.Schema):
    start = ma.fields.Date(metadata={"description": "First day (UTC), included. Default: the month's first day."})
    end = ma.fields.Date(metadata={"description": "Last day (UTC), included. Default: today."})

    @ma.post_load
    def period(self, data: dict, **_: object) -> dict:
        today = utcnow().date()
        end = data.get("end") or today
        start = data.get("start") or month_start(min(end, today))
        if end < start:
            raise ma.ValidationError("end must not come before start.", "end")
        if (end - start).days + 1 > MAX_RANGE_DAYS:
            raise ma.ValidationError(f"At most {MAX_RANGE_DAYS} days at a time.", "end")
        return {**data, "start": start, "end": end}


class UsageArgsSchema(_PeriodArgs):
    group_by = _GroupBy(("day", "model", "key"), "day")


class AdminUsageArgsSchema(_PeriodArgs):
    group_by = _GroupBy(rollups.GROUPINGS, "account")
    account = ma.fields.String(
        validate=ma.validate.Length(min=1, max=64), metadata={"description": "Only this username's usage."}
    )
    format = ma.fields.String(
        validate=ma.validate.OneOf(["json", "csv"]),
        metadata={"description": "csv: as `Accept: text/csv` does (for a link a browser downloads)."},
    )


class CountsSchema(ma.Schema):
    requests = ma.fields.Integer(required=True)
    items = ma.fields.Integer(required=True, metadata={"description": "What the quotas count."})
    cached_items = ma.fields.Integer(required=True, metadata={"description": "Items served from the cache."})
    tokens = ma.fields.Integer(required=True, metadata={"description": "Input tokens the models read."})
    model_ms = ma.fields.Float(required=True, metadata={"description": "Milliseconds of model time."})


class UsageRowSchema(CountsSchema):
    account = ma.fields.String(metadata={"description": "The username (admin reports)."})
    day = ma.fields.Date()
    model = ma.fields.String()
    key_id = ma.fields.Integer(allow_none=True, metadata={"description": "The API key; null for a password login."})
    session_id = ma.fields.String(allow_none=True, metadata={"description": "The password login's session."})


class QuotaSchema(ma.Schema):
    monthly_limit = ma.fields.Integer(required=True, allow_none=True, metadata={"description": "null: unlimited."})
    used = ma.fields.Integer(required=True, metadata={"description": "Items used this month (UTC)."})
    remaining = ma.fields.Integer(required=True, allow_none=True)
    resets_at = ma.fields.DateTime(required=True)


class UsageReportSchema(ma.Schema):
    start = ma.fields.Date(required=True)
    end = ma.fields.Date(required=True)
    group_by = ma.fields.String(required=True)
    data = ma.fields.List(ma.fields.Nested(UsageRowSchema), required=True)
    totals = ma.fields.Nested(CountsSchema, required=True)


class AccountUsageSchema(UsageReportSchema):
    quota = ma.fields.Nested(QuotaSchema, required=True)


def _report(args: dict, *, account_id: int | None) -> rollups.Report:
    try:
        return rollups.report(
            db.session, args["start"], args["end"], args["group_by"], account_id=account_id, max_rows=MAX_ROWS
        )
    except rollups.ReportTooLarge as exc:
        raise APIError(422, f"The report is too large: {exc}.", error="report_too_large") from None


def _envelope(report: rollups.Report) -> dict:
    return {
        "start": report.start,
        "end": report.end,
        "group_by": ",".join(report.group_by),
        "data": report.rows,
        "totals": report.totals,
    }


@blp.route("/usage", methods=["GET"])
@requires_auth(blp, scope="usage:read")
@blp.arguments(UsageArgsSchema, location="query")
@blp.response(200, AccountUsageSchema)
def account_usage(args: dict) -> dict:
    """The caller's account: its usage from `start` to `end` (UTC days, both included; at most 400
    days; default the current month so far), and its monthly quota.

    Every key and login of the account counts; figures are at most a few seconds behind."""
    account = current_account()
    report = _report(args, account_id=account.id)
    quota = app_state().quotas.state(account.id, monthly_limit(account), utcnow())
    return {
        **_envelope(report),
        "quota": {
            "monthly_limit": quota.limit,
            "used": quota.used,
            "remaining": quota.remaining,
            "resets_at": quota.resets_at,
        },
    }


@blp.route("/admin/usage", methods=["GET"])
@requires_auth(blp, admin=True)
@blp.arguments(AdminUsageArgsSchema, location="query")
@blp.response(200, UsageReportSchema, content_type="application/json")
@blp.alt_response(200, description="With `Accept: text/csv`: the rows as CSV, with a header row.", success=True)
@blp.alt_response(404, description="No such account.")
def admin_usage(args: dict) -> dict | Response:
    """Every account's usage (or one's, with `account`), grouped by account, day, model or key,
    or a combination: `group_by=account,model` answers "how many items did each account use, per
    model". `Accept: text/csv` (or `format=csv`) returns CSV for billing tools."""
    account_id = user_accounts.get_user(db.session, args["account"]).id if "account" in args else None
    report = _report(args, account_id=account_id)
    if args.get("format") == "csv" or (
        "format" not in args and request.accept_mimetypes.best_match(["application/json", CSV]) == CSV
    ):
        return csv_response(report)
    return _envelope(report)


def csv_response(report: rollups.Report) -> Response:
    filename = f"mlapi-usage-{report.start.isoformat()}-{report.end.isoformat()}.csv"
    return Response(
        rollups.as_csv(report), mimetype=CSV, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )
