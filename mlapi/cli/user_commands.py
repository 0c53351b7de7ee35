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


TIER_DEFAULT = "tier-default"


@group.command("set-quota")
@click.argument("username")
@click.option("--monthly", default=None, metavar="ITEMS|tier-default", help="Items per calendar month (UTC).")
@click.option("--rate-limit", default=None, metavar="LIMIT|tier-default", help="Such as 500/minute.")
@click.option("--tier-default", "tier_default", is_flag=True, help="Both back to the tier's.")
def set_quota(username: str, monthly: str | None, rate_limit: str | None, tier_default: bool) -> None:
    """Give USERNAME a monthly quota or rate limit of their own, or their tier's again; applies on their
    next request, on every worker."""
    if tier_default == (monthly is not None or rate_limit is not None):
        raise click.UsageError("give --monthly and/or --rate-limit, or --tier-default alone")
    changes: dict[str, int | str | None] = {}
    if tier_default:
        changes = {"monthly_quota": None, "rate_limit": None}
    if monthly is not None:
        try:
            changes["monthly_quota"] = None if monthly == TIER_DEFAULT else int(monthly)
        except ValueError:
            raise click.BadParameter(
                f"expected a whole number of items or {TIER_DEFAULT}", param_hint="--monthly"
            ) from None
    if rate_limit is not None:
        changes["rate_limit"] = None if rate_limit == TIER_DEFAULT else rate_limit
    with store_errors_reported():
        user = user_accounts.update_user(db.session, username, **changes, actor=cli_actor())
    monthly_shown = "the tier's" if user.monthly_quota is None else f"{user.monthly_quota} items"
    rate_shown = user.rate_limit or "the tier's"
    click.echo(f"{username}: monthly quota {monthly_shown}, rate limit {rate_shown}")


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
