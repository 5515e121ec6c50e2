"""Math verifier: extract the final answer, then decide equivalence with sympy under a hard limit.

Public API::

    verify(completion, gold) -> VerifyResult
    verify_batch([(completion, gold), ...]) -> list[VerifyResult]
    MathVerifier(timeout_s=1.0, workers=2, fallbacks=(), free_form=False).verify_batch(pairs)
    judge(completion, gold, fallbacks=(), free_form=False) -> VerifyResult   # in this process, no time limit

The pipeline: `verifiers.math.extract` (answer out of the completion, and out of a gold that is a
worked solution; linear time, run in the caller), then in a `verifiers.pool.TimeoutPool` worker
`verifiers.math.normalize` (canonical string), `verifiers.math.parse` (sympy value) and
`verifiers.math.equivalence` (the match tiers).
A check that runs past ``timeout_s`` seconds has its worker killed and scores
``correct=False, reason="timeout"``; a crash scores ``reason="error: ..."``. Neither stops the
caller, and the pool replaces the worker. The pool's fork server first imports
`verifiers.math.preload`, which warms the parser, so replacement workers start warm.
"""

from __future__ import annotations

import atexit
from typing import Sequence

from verifiers.base import VerifyResult
from verifiers.math.equivalence import equivalent
from verifiers.math.extract import FREE_FORM, extract_answer, gold_answer
from verifiers.pool import TimeoutPool

__all__ = ["MathVerifier", "judge", "verify", "verify_batch"]

_NO_ANSWER = VerifyResult(False, 0.0, None, "no answer")


def _check(extracted: str, gold: str) -> VerifyResult:
    correct, reason, parsed = equivalent(extracted, gold)
    return VerifyResult(correct, float(correct), extracted, reason, parsed)


def _fallbacks(fallbacks: Sequence[str], free_form: bool) -> tuple[str, ...]:
    return FREE_FORM if free_form else tuple(fallbacks)


def judge(completion: str, gold: str, fallbacks: Sequence[str] = (), free_form: bool = False) -> VerifyResult:
    """Verdict for one completion computed in this process, with no time limit.

    For trusted inputs, tests and benchmarks; `MathVerifier` runs the same steps under a budget
    (see it for `fallbacks` and `free_form`).

    Raises:
        ValueError: an unknown fallback name.
    """
    extracted = extract_answer(completion, _fallbacks(fallbacks, free_form))
    return _NO_ANSWER if extracted is None else _check(extracted, gold_answer(gold))


class MathVerifier:
    """Scores completions against gold answers; reward 1.0 if equivalent else 0.0.

    Args:
        timeout_s: wall-clock budget per equivalence check, in seconds.
        workers: worker processes for the checks.
        fallbacks: answer-extraction fallbacks when there is no ``\\boxed{}``: any of ``"phrase"``,
            ``"latex"``, ``"last_number"`` (see `verifiers.math.extract.extract_answer`).
        free_form: read answers that are not boxed, for evaluating models that do not box their
            answer: every fallback in the order phrase, latex, last_number (`fallbacks` is then
            ignored). Off by default: for RL with the boxed template, an answer outside a box
            scores 0 unless `fallbacks` says otherwise.

    The gold answer goes through the same extraction (its last run of boxes, when it is a worked
    solution) and normalization as the prediction. The pool starts on first use; the object
    pickles without it (safe to send to workers).

    Raises:
        ValueError: an unknown fallback name.
    """

    def __init__(
        self, timeout_s: float = 1.0, workers: int = 2, fallbacks: Sequence[str] = (), free_form: bool = False
    ) -> None:
        self.timeout_s, self.workers, self.free_form = timeout_s, workers, free_form
        self.fallbacks = _fallbacks(fallbacks, free_form)
        extract_answer("", self.fallbacks)  # raises on an unknown name now, not at the first batch
        self._pool: TimeoutPool | None = None

    def verify_batch(self, pairs: Sequence[tuple[str, str]]) -> list[VerifyResult]:
        """Verdicts for ``(completion, gold)`` pairs, in order; each check gets `timeout_s` seconds."""
        extracted = [extract_answer(c, self.fallbacks) for c, _ in pairs]
        todo = [i for i, e in enumerate(extracted) if e is not None]
        results: list[VerifyResult] = [_NO_ANSWER] * len(pairs)
        if todo:
            if self._pool is None:
                self._pool = TimeoutPool(_check, self.workers, self.timeout_s, preload=["verifiers.math.preload"])
                atexit.register(self.close)
            outcomes = self._pool.map([(extracted[i], gold_answer(pairs[i][1])) for i in todo])
            for i, out in zip(todo, outcomes):
                results[i] = out.value if out.ok else VerifyResult(False, 0.0, extracted[i], out.error or "error")
        return results

    def verify(self, completion: str, gold: str) -> VerifyResult:
        """Verdict for one completion."""
        return self.verify_batch([(completion, gold)])[0]

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pool": None}


_default: MathVerifier | None = None


def _default_verifier() -> MathVerifier:
    global _default
    if _default is None:
        _default = MathVerifier()
    return _default


def verify(completion: str, gold: str) -> VerifyResult:
    """Verdict for one completion with the default verifier (1 s budget, 2 workers)."""
    return _default_verifier().verify(completion, gold)


def verify_batch(pairs: Sequence[tuple[str, str]]) -> list[VerifyResult]:
    """Verdicts for many ``(completion, gold)`` pairs with the default verifier, in order."""
    return _default_verifier().verify_batch(pairs)
