"""Rule-based verifiers: a completion and a reference in, a `VerifyResult` out."""

from verifiers.base import VerifyResult

__all__ = ["VerifyResult"]
