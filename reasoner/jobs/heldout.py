"""The held-out set of a run and its evaluation: accuracy of the engine's current weights (one
sample per problem), through the benchmark evaluator's sampling-and-scoring path (`eval.runner`)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Sequence

from eval.benchmarks import Benchmark, Sampling
from eval.metrics import Proportion, wilson
from eval.runner import sample_benchmark
from reasoner.config import RunConfig
from reasoner.data import load_problems
from reasoner.rollout.base import RolloutEngine
from reasoner.types import Problem
from verifiers.base import Verifier
from verifiers.format import verify_format
from verifiers.language import language_consistency

log = logging.getLogger("reasoner")


@dataclass
class EvalResult:
    """Accuracy with its Wilson 95% interval, per-problem scores (1.0/0.0, in problem order, for
    paired comparisons), mean completion length (tokens), truncated and well-formed fractions
    (format compliance: `verifiers.format`), wall seconds, and the mean language consistency
    (share of Latin-script words, `verifiers.language`; the prompts are English). Of multi-turn
    episodes (``env``): mean model turns, tool calls and failed tool calls per episode, and the
    share of episodes that called a tool (1, 0, 0, 0 for single completions)."""

    accuracy: Proportion
    per_problem: list[float]
    mean_len: float
    truncated: float
    well_formed: float
    seconds: float
    language_consistency: float = 1.0
    turns: float = 1.0
    tool_calls: float = 0.0
    tool_errors: float = 0.0
    tool_use: float = 0.0

    @classmethod
    def from_dict(cls, d: dict) -> EvalResult:
        """Rebuild a result from ``dataclasses.asdict(result)`` (a checkpoint stores them so)."""
        return cls(**{**d, "accuracy": Proportion(**d["accuracy"])})

    def as_dict(self) -> dict[str, float]:
        a = self.accuracy
        return {
            "accuracy": a.value,
            "ci_low": a.low,
            "ci_high": a.high,
            "n": a.n,
            "mean_len": self.mean_len,
            "truncated": self.truncated,
            "well_formed": self.well_formed,
            "seconds": self.seconds,
            "language_consistency": self.language_consistency,
            "turns": self.turns,
            "tool_calls": self.tool_calls,
            "tool_errors": self.tool_errors,
            "tool_use": self.tool_use,
        }


def evaluate(
    engine: RolloutEngine, tokenizer: Any, bench: Benchmark, problems: Sequence[Problem], verifier: Verifier
) -> EvalResult:
    """One completion per problem of `problems` under `bench`'s template and sampling (greedy at
    temperature 0), drawn and judged by `eval.runner.sample_benchmark` (the path ``reasoner-eval``
    takes) with `verifier`, plus the share of completions the format verifier accepts.

    Raises:
        ValueError: ``bench.sampling.n`` is not 1 (per-problem scores are one verdict each).
    """
    if bench.sampling.n != 1:
        raise ValueError(
            f"{bench.name}: the held-out evaluation draws one sample per problem, not n={bench.sampling.n}"
        )
    start = time.perf_counter()
    samples = sample_benchmark(
        engine, tokenizer, bench, problems, bench.sampling, verifier, chunk=max(len(problems), 1), progress=False
    )
    n = len(samples)
    return EvalResult(
        accuracy=wilson(sum(s.correct for s in samples), n),
        per_problem=[float(s.correct) for s in samples],
        mean_len=sum(s.tokens for s in samples) / n,
        truncated=sum(s.truncated for s in samples) / n,
        well_formed=sum(verify_format(s.completion, bench.template.value).correct for s in samples) / n,
        seconds=time.perf_counter() - start,
        language_consistency=sum(language_consistency(s.completion) for s in samples) / n,
        turns=sum(s.turns for s in samples) / n,
        tool_calls=sum(s.tool_calls for s in samples) / n,
        tool_errors=sum(s.tool_errors for s in samples) / n,
        tool_use=sum(s.tool_calls > 0 for s in samples) / n,
    )


def load_heldout(cfg: RunConfig) -> list[Problem]:
    """The run's held-out problems (``data.heldout``, the first ``data.heldout_n`` of the
    ``trainer.seed + 1`` shuffle): the same set for every job of a seed.

    Raises:
        FileNotFoundError, reasoner.data.BadRowError, ValueError: see `load_problems`.
    """
    d = cfg.data
    return load_problems(
        d.heldout,
        split=d.heldout_split,
        n=d.heldout_n,
        seed=cfg.trainer.seed + 1,
        levels=list(d.arithmetic_levels),
        on_bad_row=d.on_bad_row.value,
    )


class HeldoutEval:
    """Evaluates the engine's current weights on the held-out set (one greedy sample per problem
    by default, `evaluate`) and keeps each result under a name.

    Args:
        cfg: the run's config (template, verifier spec, ``trainer.eval_*``).
        engine: the rollout engine.
        tokenizer: the policy's tokenizer.
        problems: the held-out problems (`load_heldout`).
        verifier: the run's reward verifier.
        evals: results so far (a resumed run's), by name.
    """

    def __init__(
        self,
        cfg: RunConfig,
        engine: RolloutEngine,
        tokenizer: Any,
        problems: list[Problem],
        verifier: Verifier,
        evals: dict[str, EvalResult] | None = None,
    ) -> None:
        d, tr = cfg.data, cfg.trainer
        self.bench = Benchmark(
            "heldout",
            d.heldout,
            d.template,
            dict(cfg.reward.verifier),
            Sampling(1, tr.eval_temperature, 1.0, tr.eval_max_tokens),
            d.heldout_split,
        )
        self.engine, self.tokenizer, self.problems, self.verifier = engine, tokenizer, problems, verifier
        self.evals: dict[str, EvalResult] = dict(evals or {})

    def __call__(self, name: str) -> EvalResult:
        """Evaluate now, store and log the result as `name`, and return it."""
        e = self.evals[name] = evaluate(self.engine, self.tokenizer, self.bench, self.problems, self.verifier)
        log.info(
            "held-out accuracy %-10s %s (mean length %.1f tokens, %.0f%% well formed%s)",
            name,
            e.accuracy,
            e.mean_len,
            100 * e.well_formed,
            f", {100 * e.tool_use:.0f}% called a tool, {e.tool_calls:.2f} calls an episode"
            if e.turns > 1 or e.tool_calls
            else "",
        )
        return e
