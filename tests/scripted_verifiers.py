"""Verifiers for tests on random tiny models; importable from child processes (the tests put
tests/ on their PYTHONPATH)."""

from __future__ import annotations

from verifiers.base import VerifyResult


class VowelShare:
    """A verifier a random model earns varied rewards from: the share of vowels among the
    completion's letters (correct above 0.35), so groups differ and updates move the weights."""

    def __init__(self, **_):
        pass

    def verify_batch(self, pairs):
        out = []
        for text, _ in pairs:
            letters = [c for c in text.lower() if c.isalpha()]
            share = sum(c in "aeiou" for c in letters) / len(letters) if letters else 0.0
            out.append(VerifyResult(share > 0.35, share, None, "vowel share"))
        return out

    def close(self):
        pass
