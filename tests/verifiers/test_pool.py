"""TimeoutPool: a hung call is killed at its deadline, a crashed worker is replaced, order is kept."""

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from verifiers.pool import TimeoutPool


def _sleepy(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _boom(x: int) -> int:
    if x == 1:
        import os

        os._exit(3)  # a hard crash of the worker process
    return x


def test_pool_kills_hung_call_and_heals(assert_within):
    with TimeoutPool(_sleepy, workers=2, timeout_s=0.5) as pool:
        start = time.monotonic()
        out = pool.map([(0.01,), (60.0,), (0.02,), (60.0,), (0.03,)])
        elapsed = time.monotonic() - start
        assert [o.ok for o in out] == [True, False, True, False, True]
        assert out[1].error == "timeout" and out[0].value == 0.01 and out[4].value == 0.03
        assert pool.restarts == 2
        assert [o.value for o in pool.map([(0.01,), (0.01,)])] == [0.01, 0.01]  # healed
        # two 0.5 s deadlines, one after the other on the same worker at worst, plus fresh workers
        assert_within(elapsed, 3.0, "two killed calls")


def test_pool_survives_worker_crash():
    with TimeoutPool(_boom, workers=1, timeout_s=2.0) as pool:
        out = pool.map([(0,), (1,), (2,)])
        assert out[0].value == 0 and out[2].value == 2
        assert not out[1].ok and out[1].error.startswith("error: worker died")


def _wait_dead(pid: int, limit_s: float = 5.0) -> None:
    """Wait until `pid` is gone or a zombie (it is the fork server's child, not ours to reap)."""
    stop = time.monotonic() + limit_s
    while time.monotonic() < stop:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):  # gone before, or while, its stat was read
            return
        if state == "Z":
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} still alive after {limit_s} s")


def _double(x: int) -> int:
    return 2 * x


def test_worker_killed_while_idle_is_replaced_before_the_next_task():
    # the repro: a death between calls used to fail every later call with BrokenPipeError
    with TimeoutPool(_double, workers=1, timeout_s=5.0) as pool:
        assert pool.map([(1,)])[0].value == 2
        (pid,) = pool.pids
        os.kill(pid, signal.SIGKILL)
        _wait_dead(pid)
        assert [o.value for o in pool.map([(2,), (3,)])] == [4, 6]
        assert pool.pids != [pid] and pool.restarts == 1
        assert [o.value for o in pool.map([(4,)])] == [8]


def test_every_worker_killed_while_idle():
    with TimeoutPool(_double, workers=2, timeout_s=5.0) as pool:
        for pid in pool.pids:
            os.kill(pid, signal.SIGKILL)
            _wait_dead(pid)
        assert [o.value for o in pool.map([(i,) for i in range(5)])] == [0, 2, 4, 6, 8]
        assert pool.restarts == 2


def test_worker_killed_during_a_task_runs_it_again():
    with TimeoutPool(_sleepy, workers=1, timeout_s=5.0) as pool:
        (pid,) = pool.pids
        killer = threading.Timer(0.2, os.kill, (pid, signal.SIGKILL))
        killer.start()
        out = pool.map([(0.5,), (0.01,)])
        killer.join()
        assert [o.value for o in out] == [0.5, 0.01] and pool.restarts == 1


# A "training step" in its own session (so the signal cannot reach the test runner): the script
# handles the signal the way a trainer does (note it, finish the step), sends it to its whole
# process group while a batch is being scored, then scores the next batch.
SIGNAL_STEP = """
import json, os, signal, sys, threading, time
from verifiers.pool import TimeoutPool
from tests.verifiers.test_pool import _sleepy


def main():
    caught = []
    signal.signal(SIGNUM, lambda *_: caught.append(time.monotonic()))
    tasks = [(0.05 * (i % 4),) for i in range(16)]
    with TimeoutPool(_sleepy, workers=2, timeout_s=5.0) as pool:
        before = pool.pids
        sent = threading.Timer(0.2, os.killpg, (0, SIGNUM))
        sent.start()
        step = pool.map(tasks)
        step_end = time.monotonic()
        sent.join()
        alive = [os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
                 for pid in before]
        after = pool.map(tasks)
        same_workers = pool.pids == before
        os.kill(pool.pids[0], signal.SIGKILL)  # a replacement now needs the fork server (SIGTERM killed it)
        time.sleep(0.1)
        again = pool.map(tasks)
        print(json.dumps({
            "step": [o.value for o in step], "after": [o.value for o in after],
            "again": [o.value for o in again], "expected": [t[0] for t in tasks],
            "during_step": bool(caught) and caught[0] < step_end, "restarts": pool.restarts,
            "workers_survived": all(alive), "same_workers": same_workers,
        }))


if __name__ == "__main__":  # the workers import this file as their main module
    main()
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_to_the_process_group_during_a_step(run_in_new_session, signum):
    got = run_in_new_session(SIGNAL_STEP.replace("SIGNUM", f"signal.{signum.name}"), timeout_s=60)
    assert got["during_step"], got  # the signal arrived while the batch was being scored
    assert got["step"] == got["expected"] and got["after"] == got["expected"], got
    assert got["workers_survived"] and got["same_workers"], got  # the workers ignored the signal
    assert got["again"] == got["expected"] and got["restarts"] == 1, got  # and can still be replaced
