"""Admin CLI command groups, each registered on the app by ``mlapi.cli``."""

from collections.abc import Iterator
from contextlib import contextmanager

import click

from mlapi.store.errors import StoreError


@contextmanager
def store_errors_reported() -> Iterator[None]:
    """A store failure (unknown user, duplicate name, bad tier) becomes one line and exit code 1."""
    try:
        yield
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
