"""Reference solutions of the vendored HumanEval and MBPP problems pass in the sandbox; a
known-wrong variant of each fails. A fixed sample runs by default, every problem under `slow`."""

from __future__ import annotations

import random

import pytest

from reasoner.data import load_problems
from verifiers.code import CodeVerifier

# Wrong variant: the reference, then its entry point wrapped so that every result is off
# (bools negated, numbers x -> x + 1 + |x|, containers and strings extended, None -> 0, other -> None).
WRONG = """
_reference_{ep} = {ep}
def {ep}(*args, **kwargs):
    out = _reference_{ep}(*args, **kwargs)
    if isinstance(out, bool):
        return not out
    if isinstance(out, (int, float, complex)):
        return out + 1 + abs(out)
    if isinstance(out, (str, list, tuple)):
        return out + type(out)(["?"] if not isinstance(out, str) else "?")
    if isinstance(out, (set, dict)):
        return {{*out, "?"}} if isinstance(out, set) else {{**out, "?": "?"}}
    return 0 if out is None else None
"""


def _fenced(program: str) -> str:
    return f"```python\n{program}\n```"


def _problems(name: str, sample: int | None) -> list:
    problems = sorted(load_problems(f"vendored:{name}"), key=lambda p: p.id)
    return problems if sample is None else random.Random(0).sample(problems, sample)


def _check(problems: list) -> None:
    verifier = CodeVerifier(timeout_s=30.0, workers=2)
    try:
        right = verifier.verify_batch([(_fenced(p.solution), p.answer) for p in problems])
        wrong = verifier.verify_batch(
            [(_fenced(p.solution + WRONG.format(ep=p.meta["entry_point"])), p.answer) for p in problems]
        )
    finally:
        verifier.close()
    failed_refs = [(p.id, v.reason) for p, v in zip(problems, right) if not v.correct]
    passed_wrongs = [p.id for p, v in zip(problems, wrong) if v.correct]
    assert not failed_refs, failed_refs
    assert not passed_wrongs, passed_wrongs
    assert all(v.score < 1.0 for v in wrong)


@pytest.mark.parametrize("name,sample", [("humaneval", 16), ("mbpp", 24)])
def test_reference_sample_passes_and_wrong_variants_fail(name, sample):
    _check(_problems(name, sample))


@pytest.mark.slow
@pytest.mark.parametrize("name,rows", [("humaneval", 164), ("mbpp", 257)])
def test_every_reference_passes_and_every_wrong_variant_fails(name, rows):
    problems = _problems(name, None)
    assert len(problems) == rows
    _check(problems)
