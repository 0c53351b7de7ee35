"""The ``mlapi`` command (``main``) and its groups, one module each; ``register_commands`` adds the
groups to an app, so that ``flask --app wsgi`` offers them too."""

from __future__ import annotations

from flask import Flask


def register_commands(app: Flask) -> None:
    from mlapi.cli import (
        audit_commands,
        bootstrap,
        contract_commands,
        db_commands,
        key_commands,
        model_commands,
        usage_commands,
        user_commands,
    )

    for command in (
        db_commands.group,
        user_commands.group,
        key_commands.group,
        audit_commands.group,
        usage_commands.group,
        model_commands.group,
        contract_commands.group,
        bootstrap.bootstrap,
    ):
        app.cli.add_command(command)
