"""The ``mlapi`` admin command: a Flask CLI group over ``mlapi.app.create_app`` (``flask --app wsgi``
gives the same commands)."""

from __future__ import annotations

import os
import sys

import click
from flask import Flask
from flask.cli import FlaskGroup

from mlapi import __version__
from mlapi.config import ConfigError


def _create_app() -> Flask:
    from mlapi.app import create_app

    # Admin commands never need the model weights (nor torch) in memory. An operator at a terminal
    # wants the command's answer, not the server's start-up notes: warnings only, unless asked.
    quiet = {} if "MLAPI_LOG_LEVEL" in os.environ else {"MLAPI_LOG_LEVEL": "WARNING"}
    app = create_app(quiet, load_models=False)
    _warn_of_unbroadcast_changes(app)
    return app


def _warn_of_unbroadcast_changes(app: Flask) -> None:
    """A credential change made here that did not reach Redis is announced, never claimed done everywhere."""
    from mlapi.web.credential_cache import broadcast_change
    from mlapi.web.state import state_of

    credentials = state_of(app).credentials
    bound_s = app.config["MLAPI_SETTINGS"].credential_cache_ttl_s

    def changed() -> None:
        warning = broadcast_change(credentials, bound_s)
        if warning is not None:
            click.echo(f"warning: {warning}", err=True)

    state_of(app).on_credentials_changed = changed


@click.group(
    cls=FlaskGroup, create_app=_create_app, add_default_commands=False, add_version_option=False, load_dotenv=False
)
@click.version_option(__version__, prog_name="mlapi", message="%(prog)s %(version)s")
def cli() -> None:
    """Administer mlapi: database migrations, users and API keys."""


def _add_remote_commands() -> None:
    # Registered on the group itself: they call a remote server and never build the app.
    from mlapi.cli import remote

    cli.add_command(remote.predict)
    cli.add_command(remote.embed)


_add_remote_commands()


def main() -> None:
    try:
        cli.main(prog_name="mlapi")
    except ConfigError as exc:
        sys.exit(f"mlapi: configuration error: {exc}")


if __name__ == "__main__":
    main()
