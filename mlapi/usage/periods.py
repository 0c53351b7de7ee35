"""Calendar months in UTC: the period of a monthly quota and the default period of a usage report."""

from __future__ import annotations

from datetime import UTC, date, datetime


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month_start(day: date) -> date:
    return date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)


def reset_at(now: datetime) -> datetime:
    """When the month of ``now`` (UTC) ends and its quota starts again."""
    following = next_month_start(now.astimezone(UTC).date())
    return datetime(following.year, following.month, following.day, tzinfo=UTC)


def month_label(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"
