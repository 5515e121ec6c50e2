"""The verdict type shared by every verifier."""

from __future__ import annotations

from dataclasses import dataclass


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
