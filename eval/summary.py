"""A benchmark's scored samples reduced to its metrics (pure functions; no model, no verifier).

For N problems with n samples each, problem i having c_i correct:

- avg@n = mean_i c_i / n, the mean accuracy over samples (equal to pass@1);
- pass@k = mean_i pass_at_k(n, c_i, k) for k = 1..n (Chen et al. 2021, Eq. 1; `eval.metrics`);
- maj@k = mean_i [the majority answer of samples 0..k-1 is correct] (`eval.metrics.majority_correct`;
  samples are i.i.d., so the first k are a random k-subset), for benchmarks that vote;
- lengths: mean and median completion tokens over all N n samples; truncation rate = share
  of samples that hit the token budget;
- the breakdown: avg@n over the problems of each value of a `Problem.meta` key (MATH-500 level,
  subject).

Every rate carries the 95% interval of `eval.metrics.mean_score` over problems.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from eval.benchmarks import Benchmark, Sampling
from eval.metrics import Proportion, majority_correct, mean_score, pass_at_k
from eval.samples import Sample
from reasoner.types import Problem
from verifiers.math.normalize import normalize


@dataclass(frozen=True)
class ProblemScore:
    """One problem's result: `correct` of its n samples right; `majority`: maj@n (None when the
    benchmark does not vote)."""

    correct: int
    majority: bool | None


@dataclass
class BenchmarkSummary:
    """A benchmark's metrics (see the module docstring).

    Attributes:
        benchmark: name.
        sampling: the sampling the samples were drawn with.
        avg: avg@n.
        pass_at: k -> pass@k for k = 1..n.
        maj_at: k -> maj@k for k = 1..n; empty when the benchmark does not vote.
        mean_len, median_len: completion length, tokens.
        truncated: fraction of samples that hit ``sampling.max_tokens``.
        breakdown: meta key -> value -> avg@n over the problems with that value.
        per_problem: problem id -> `ProblemScore` (for paired comparisons).
    """

    benchmark: str
    sampling: Sampling
    avg: Proportion
    pass_at: dict[int, Proportion]
    maj_at: dict[int, Proportion]
    mean_len: float
    median_len: float
    truncated: float
    breakdown: dict[str, dict[str, Proportion]]
    per_problem: dict[str, ProblemScore]

    @property
    def problems(self) -> int:
        return len(self.per_problem)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (`from_dict` reads it back)."""
        return {
            "benchmark": self.benchmark,
            "sampling": asdict(self.sampling),
            "problems": self.problems,
            "avg": _prop_dict(self.avg),
            "pass_at": {str(k): _prop_dict(p) for k, p in self.pass_at.items()},
            "maj_at": {str(k): _prop_dict(p) for k, p in self.maj_at.items()},
            "mean_len": self.mean_len,
            "median_len": self.median_len,
            "truncated": self.truncated,
            "breakdown": {key: {v: _prop_dict(p) for v, p in values.items()} for key, values in self.breakdown.items()},
            "per_problem": {pid: asdict(s) for pid, s in self.per_problem.items()},
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> BenchmarkSummary:
        """Inverse of `to_dict`."""
        return BenchmarkSummary(
            benchmark=d["benchmark"],
            sampling=Sampling(**d["sampling"]),
            avg=_prop(d["avg"]),
            pass_at={int(k): _prop(p) for k, p in d["pass_at"].items()},
            maj_at={int(k): _prop(p) for k, p in d["maj_at"].items()},
            mean_len=d["mean_len"],
            median_len=d["median_len"],
            truncated=d["truncated"],
            breakdown={key: {v: _prop(p) for v, p in values.items()} for key, values in d["breakdown"].items()},
            per_problem={pid: ProblemScore(**s) for pid, s in d["per_problem"].items()},
        )


def _prop_dict(p: Proportion) -> dict[str, float]:
    return {"value": p.value, "low": p.low, "high": p.high, "k": p.k, "n": p.n}


def _prop(d: dict[str, float]) -> Proportion:
    return Proportion(d["k"], int(d["n"]), d["low"], d["high"])


def vote_key(sample: Sample) -> str | None:
    """What a sample votes with in maj@k: its extracted answer in canonical form
    (`verifiers.math.normalize.normalize`), so ``\\frac12`` and ``\\dfrac{1}{2}`` vote alike."""
    return None if sample.extracted is None else normalize(sample.extracted)


def summarize(
    bench: Benchmark, sampling: Sampling, problems: Sequence[Problem], samples: Sequence[Sample]
) -> BenchmarkSummary:
    """Metrics of `bench` over `problems` from their samples 0..n-1 (others are ignored).

    Raises:
        ValueError: no problems, or a problem lacks some of its n samples (named).
    """
    n = sampling.n
    if not problems:
        raise ValueError(f"{bench.name}: no problems to summarize")
    by_problem: dict[str, dict[int, Sample]] = defaultdict(dict)
    for s in samples:
        if s.benchmark == bench.name and s.index < n:
            by_problem[s.problem_id][s.index] = s
    rows: list[list[Sample]] = []
    for p in problems:
        got = by_problem.get(p.id, {})
        if len(got) < n:
            raise ValueError(
                f"{bench.name}: problem {p.id!r} has {len(got)} of its {n} samples "
                "(run the evaluation to completion first)"
            )
        rows.append([got[i] for i in range(n)])
    correct = [sum(s.correct for s in row) for row in rows]
    # majority[i][k - 1]: maj@k of problem i (its first k samples vote)
    majority = (
        [
            [majority_correct([vote_key(s) for s in row[:k]], [s.correct for s in row[:k]]) for k in range(1, n + 1)]
            for row in rows
        ]
        if bench.vote
        else None
    )
    maj_at_n = [m[-1] for m in majority] if majority is not None else [None] * len(rows)
    lengths = [s.tokens for row in rows for s in row]
    breakdown: dict[str, dict[str, Proportion]] = {}
    for key in bench.breakdown:
        groups: dict[str, list[float]] = defaultdict(list)
        for p, c in zip(problems, correct):
            if key in p.meta:
                groups[str(p.meta[key])].append(c / n)
        breakdown[key] = {value: mean_score(groups[value]) for value in sorted(groups)}
    return BenchmarkSummary(
        benchmark=bench.name,
        sampling=sampling,
        avg=mean_score([c / n for c in correct]),
        pass_at={k: mean_score([pass_at_k(n, c, k) for c in correct]) for k in range(1, n + 1)},
        maj_at={}
        if majority is None
        else {k: mean_score([float(m[k - 1]) for m in majority]) for k in range(1, n + 1)},
        mean_len=statistics.fmean(lengths),
        median_len=float(statistics.median(lengths)),
        truncated=sum(s.truncated for row in rows for s in row) / len(lengths),
        breakdown=breakdown,
        per_problem={p.id: ProblemScore(c, m) for p, c, m in zip(problems, correct, maj_at_n)},
    )
