"""``mlapi users``: create and administer accounts."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from mlapi.accounts import user_accounts
from mlapi.cli.common import cli_actor, store_errors_reported
from mlapi.config import TIERS
from mlapi.extensions import db

group = AppGroup("users", help="Create and administer users.")


@group.command("create")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help="Prompted if absent.")
@click.option("--tier", type=click.Choice(TIERS), default="free", show_default=True)
@click.option("--admin", "is_admin", is_flag=True, help="Grant the admin role.")
@click.option("--email", default=None)
@click.option("--full-name", default=None)
def create(username: str, password: str, tier: str, is_admin: bool, email: str | None, full_name: str | None) -> None:
    """Create user USERNAME."""
    with store_errors_reported():
        user = user_accounts.create_user(
            db.session,
            username,
            password,
            tier=tier,
            is_admin=is_admin,
            email=email,
            full_name=full_name,
            actor=cli_actor(),
        )
    click.echo(f"created user {user.username} (id {user.id}, tier {user.tier}{', admin' if user.is_admin else ''})")


@group.command("list")
def list_() -> None:
    """List every user."""
    users, _ = user_accounts.list_users(db.session)
    click.echo("id\tusername\ttier\tflags")
    for user in users:
        flags = ",".join(f for f, on in (("admin", user.is_admin), ("disabled", user.disabled)) if on)
        click.echo(f"{user.id}\t{user.username}\t{user.tier}\t{flags or '-'}")


@group.command("set-tier")
@click.argument("username")
@click.argument("tier", type=click.Choice(TIERS))
def set_tier(username: str, tier: str) -> None:
    """Move USERNAME to TIER; applies on their next request."""
    with store_errors_reported():
        user_accounts.update_user(db.session, username, tier=tier, actor=cli_actor())
    click.echo(f"{username} is now on tier {tier}")


@group.command("set-password")
@click.argument("username")
@click.option(
    "--password", prompt="New password", hide_input=True, confirmation_prompt=True, help="Prompted if absent."
)
@click.option("--revoke-keys", is_flag=True, help="Also revoke every API key of USERNAME.")
def set_password(username: str, password: str, revoke_keys: bool) -> None:
    """Set USERNAME's password and end every login session of theirs (API keys stay valid unless --revoke-keys)."""
    with store_errors_reported():
        user_accounts.change_password(db.session, username, password, revoke_api_keys=revoke_keys, actor=cli_actor())
    click.echo(
        f"password of {username} changed; their login sessions have ended"
        + ("; their API keys are revoked" if revoke_keys else "")
    )


@group.command("disable")
@click.argument("username")
def disable(username: str) -> None:
    """Refuse every token and key of USERNAME from the next request on; their login sessions end for good."""
    with store_errors_reported():
        user_accounts.update_user(db.session, username, disabled=True, actor=cli_actor())
    click.echo(f"{username} is disabled")


@group.command("enable")
@click.argument("username")
def enable(username: str) -> None:
    """Let USERNAME in again: their API keys work again, their old tokens do not (they log in anew)."""
    with store_errors_reported():
        user_accounts.update_user(db.session, username, disabled=False, actor=cli_actor())
    click.echo(f"{username} is enabled")
