"""``mlapi audit``: read the audit log of administrative actions."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from mlapi.accounts import audit
from mlapi.accounts.tables import AuditEvent
from mlapi.extensions import db

group = AppGroup("audit", help="Read the audit log of administrative actions.")


def _as_dict(event: AuditEvent) -> dict[str, object]:
    return {
        "id": event.id,
        "occurred_at": event.occurred_at.isoformat(),
        "actor": event.actor,
        "action": event.action,
        "target": event.target,
        "source": event.source,
        "actor_key_id": event.actor_key_id,
        "request_id": event.request_id,
        "ip_address": event.ip_address,
        "detail": event.detail,
    }


def _as_line(event: AuditEvent) -> str:
    detail = json.dumps(event.detail, sort_keys=True) if event.detail else "-"
    when = event.occurred_at.isoformat(timespec="seconds")
    # The acting key, where one acted, shows with the actor: alice[key 7].
    actor = event.actor if event.actor_key_id is None else f"{event.actor}[key {event.actor_key_id}]"
    return "\t".join((when, actor, event.action, event.target, event.source, detail))


@group.command("list")
@click.option(
    "--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="At most this many events."
)
@click.option("--action", type=click.Choice(audit.ACTIONS), default=None, help="Only this action.")
@click.option("--actor", default=None, help="Only this actor (a username, or cli:<OS user>).")
@click.option("--target", default=None, help="Only actions on this username.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of tab-separated fields.")
def list_(limit: int, action: str | None, actor: str | None, target: str | None, as_json: bool) -> None:
    """Newest first: time, actor, action, target, source, detail."""
    events, _ = audit.list_events(db.session, action=action, actor=actor, target=target, limit=limit)
    for event in events:
        click.echo(json.dumps(_as_dict(event)) if as_json else _as_line(event))
