"""Rejection sampling (DeepSeek-R1, arXiv:2501.12948, §2.3.3): sample k completions per problem
from a model, keep those the verifier accepts, and write them as an SFT dataset.

A completion is kept when the verifier marks it correct, it was not truncated (unless
``rejection.drop_truncated`` is off), and (with
``rejection.require_format``) the format verifier accepts it (for ``r1``: one
``<think>...</think>`` block, then a boxed answer); at most ``rejection.keep_per_problem`` per
problem, the shortest first with ``rejection.shortest`` (else in sampling order), identical
texts once. Problems are drawn from ``rejection.source`` without the held-out set, after the
evaluation-overlap filter (`reasoner.data.decontaminate`).

Output, ``run_dir/data.jsonl``: one row per kept completion, ``{"id", "problem", "answer",
"solution": <the completion>, "target": "verbatim", "provenance": {...}}`` (model, source
problem id, sample index, sampling settings, seed, length in tokens, the verifier's reason),
loadable as ``sft.source``; ``run_dir/summary.json`` has the counts.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Sequence

from eval.benchmarks import Benchmark, Sampling
from eval.runner import fit_max_tokens, longest_prompt, sample_benchmark
from eval.samples import Sample
from reasoner.config import RejectionConfig, RunConfig
from reasoner.data import GENERATED, load_problems
from reasoner.data.decontaminate import training_pool
from reasoner.jobs.common import open_run, overlap_filter, peak_rss_gb
from reasoner.prompts import Template
from reasoner.types import Problem
from verifiers.format import verify_format

log = logging.getLogger("reasoner")


def select(samples: Sequence[Sample], r: RejectionConfig, template: Template) -> list[Sample]:
    """The samples to keep (see the module docstring), grouped by problem in first-seen order."""
    by_problem: dict[str, list[Sample]] = {}
    for s in samples:
        ok = (
            s.correct
            and not (r.drop_truncated and s.truncated)
            and (not r.require_format or verify_format(s.completion, template.value).correct)
        )
        if ok:
            by_problem.setdefault(s.problem_id, []).append(s)
    kept = []
    for group in by_problem.values():
        if r.shortest:
            group = sorted(group, key=lambda s: (s.tokens, s.index))
        texts: set[str] = set()
        for s in group:
            if s.completion not in texts and len(texts) < r.keep_per_problem:
                texts.add(s.completion)
                kept.append(s)
    return kept


def to_rows(
    kept: Sequence[Sample], problems: Sequence[Problem], model: str, cfg: RunConfig, max_tokens: int
) -> list[dict]:
    """Dataset rows with provenance for the kept samples (`max_tokens`: the budget they were
    sampled with, ``rejection.max_tokens`` cut to the context)."""
    by_id = {p.id: p for p in problems}
    r = cfg.rejection
    rows = []
    for s in kept:
        p = by_id[s.problem_id]
        provenance = {
            "model": model,
            "source": r.source,
            "problem_id": p.id,
            "sample": s.index,
            "temperature": r.temperature,
            "top_p": r.top_p,
            "max_tokens": max_tokens,
            "seed": cfg.trainer.seed,
            "tokens": s.tokens,
            "verifier": s.reason,
        }
        rows.append(
            {
                "id": f"{p.id}#{s.index}",
                "problem": p.problem,
                "answer": p.answer,
                "solution": s.completion,
                "target": "verbatim",
                "provenance": provenance,
            }
        )
    return rows


def run_rejection(cfg: RunConfig, run_dir: Path) -> dict:
    """Sample, verify and keep (module docstring); write ``data.jsonl`` and ``summary.json``
    under `run_dir` and return the summary.

    Raises:
        FileNotFoundError, reasoner.data.BadRowError: a missing model or source, a bad row.
        ValueError: no problem is left after the overlap filter, or a prompt fills the context.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    r, d, tr = cfg.rejection, cfg.data, cfg.trainer
    run = open_run(cfg, tr.seed)
    tokenizer, engine, verifier, model_path = run.tokenizer, run.engine, run.verifier, run.model_path
    seen = [p.problem for p in run.heldout]
    pool = load_problems(
        r.source,
        n=r.problems if r.source in GENERATED else None,
        seed=tr.seed + 4,
        levels=list(d.arithmetic_levels),
        exclude=seen,
        on_bad_row=d.on_bad_row.value,
    )
    problems, cleaning = training_pool(
        pool,
        overlap_filter(d.decontaminate, d.decontaminate_ngram, run.heldout),
        r.problems,
        f"rejection.source={r.source}",
    )
    bench = Benchmark(
        "rejection",
        r.source,
        d.template,
        dict(cfg.reward.verifier),
        Sampling(r.samples, r.temperature, r.top_p, r.max_tokens),
    )
    sampling = fit_max_tokens(bench.sampling, longest_prompt(tokenizer, bench, problems), cfg.rollout.max_model_len)
    samples = sample_benchmark(engine, tokenizer, bench, problems, sampling, verifier, chunk=64)
    verifier.close()
    kept = select(samples, r, d.template)
    rows = to_rows(kept, problems, str(model_path), cfg, sampling.max_tokens)
    with (run_dir / "data.jsonl").open("w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    summary = {
        "data": str(run_dir / "data.jsonl"),
        "problems": len(problems),
        "samples": len(samples),
        "correct": sum(s.correct for s in samples),
        "kept": len(rows),
        "problems_with_a_kept_sample": len({s.problem_id for s in kept}),
        "kept_mean_tokens": sum(s.tokens for s in kept) / max(len(kept), 1),
        "sampled_mean_tokens": sum(s.tokens for s in samples) / max(len(samples), 1),
        "cleaning": cleaning,
        "model": str(model_path),
        "wall_seconds": time.perf_counter() - began,
        **peak_rss_gb(),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info(
        "rejection sampling: kept %d of %d samples (%d correct) from %d problems",
        len(rows),
        len(samples),
        summary["correct"],
        len(problems),
    )
    return summary
