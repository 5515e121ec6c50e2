"""Shared by the verifier tests: running code in a session of its own."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_in_new_session(tmp_path):
    """``run_in_new_session(source, timeout_s)``: run the Python `source` in a child process in a session
    (and process group) of its own, with the repository importable, and return the JSON object its last
    line of output prints. A signal it sends to its process group cannot reach the test runner.
    """

    def run(source: str, timeout_s: float) -> dict:
        script = tmp_path / "session.py"
        script.write_text(source)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            start_new_session=True,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    return run
