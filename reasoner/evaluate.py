"""Held-out accuracy of the current rollout-engine weights (one sample per problem)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

from eval.metrics import Proportion, wilson
from reasoner.config import Template
from reasoner.data import prompt_ids
from reasoner.rollout.base import RolloutEngine
from reasoner.types import Problem
from verifiers.base import Verifier
from verifiers.format import verify_format


@dataclass
class EvalResult:
    """Accuracy with its Wilson 95% interval, per-problem scores (1.0/0.0, in problem order, for
    paired comparisons), mean completion length (tokens), truncated and well-formed fractions,
    and wall seconds."""

    accuracy: Proportion
    per_problem: list[float]
    mean_len: float
    truncated: float
    well_formed: float
    seconds: float

    @classmethod
    def from_dict(cls, d: dict) -> EvalResult:
        """Rebuild a result from ``dataclasses.asdict(result)`` (a checkpoint stores them so)."""
        return cls(**{**d, "accuracy": Proportion(**d["accuracy"])})

    def as_dict(self) -> dict[str, float]:
        a = self.accuracy
        return {
            "accuracy": a.value, "ci_low": a.low, "ci_high": a.high, "n": a.n, "mean_len": self.mean_len,
            "truncated": self.truncated, "well_formed": self.well_formed, "seconds": self.seconds,
        }


def evaluate(
    engine: RolloutEngine,
    tokenizer: Any,
    problems: Sequence[Problem],
    template: Template,
    verifier: Verifier,
    temperature: float = 0.0,
    max_tokens: int = 128,
) -> EvalResult:
    """Sample one completion per problem (greedy at temperature 0) and verify it."""
    start = time.perf_counter()
    prompts = [prompt_ids(tokenizer, p.problem, template) for p in problems]
    completions = [g[0] for g in engine.generate(prompts, 1, temperature, 1.0, max_tokens)]
    verdicts = verifier.verify_batch([(c.text, p.answer) for c, p in zip(completions, problems)])
    n = len(problems)
    return EvalResult(
        accuracy=wilson(sum(v.correct for v in verdicts), n),
        per_problem=[float(v.correct) for v in verdicts],
        mean_len=sum(len(c.token_ids) for c in completions) / n,
        truncated=sum(c.truncated for c in completions) / n,
        well_formed=sum(verify_format(c.text, template.value).correct for c in completions) / n,
        seconds=time.perf_counter() - start,
    )
