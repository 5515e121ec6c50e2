"""TimeoutPool: a hung call is killed at its deadline, a crashed worker is replaced, order is kept."""

import time

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
