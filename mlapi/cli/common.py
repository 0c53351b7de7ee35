"""Admin CLI command groups, each registered on the app by ``mlapi.cli.main``."""

import getpass
from collections.abc import Iterator
from contextlib import contextmanager

import click

from mlapi.accounts.audit import Actor
from mlapi.accounts.errors import StoreError


@contextmanager
def store_errors_reported() -> Iterator[None]:
    """A store failure (unknown user, duplicate name, bad tier) becomes one line and exit code 1."""
    try:
        yield
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None


def cli_actor() -> Actor:
    """The operator as the audit log names them: ``cli:<OS user>``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name in the environment and no passwd entry (some containers)
        user = "unknown"
    return Actor(f"cli:{user}", "cli")
