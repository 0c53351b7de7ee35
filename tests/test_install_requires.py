"""The package runs on ``install_requires`` alone: nothing it imports may come only from an extra.

The suite always runs with the ``dev`` extra installed, so a module that imports a package only an
extra brings (``requests`` once did, through ``mlapi.client``) works here and breaks a newcomer's
``make run``. This test imports every module of the package, and runs ``mlapi --help``, in a
process where the packages that only the extras bring cannot be imported. ``.ci/run`` also installs
the package without extras into a fresh virtual environment and starts it (scripts/fresh_install_check.sh).
"""

from __future__ import annotations

import configparser
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _declared() -> tuple[list[Requirement], list[Requirement]]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")

    def lines(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]

    base = [Requirement(line) for line in lines(config["options"]["install_requires"])]
    extras = [
        Requirement(line)
        for name in config["options.extras_require"]
        for line in lines(config["options.extras_require"][name])
    ]
    return base, extras


def _closure(requirements: list[Requirement]) -> set[str]:
    """Installed distributions these requirements pull in, transitively (no extras of theirs unless asked)."""
    seen: set[str] = set()
    pending = [(r, frozenset(r.extras)) for r in requirements]
    while pending:
        requirement, extras = pending.pop()
        name = requirement.name.lower().replace("_", "-")
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if name in seen and not extras:
            continue
        seen.add(name)
        for line in distribution.requires or []:
            child = Requirement(line)
            environment = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if child.marker is None or any(child.marker.evaluate(env) for env in environment):
                pending.append((child, frozenset(child.extras)))
    return seen


def extra_only_modules() -> set[str]:
    """Top-level module names that only the extras' distributions provide."""
    base, extras = _declared()
    only_extras = _closure(extras) - _closure(base)
    by_module = metadata.packages_distributions()
    modules = set()
    for module, distributions in by_module.items():
        names = {d.lower().replace("_", "-") for d in distributions}
        if names and names <= only_extras and not module.startswith("_"):
            modules.add(module)
    return modules


BLOCKED_IMPORTS = """
import importlib.abc, pkgutil, sys
blocked = set(sys.argv[1].split(","))

class ExtrasOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (only an extra installs it)", name=name)
        return None

sys.meta_path.insert(0, ExtrasOnly())
import mlapi
for module in pkgutil.walk_packages(mlapi.__path__, "mlapi."):
    __import__(module.name)
from mlapi.cli.main import main
sys.argv = ["mlapi", "--help"]
main()
"""


def test_the_extras_only_packages_are_found():
    """The blocklist is not vacuous: the dev extra's own tools are on it, and nothing the package declares."""
    modules = extra_only_modules()
    assert {"pytest", "playwright", "schemathesis"} <= modules
    assert not {"flask", "torch", "sqlalchemy", "requests", "urllib3"} & modules


def test_every_module_and_the_cli_import_without_the_extras():
    blocked = extra_only_modules()
    result = subprocess.run(
        [sys.executable, "-c", BLOCKED_IMPORTS, ",".join(sorted(blocked))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Usage: mlapi" in result.stdout
