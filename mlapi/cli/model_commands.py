"""``mlapi models``: the model store as the workers will load it (without loading any weights)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from mlapi.serving.errors import ManifestError
from mlapi.serving.store import ModelStore

group = AppGroup("models", help="Inspect the model store.")


def open_checked_store() -> ModelStore:
    """The store, with every manifest parsed and every weights location found; else one-line error."""
    try:
        store = ModelStore.open(current_app.config["MLAPI_SETTINGS"].model_dir)
        for manifest in store.all():
            manifest.weights_path()
    except ManifestError as exc:
        raise click.ClickException(str(exc)) from None
    return store


@group.command("list")
def list_() -> None:
    """Every model version: name, version, task, handler, weights ('*' marks what latest resolves to)."""
    store = open_checked_store()
    click.echo("name\tversion\ttask\thandler\tweights")
    for manifest in store.all():
        marker = "*" if store.latest[manifest.name] == manifest.version else " "
        click.echo(
            f"{manifest.name}\t{manifest.version}{marker}\t{manifest.task}\t{manifest.handler}\t{manifest.weights}"
        )
