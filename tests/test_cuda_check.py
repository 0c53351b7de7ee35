import subprocess
import sys

import torch

from tests.gunicorn_server import ROOT


def test_the_cuda_check_runs_and_reports():
    result = subprocess.run(
        [sys.executable, "scripts/check_cuda.py"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    if torch.cuda.is_available():
        assert "passed: cuda:0 predictions match the CPU" in result.stdout
    else:
        # No GPU here: the check must say so rather than pass silently.
        assert result.stdout.startswith("skipped: no CUDA device")
