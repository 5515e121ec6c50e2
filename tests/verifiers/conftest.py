"""Shared by the verifier tests: checking a wall-clock bound on a machine that may be shared."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def assert_within():
    """``assert_within(elapsed_s, bound_s, what)``: fail if `elapsed_s` > `bound_s` seconds.

    A miss while the 1-minute load average is above 4 jobs per core skips the test instead (with
    the load in the message): a wall-clock bound says nothing about code that got a quarter of a
    core. On a machine with normal load a miss fails.
    """

    def check(elapsed_s: float, bound_s: float, what: str) -> None:
        if elapsed_s <= bound_s:
            return
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
        message = f"{what} took {elapsed_s:.2f} s > {bound_s:.2f} s at load average {load:.1f} on {cores} cores"
        if load > 4 * cores:
            pytest.skip(message)
        pytest.fail(message)

    return check


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
