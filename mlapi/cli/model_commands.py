"""``mlapi models``: the model store as the workers will load it (without loading any weights)."""

from __future__ import annotations

import json
import time

import click
from flask import current_app
from flask.cli import AppGroup

from mlapi.cli.remote import _client, key_option, url_option
from mlapi.client import MlapiError
from mlapi.serving.errors import ManifestError
from mlapi.serving.store import ModelStore

group = AppGroup("models", help="Inspect the model store; reload a running server's models.")
RELOAD_POLL_S = 0.5
MAX_RELOAD_POLL_S = 8.0


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


@group.command("reload")
@url_option
@key_option
@click.option("--timeout", type=click.FloatRange(1, 3600), default=300, show_default=True, help="Seconds to wait.")
def reload(url: str, api_key: str | None, timeout: float) -> None:
    """Make every worker of the server at --url read its model store again (an admin's API key, with
    the admin scope); waits until each is done. Exit status 1 if a worker failed (the models loaded
    before keep serving) or the wait ran out."""
    client = _client(url, api_key)
    try:
        reload_id = client.reload_models()
        deadline = time.monotonic() + timeout
        status = client.reload_status(reload_id)
        pause = RELOAD_POLL_S
        while status["state"] == "pending" and time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(pause * 2, MAX_RELOAD_POLL_S)  # few calls against the admin's own rate limit
            status = client.reload_status(reload_id)
    except MlapiError as exc:
        raise click.ClickException(json.dumps(exc.body)) from None
    click.echo(json.dumps(status, indent=2))
    if status["state"] != "done":
        raise SystemExit(1)
