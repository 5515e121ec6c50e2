"""Format verifier: does a completion end in the expected answer format?

- ``plain`` template: a final ``\\boxed{...}`` answer is present.
- ``r1`` template: the completion opens a ``<think>`` block, closes it once, and a
  ``\\boxed{...}`` answer follows the ``</think>``.
- ``code`` template: a fenced Python block is present (`verifiers.code.extract`).
"""

from __future__ import annotations

import re

from verifiers.base import VerifyResult
from verifiers.code.extract import extract_program
from verifiers.math.extract import last_boxed

_THINK = re.compile(r"^\s*<think>(.+?)</think>(.*)$", re.S)


def verify_format(completion: str, template: str = "plain") -> VerifyResult:
    """Score 1.0 when the completion is well formed for `template`, else 0.0.

    Raises:
        ValueError: unknown template.
    """
    if template == "plain":
        answer = last_boxed(completion)
        ok = answer is not None
        return VerifyResult(ok, float(ok), answer, "well formed" if ok else "no boxed answer")
    if template == "r1":
        m = _THINK.match(completion)
        if not m or "<think>" in m.group(2) or "</think>" in m.group(2):
            return VerifyResult(False, 0.0, None, "no single <think>...</think> block")
        answer = last_boxed(m.group(2))
        ok = answer is not None
        return VerifyResult(ok, float(ok), answer, "well formed" if ok else "no boxed answer after </think>")
    if template == "code":
        program = extract_program(completion)
        ok = program is not None
        return VerifyResult(ok, float(ok), program, "well formed" if ok else "no fenced python block")
    raise ValueError(f"unknown template {template!r}; known: plain, r1, code")
