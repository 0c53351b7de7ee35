"""``mlapi bootstrap``: make a development instance usable at once (what ``make run`` calls)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from mlapi.accounts import user_accounts
from mlapi.cli.common import cli_actor
from mlapi.cli.model_commands import open_checked_store
from mlapi.extensions import db

DEMO_USERNAME = "demo_user"
DEMO_PASSWORD = "demo_password"


@click.command("bootstrap")
@with_appcontext
def bootstrap() -> None:
    """Check the model store, then create demo_user / demo_password (tier pro) when absent. Never in production."""
    if current_app.config["MLAPI_SETTINGS"].production:
        raise click.ClickException("bootstrap creates a demo account and is refused in production mode")
    store = open_checked_store()
    click.echo(f"model store {store.root}: " + ", ".join(f"{m.id}" for m in store.all()))
    if user_accounts.find_user(db.session, DEMO_USERNAME) is None:
        user_accounts.create_user(
            db.session, DEMO_USERNAME, DEMO_PASSWORD, tier="pro", full_name="Demo User", actor=cli_actor()
        )
        click.echo(f"created development user {DEMO_USERNAME} / {DEMO_PASSWORD} (tier pro)")
    else:
        click.echo(f"development user {DEMO_USERNAME} exists")
