"""``mlapi predict`` and ``mlapi embed``: call a remote server with mlapi.client (no app needed)."""

from __future__ import annotations

import json
import sys

import click

from mlapi.client import Client, MlapiError


def _client(url: str, api_key: str | None) -> Client:
    if not api_key:
        raise click.ClickException("set MLAPI_API_KEY (or pass --api-key)")
    return Client(url, api_key=api_key)


def _run(call) -> None:  # noqa: ANN001 (a zero-argument callable)
    try:
        result = call()
    except MlapiError as exc:
        click.echo(json.dumps(exc.body), err=True)
        sys.exit(1)
    click.echo(json.dumps(result, indent=2))


url_option = click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="The server.")
key_option = click.option("--api-key", envvar="MLAPI_API_KEY", help="Defaults to $MLAPI_API_KEY.")


@click.command("predict")
@click.argument("text")
@click.option("--model", default=None)
@click.option("--model-version", default=None)
@url_option
@key_option
def predict(text: str, model: str | None, model_version: str | None, url: str, api_key: str | None) -> None:
    """Classify TEXT on a remote mlapi server; prints the JSON answer."""
    options = {k: v for k, v in {"model": model, "model_version": model_version}.items() if v}
    _run(lambda: _client(url, api_key).predict(text, **options))


@click.command("embed")
@click.argument("text")
@click.option("--model", default=None)
@url_option
@key_option
def embed(text: str, model: str | None, url: str, api_key: str | None) -> None:
    """Embed TEXT on a remote mlapi server; prints the vector as JSON."""
    _run(lambda: _client(url, api_key).embed(text, model)[0])
