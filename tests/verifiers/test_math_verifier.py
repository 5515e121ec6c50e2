"""Math verifier: extraction, equivalence tiers, and hard time limits."""

import time

import pytest

from verifiers.math import MathVerifier, verify
from verifiers.math.extract import extract_answer, last_boxed
from verifiers.pool import TimeoutPool

CASES = [
    # (completion, gold, correct, reason prefix)
    ("So the total is \\boxed{72}.", "72", True, "string match"),
    ("\\boxed{\\frac{1}{2}}", "0.5", True, "numeric match"),
    ("\\boxed{\\dfrac{1}{2}}", "\\frac{1}{2}", True, "string match"),
    ("\\boxed{(3, \\pi/2)}", "\\left( 3, \\frac{\\pi}{2} \\right)", True, "symbolic match"),
    ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}", True, "numeric match"),
    ("\\boxed{1,000}", "1000", True, "string match"),
    ("\\boxed{x=3}", "3", True, "numeric match"),
    ("\\boxed{\\text{(B)}}", "(B)", True, "string match"),
    ("first \\boxed{5} then \\boxed{71}", "72", False, "mismatch"),
    ("\\boxed{73}", "72", False, "mismatch"),
    ("The answer is 72", "72", False, "no answer"),
    ("\\boxed{72", "72", False, "no answer"),
]


@pytest.fixture(scope="module")
def verifier():
    v = MathVerifier(timeout_s=1.0, workers=2)
    yield v
    v.close()


def test_batch_verdicts_in_order(verifier):
    results = verifier.verify_batch([(c, g) for c, g, _, _ in CASES])
    for (completion, gold, correct, reason), r in zip(CASES, results):
        assert (r.correct, r.reason) == (correct, reason), (completion, gold, r)
        assert r.score == float(correct)


def test_module_level_verify():
    r = verify("so \\boxed{\\frac{3}{4}}", "0.75")
    assert r.correct and r.extracted == "\\frac{3}{4}"


def test_nested_braces_and_fbox():
    assert last_boxed("\\boxed{\\frac{a}{\\sqrt{b}}}") == "\\frac{a}{\\sqrt{b}}"
    assert last_boxed("x \\fbox{7} y") == "7"
    assert last_boxed("\\boxed 5") == "5"


def test_fallbacks_are_opt_in():
    assert extract_answer("answer: 12 apples, then 13") is None
    assert extract_answer("answer: 12 apples, then 13", ["last_number"]) == "13"
    assert extract_answer("The final answer is 42.", ["phrase"]) == "42"
    assert extract_answer("#### 1,234", ["phrase"]) == "1,234"
    with pytest.raises(ValueError, match="last_number"):
        extract_answer("x", ["bogus"])


def test_pathological_input_is_bounded(verifier):
    # A tower that sympy tries to evaluate exactly: it must not take longer than the budget.
    start = time.monotonic()
    r = verifier.verify("\\boxed{9^{9^{9^{9}}}}", "5")
    assert not r.correct
    assert r.reason == "timeout" or r.reason.startswith("error") or r.reason == "mismatch"
    assert time.monotonic() - start < 1.0 + 1.5


def _sleepy(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _boom(x: int) -> int:
    if x == 1:
        import os

        os._exit(3)  # a hard crash of the worker process
    return x


def test_pool_kills_hung_call_and_heals():
    with TimeoutPool(_sleepy, workers=2, timeout_s=0.5) as pool:
        start = time.monotonic()
        out = pool.map([(0.01,), (60.0,), (0.02,), (60.0,), (0.03,)])
        assert time.monotonic() - start < 3.0
        assert [o.ok for o in out] == [True, False, True, False, True]
        assert out[1].error == "timeout" and out[0].value == 0.01 and out[4].value == 0.03
        assert pool.restarts == 2
        assert [o.value for o in pool.map([(0.01,), (0.01,)])] == [0.01, 0.01]  # healed


def test_pool_survives_worker_crash():
    with TimeoutPool(_boom, workers=1, timeout_s=2.0) as pool:
        out = pool.map([(0,), (1,), (2,)])
        assert out[0].value == 0 and out[2].value == 2
        assert not out[1].ok and out[1].error.startswith("error: worker died")


def test_hung_sympy_call_times_out():
    # simplify() of a large symbolic difference runs far beyond 0.3 s; the verdict must come back
    v = MathVerifier(timeout_s=0.3, workers=1)
    try:
        start = time.monotonic()
        r = v.verify("\\boxed{(x+y+z)^{40} - (x+y+z)^{39} (x+y+z) + \\sin(x)^2 + \\cos(x)^2}", "1 + x - x")
        elapsed = time.monotonic() - start
        assert r.reason == "timeout", r
        assert not r.correct and elapsed < 0.3 + 1.0
    finally:
        v.close()
