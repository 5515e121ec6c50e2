"""Code verifier: run the completion's program against unit tests in a bubblewrap sandbox.

Public API::

    verify(completion, tests, *, entry_point=None, timeout_s=10.0) -> VerifyResult
    verify_batch([(completion, tests), ...], timeout_s=10.0) -> list[VerifyResult]
    CodeVerifier(timeout_s=10.0, workers=2, scoring="fraction", extract="last_block").verify_batch(pairs)

Modules: `extract` (program out of the completion), `suite` (tests parsed on the trusted
side), `sandbox` (bubblewrap + seccomp + rlimits runner), `seccomp_filter`, `harness` (the
code that runs inside the sandbox), `verifier` (`CodeVerifier`: scoring and the worker pool).
"""

from __future__ import annotations

from typing import Sequence

from verifiers.base import VerifyResult
from verifiers.code.verifier import CodeVerifier

__all__ = ["CodeVerifier", "verify", "verify_batch"]

_default: dict[float, CodeVerifier] = {}


def _verifier(timeout_s: float) -> CodeVerifier:
    if timeout_s not in _default:
        _default[timeout_s] = CodeVerifier(timeout_s=timeout_s)
    return _default[timeout_s]


def verify(completion: str, tests: str, *, entry_point: str | None = None, timeout_s: float = 10.0) -> VerifyResult:
    """Verdict for one completion: its last fenced Python block run against `tests`.

    Args:
        completion: model output holding a ```python block.
        tests: assert-style Python tests, or a JSON list of ``{"input", "output"}`` cases.
        entry_point: with HumanEval-style tests (``def check(candidate)``), the function checked.
        timeout_s: wall-clock limit for the program and all its tests, seconds.

    Raises:
        ValueError: malformed tests. SandboxUnavailable: no working sandbox.
    """
    return _verifier(timeout_s).verify(completion, tests, entry_point=entry_point)


def verify_batch(pairs: Sequence[tuple[str, str]], *, timeout_s: float = 10.0) -> list[VerifyResult]:
    """Verdicts for ``(completion, tests)`` pairs, in order, two programs at a time."""
    return _verifier(timeout_s).verify_batch(pairs)
