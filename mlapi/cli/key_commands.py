"""``mlapi keys``: API keys on behalf of a user."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from mlapi.accounts import api_keys, user_accounts
from mlapi.accounts.tables import ALL_MODELS, DEFAULT_SCOPES, SCOPES
from mlapi.cli.common import cli_actor, store_errors_reported
from mlapi.extensions import db

group = AppGroup("keys", help="Create, list and revoke API keys.")


def _date(value) -> str:  # noqa: ANN001 (datetime or None)
    return value.isoformat(timespec="seconds") if value else "-"


@group.command("create")
@click.argument("username")
@click.option("--label", default="cli", show_default=True)
@click.option("--expires-in-days", type=click.IntRange(1, 3650), default=None)
@click.option(
    "--scope",
    "scopes",
    type=click.Choice(SCOPES),
    multiple=True,
    help=f"What the key may do; repeat for several. Default: {', '.join(DEFAULT_SCOPES)}.",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="NAME",
    help=f"A model the key may use; repeat for several. Default: every model ({ALL_MODELS}).",
)
def create(
    username: str, label: str, expires_in_days: int | None, scopes: tuple[str, ...], models: tuple[str, ...]
) -> None:
    """Create a key for USERNAME and print it (once: only its hash is kept).

    Only the key goes to stdout, so that `KEY=$(mlapi keys create NAME)` captures it; its id,
    label, scopes, models and expiry go to stderr.
    """
    with store_errors_reported():
        owner = user_accounts.get_user(db.session, username)
        record, key = api_keys.create_api_key(
            db.session,
            owner,
            label,
            expires_in_days,
            scopes=scopes or DEFAULT_SCOPES,
            models=models or (ALL_MODELS,),
            actor=cli_actor(),
        )
    click.echo(key)
    click.echo(
        f"key id {record.id}, label {record.label!r}, scopes {' '.join(record.scopes)}, "
        f"models {' '.join(record.models)}, expires {_date(record.expires_at)}",
        err=True,
    )


@group.command("list")
@click.argument("username")
def list_(username: str) -> None:
    """List USERNAME's keys (id, prefix, label, dates, scopes, models, the key that created it)."""
    with store_errors_reported():
        owner = user_accounts.get_user(db.session, username)
    click.echo("id\tprefix\tlabel\tcreated\texpires\tlast_used\trevoked\tscopes\tmodels\tparent")
    for k in api_keys.list_api_keys(db.session, owner):
        dates = "\t".join(_date(d) for d in (k.created_at, k.expires_at, k.last_used_at, k.revoked_at))
        grant = f"{','.join(k.scopes)}\t{','.join(k.models)}\t{k.parent_key_id or '-'}"
        click.echo(f"{k.id}\t{k.prefix}…\t{k.label}\t{dates}\t{grant}")


@group.command("revoke")
@click.argument("key_id", type=int)
def revoke(key_id: int) -> None:
    """Revoke key KEY_ID and the keys created from it: at once everywhere, or within
    MLAPI_CREDENTIAL_CACHE_TTL_S if it cannot be broadcast."""
    with store_errors_reported():
        revoked = api_keys.revoke_api_key(db.session, key_id, actor=cli_actor())
    created_from = len([key for key in revoked if key.id != key_id])
    click.echo(f"key {key_id} revoked" + (f", with {created_from} key(s) created from it" if created_from else ""))
