"""The ``mlapi`` command as a shell meets it: a real process, stdout and stderr apart.

``K=$(mlapi keys create alice)`` must capture the key and nothing else (a log line on stdout once
made the header built from it an HTML 400), and admin commands must not pay for torch.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlapi import __version__
from mlapi.app import create_app
from mlapi.extensions import db

ROOT = Path(__file__).resolve().parents[1]
KEY = re.compile(r"mlapi_[A-Za-z0-9_-]{20,}")

# Runs the command in this process and reports on stderr whether torch was imported on the way.
RUN_AND_REPORT_TORCH = """
import sys
from mlapi.cli.main import cli
try:
    cli.main(sys.argv[1:], prog_name="mlapi")
finally:
    print("torch imported:", "torch" in sys.modules, file=sys.stderr)
"""


@pytest.fixture
def environment(tmp_path) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith("MLAPI_") or k.startswith("MLAPI_TEST_")}
    return {**kept, "MLAPI_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "HF_HUB_OFFLINE": "1"}


def mlapi(environment: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-c", RUN_AND_REPORT_TORCH, *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (0, None), result.stderr[-3000:]
    return result


def test_keys_create_prints_only_the_key_on_stdout_and_it_authenticates(environment, tmp_path):
    environment["MLAPI_LOG_LEVEL"] = "DEBUG"  # every log line there is, and none may reach stdout
    mlapi(environment, "db", "upgrade")
    mlapi(environment, "users", "create", "alice", "--password", "alice's password", "--tier", "free")
    created = mlapi(environment, "keys", "create", "alice", "--label", "laptop")
    assert KEY.fullmatch(created.stdout.rstrip("\n")), created.stdout
    assert "label 'laptop'" in created.stderr

    app = create_app({"MLAPI_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}, load_models=False)
    try:
        me = app.test_client().get("/v1/users/me", headers={"X-API-Key": created.stdout.strip()})
    finally:
        db.dispose()
    assert me.status_code == 200 and me.get_json()["username"] == "alice"


# Runs several commands in one process, then reports whether any of them imported torch.
RUN_SEVERAL_AND_REPORT_TORCH = """
import sys
from mlapi.cli.main import cli
for command in sys.argv[1:]:
    try:
        cli.main(command.split(), prog_name="mlapi")
    except SystemExit as exit:
        print(command, "exited", exit.code, file=sys.stderr)
print("torch imported:", "torch" in sys.modules, file=sys.stderr)
"""


def test_admin_commands_do_not_import_torch(environment):
    commands = ["--help", "db upgrade", "users list", "keys list nobody", "models list", "bootstrap"]
    result = subprocess.run(
        [sys.executable, "-c", RUN_SEVERAL_AND_REPORT_TORCH, *commands],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "torch imported: False" in result.stderr, result.stderr[-3000:]
    assert [line for line in result.stderr.splitlines() if " exited " in line] == [
        "--help exited 0",
        "db upgrade exited 0",
        "users list exited 0",
        "keys list nobody exited 1",
        "models list exited 0",
        "bootstrap exited 0",
    ]


def test_admin_commands_log_nothing_at_a_terminal_unless_asked(environment):
    result = mlapi(environment, "db", "upgrade")
    assert not [line for line in result.stderr.splitlines() if line.startswith("{")]
    environment["MLAPI_LOG_LEVEL"] = "INFO"
    result = mlapi(environment, "users", "list")
    assert any('"logger": "mlapi' in line for line in result.stderr.splitlines())
    assert result.stdout.splitlines() == ["id\tusername\ttier\tflags"]


def test_version_is_mlapis_own(environment):
    result = mlapi(environment, "--version")
    assert result.stdout.strip() == f"mlapi {__version__}"
