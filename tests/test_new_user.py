"""The new user's first hour (`scripts/new_user.sh`) on the embedded model with vLLM: own data
with a cold start from its solutions, a custom verifier by one override, Ctrl-C to the process
group and the printed resume command, evaluation and comparison."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_new_user_script_passes(tmp_path):
    out = subprocess.run(
        ["bash", str(ROOT / "scripts/new_user.sh"), str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert "all steps passed" in out.stdout
    assert "| gsm8k" in out.stdout  # the comparison table
