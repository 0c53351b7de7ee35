"""The Makefile's install stamps: written only once their step worked, so a failed `make run` is retried.

The real Makefile runs with stand-ins for ``python3 -m venv``, ``pip`` and ``mlapi`` (shell scripts
that log each call and fail when told to), so each failure a newcomer can meet is made on purpose.
The real install, from a fresh virtual environment, is what scripts/fresh_install_check.sh runs in CI.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# `$(PYTHON) -m venv DIR`: writes DIR/bin/{python,pip,mlapi}; fails after bin/python when told to,
# as a venv without ensurepip does.
FAKE_PYTHON = """#!/bin/sh
set -e
echo "venv" >> "$LOG"
mkdir -p "$3/bin"
printf '#!/bin/sh\\n[ -e "$FAILS/pip-missing" ] && exit 1\\necho "python $*" >> "$LOG"\\n' > "$3/bin/python"
printf '#!/bin/sh\\necho "pip $*" >> "$LOG"\\n[ ! -e "$FAILS/pip" ]\\n' > "$3/bin/pip"
printf '#!/bin/sh\\necho "mlapi $*" >> "$LOG"\\n[ ! -e "$FAILS/mlapi" ]\\n' > "$3/bin/mlapi"
chmod +x "$3/bin/python" "$3/bin/pip" "$3/bin/mlapi"
[ ! -e "$FAILS/venv" ]
"""


@pytest.fixture
def make_install(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    python = tmp_path / "python3"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    fails = tmp_path / "fails"
    fails.mkdir()
    log = tmp_path / "calls.log"
    venv = tmp_path / "venv"

    def run(*failing: str) -> tuple[int, list[str]]:
        for path in fails.iterdir():
            path.unlink()
        for name in failing:
            (fails / name).touch()
        log.write_text("")
        result = subprocess.run(
            ["make", "--no-print-directory", "-C", str(ROOT), "install", f"PYTHON={python}", f"VENV={venv}"],
            env={"PATH": "/usr/bin:/bin", "LOG": str(log), "FAILS": str(fails)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        return result.returncode, log.read_text().splitlines()

    run.stamp = venv / ".installed"  # type: ignore[attr-defined]
    return run


def test_a_failed_pip_install_writes_no_stamp_and_the_next_run_installs(make_install):
    code, _ = make_install("pip")
    assert code != 0 and not make_install.stamp.exists()
    code, calls = make_install()
    assert code == 0 and make_install.stamp.exists()
    assert [c for c in calls if c.startswith("pip install")] == [
        "pip install --quiet torch==2.13.0",
        "pip install --quiet -e .",
    ]


def test_an_install_whose_mlapi_command_fails_is_not_stamped(make_install):
    """pip exiting 0 is not enough: a package that cannot import (an undeclared dependency) is retried."""
    code, calls = make_install("mlapi")
    assert code != 0 and not make_install.stamp.exists()
    assert "mlapi --version" in calls
    code, calls = make_install()
    assert code == 0 and make_install.stamp.exists()
    assert "pip install --quiet -e ." in calls


def test_a_half_made_venv_is_made_again(make_install):
    """A venv without pip (no ensurepip) still has bin/python; the next run must not take it for done."""
    code, _ = make_install("pip-missing")
    assert code != 0 and not make_install.stamp.exists()
    code, calls = make_install()
    assert code == 0 and calls[0] == "venv"


def test_a_finished_install_is_not_repeated(make_install):
    assert make_install()[0] == 0
    code, calls = make_install()
    assert code == 0 and calls == []
