"""The verdict type shared by every verifier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class VerifyResult:
    """One verifier's verdict on one completion.

    Attributes:
        correct: whether the completion's answer matches the reference.
        score: the reward in [0, 1] the verifier gives (1.0 when correct for math).
        extracted: the answer string taken from the completion, or None if none was found.
        reason: why: ``"string match"``, ``"numeric match"``, ``"symbolic match"``, ``"mismatch"``,
            ``"no answer"``, ``"timeout"`` or ``"error: ..."``.
        parsed: the parsed forms compared (prediction, gold) as strings, when parsing got that far.
    """

    correct: bool
    score: float
    extracted: str | None
    reason: str
    parsed: tuple[str, str] | None = None


@runtime_checkable
class Verifier(Protocol):
    """What the trainer needs of a verifier (built from config by `verifiers.registry`).

    ``verify_batch`` gets ``(completion, reference)`` pairs, the reference being the problem's
    ``answer`` string (a gold answer for math, the tests for code), and returns one verdict
    per pair, in order; the trainer's reward is ``VerifyResult.score``. ``close`` releases
    worker processes or threads. Implementations must be picklable (they may cross into
    worker processes).
    """

    def verify_batch(self, pairs: Sequence[tuple[str, str]]) -> list[VerifyResult]: ...

    def close(self) -> None: ...
