"""Procedural arithmetic problems with step-by-step worked solutions, by difficulty level.

The embedded default (SmolLM2-135M) cannot solve GSM8K: it needs problems it sometimes gets
right after a short cold start, so that GRPO groups have reward variance. Levels:

    1: a ± b                 (2-digit operands, 1 step)
    2: a ± b ± c             (2-digit operands, 2 steps)
    3: a × b ± c             (1-digit × 2-digit, then a 2-digit operand, 2 steps)
    4: a × b ± c ± d         (3 steps)
    5: a × b ± c             (2-digit × 2-digit, then a 3-digit operand, 2 steps: beyond what a
                              135M model computes reliably, but one Python call away)

Results are never negative. Generation is deterministic in (n, levels, seed, terse_fraction,
tool_fraction).

Worked solutions come in two styles, as in real SFT data where some solutions show their work
and some do not: step by step (one line per operation, the default) or terse (``a + b - c = r.``,
the answer with no intermediate result). A cold start on a mix teaches both; for a small model
the terse style is much less accurate, so GRPO has a behaviour to learn that generalizes across
problems: work step by step (see README, "Why this data").

Tool demonstrations: a `tool_fraction` share of the problems also carry, in ``meta["turns"]``, a
worked solution that calls the ``python`` tool (`tool_turns`), used by the cold start when the run
has the tool (``env=python``); the others, and every problem without the tool, keep the
step-by-step text.
"""

from __future__ import annotations

import random
from typing import Iterable, Sequence

from reasoner.types import Problem

LEVELS = (1, 2, 3, 4, 5)


def _operands(level: int, rng: random.Random) -> tuple[list[int], list[str]]:
    two = lambda: rng.randint(10, 99)  # noqa: E731
    if level == 1:
        return [two(), two()], [rng.choice("+-")]
    if level == 2:
        return [two(), two(), two()], [rng.choice("+-"), rng.choice("+-")]
    if level == 3:
        return [two(), rng.randint(2, 9), two()], ["*", rng.choice("+-")]
    if level == 4:
        return [two(), rng.randint(2, 9), two(), two()], ["*", rng.choice("+-"), rng.choice("+-")]
    if level == 5:
        return [two(), two(), rng.randint(100, 999)], ["*", rng.choice("+-")]
    raise ValueError(f"arithmetic level {level!r} is not one of {LEVELS}")


def _apply(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def make_problem(level: int, rng: random.Random) -> Problem | None:
    """One problem at `level`, or None when a partial result went negative (caller redraws)."""
    nums, ops = _operands(level, rng)
    steps, acc = [], nums[0]
    for op, b in zip(ops, nums[1:]):
        new = _apply(acc, op, b)
        if new < 0:
            return None
        sym = "×" if op == "*" else op
        steps.append(f"Step {len(steps) + 1}: {acc} {sym} {b} = {new}.")
        acc = new
    expr = " ".join([str(nums[0])] + [f"{'×' if o == '*' else o} {b}" for o, b in zip(ops, nums[1:])])
    return Problem(
        id="",
        problem=f"What is {expr}?",
        answer=str(acc),
        solution="\n".join(steps),
        meta={"level": level},
    )


def tool_turns(p: Problem) -> list[str]:
    """The model's turns of a worked solution of arithmetic problem `p` that calls the ``python``
    tool: the call, then the answer (the cold start runs the call for the tool message)."""
    expr = p.problem.removeprefix("What is ").removesuffix("?").replace("×", "*")
    return [f"Let me compute it.\n<python>\nprint({expr})\n</python>", f"The final answer is \\boxed{{{p.answer}}}."]


def generate(
    n: int,
    levels: Sequence[int],
    seed: int,
    exclude: Iterable[str] = (),
    terse_fraction: float = 0.0,
    tool_fraction: float = 0.0,
) -> list[Problem]:
    """`n` distinct problems, levels drawn uniformly from `levels`, none whose text is in `exclude`;
    a `terse_fraction` share of them (drawn independently) get the terse solution style, and a
    `tool_fraction` share (drawn independently again) a tool-call demonstration (`tool_turns`).

    Raises:
        ValueError: an unknown level, or `n` larger than the distinct problems available.
    """
    for level in levels:
        if level not in LEVELS:
            raise ValueError(f"data.arithmetic_levels has {level!r}; allowed: {LEVELS}")
    for name, share in (("terse_fraction", terse_fraction), ("tool_fraction", tool_fraction)):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{name}={share!r} must be in [0, 1]")
    rng, style_rng, tool_rng = random.Random(seed), random.Random(seed + 7919), random.Random(seed + 104729)
    seen, out = set(exclude), []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise ValueError(f"could not draw {n} distinct arithmetic problems at levels {list(levels)}")
        p = make_problem(rng.choice(list(levels)), rng)
        if p is None or p.problem in seen:
            continue
        seen.add(p.problem)
        terse = style_rng.random() < terse_fraction
        solution = f"{p.problem.removeprefix('What is ').removesuffix('?')} = {p.answer}." if terse else p.solution
        meta = {**p.meta, "terse": terse}
        if tool_rng.random() < tool_fraction:
            meta["turns"] = tool_turns(p)
        out.append(Problem(f"arith-s{seed}-{len(out)}", p.problem, p.answer, solution, meta))
    return out
