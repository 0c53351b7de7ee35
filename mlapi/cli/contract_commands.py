"""``mlapi contract``: write the /v1 OpenAPI snapshot (only to accept a change on purpose), or check the
app against it."""

from __future__ import annotations

import json
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from mlapi.contract import breaking_changes, render, versioned_document
from mlapi.extensions import api

# Relative to the directory the command runs in: the repository root.
SNAPSHOT = Path("contracts/openapi-v1.json")

group = AppGroup("contract", help="The /v1 API contract: its OpenAPI snapshot and the check against it.")


def current_document() -> dict:
    """The /v1 part of the OpenAPI document this app serves at /v1/openapi.json."""
    return versioned_document(api.spec.to_dict())


@group.command("snapshot")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=SNAPSHOT,
    show_default=True,
    help="Where to write the snapshot.",
)
def snapshot(output: Path) -> None:
    """Write the /v1 OpenAPI document as the contract every later version is checked against."""
    if current_app.config["MLAPI_SETTINGS"].deprecated_versions:
        # They mark operations deprecated: a deployment's schedule, not part of the contract.
        raise click.ClickException("unset MLAPI_DEPRECATED_VERSIONS: the snapshot must not depend on the deployment")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(current_document()), encoding="ascii")
    click.echo(f"wrote {output}")


@group.command("check")
@click.option(
    "--snapshot",
    "snapshot_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=SNAPSHOT,
    show_default=True,
    help="The snapshot to check against.",
)
def check(snapshot_path: Path) -> None:
    """List each breaking change from the snapshot to this app and exit 1 if any; additions pass."""
    try:
        contract = json.loads(snapshot_path.read_text(encoding="utf-8"))
        if not isinstance(contract, dict) or not isinstance(contract.get("paths"), dict):
            raise ValueError("not an OpenAPI document (no 'paths' object)")
        changes = breaking_changes(contract, current_document())
    except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise click.ClickException(f"{snapshot_path}: {exc}") from None
    for change in changes:
        click.echo(change)
    if changes:
        raise click.ClickException(
            f"{len(changes)} breaking change(s) to the /v1 contract; if intended, run `mlapi contract snapshot`"
        )
    click.echo(f"no breaking change to the /v1 contract in {snapshot_path}")
