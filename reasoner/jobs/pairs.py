"""``reasoner-pairs``: preference pairs from a model's own samples, graded by the verifier.

    reasoner-pairs model.path=outputs/coldstart/checkpoint hydra.run.dir=outputs/pairs

Each RL prompt of the run (``data.train`` without the held-out set, exactly the prompts
``reasoner-train`` would draw with the same ``trainer.*`` and ``data.*``) is sampled
``pairs.samples`` times (default ``algorithm.sampling.group_size``: with ``data.train=arithmetic``,
whose prompts are exactly steps x prompts per step, the same budget of sampled completions as a
GRPO run) at ``rollout.temperature`` / ``rollout.top_p`` / ``rollout.max_tokens``. The reward's
verifier grades each. Empty completions and those cut at the token budget are left out (a cut
one never ended: the end-of-turn token the pair's sequence ends with would be one the model did
not write). Of the (correct, wrong) combinations of one prompt's distinct completions,
``pairs.pairs_per_prompt`` drawn at random are kept (a completion may be in several pairs, as in
UltraFeedback-style pairing). Prompts whose samples are all correct or all wrong give none.

Output: ``run_dir/pairs.jsonl`` (`reasoner.data.preferences`, with the reference answer and the
sample numbers), ``run_dir/summary.json`` (counts, the samples' accuracy).
"""

from __future__ import annotations

import json
import logging
import random
import time
from itertools import product
from pathlib import Path
from typing import Sequence

from eval.benchmarks import Benchmark, Sampling
from eval.runner import fit_max_tokens, longest_prompt, sample_benchmark
from eval.samples import Sample
from reasoner.config import RunConfig, save_config
from reasoner.data.preferences import PreferencePair, write_pairs
from reasoner.jobs.common import hydra_job, open_run, peak_rss_gb
from reasoner.jobs.rl import load_rl_prompts
from reasoner.types import Problem

log = logging.getLogger("reasoner")


def make_pairs(
    samples: Sequence[Sample], problems: Sequence[Problem], per_prompt: int, rng: random.Random
) -> list[PreferencePair]:
    """Pair correct with wrong samples of each problem (module docstring), in problem order;
    which combinations is drawn by `rng`."""
    by_problem: dict[str, list[Sample]] = {}
    for s in samples:
        by_problem.setdefault(s.problem_id, []).append(s)
    pairs = []
    for p in problems:
        usable = [s for s in by_problem.get(p.id, []) if s.completion.strip() and not s.truncated]
        distinct = {s.completion: s for s in usable}.values()
        right = [s for s in distinct if s.correct]
        wrong = [s for s in distinct if not s.correct]
        combos = list(product(right, wrong))
        rng.shuffle(combos)
        for c, w in combos[:per_prompt]:
            meta = {"chosen_sample": c.index, "rejected_sample": w.index, "rejected_reason": w.reason}
            pair_id = f"{p.id}#{c.index}>{w.index}"
            pairs.append(PreferencePair(pair_id, p.problem, c.completion, w.completion, 0.0, p.answer, meta))
    return pairs


def run_pairs(cfg: RunConfig, run_dir: Path, overrides: list[str] = ()) -> dict:
    """Sample, grade and pair (module docstring); write ``pairs.jsonl`` and ``summary.json`` under
    `run_dir` and return the summary.

    Raises:
        FileNotFoundError, reasoner.data.BadRowError: a missing model or source, a bad row.
        ValueError: no prompt is left, or a prompt fills the context.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    save_config(cfg, run_dir, overrides)
    tr, ro = cfg.trainer, cfg.rollout
    run = open_run(cfg, tr.seed)
    problems = load_rl_prompts(cfg, run.heldout, None)
    n = cfg.pairs.samples or cfg.algorithm.sampling.group_size
    draw = Sampling(n, ro.temperature, ro.top_p, ro.max_tokens)
    bench = Benchmark("pairs", cfg.data.train, cfg.data.template, dict(cfg.reward.verifier), draw)
    sampling = fit_max_tokens(bench.sampling, longest_prompt(run.tokenizer, bench, problems), ro.max_model_len)
    samples = sample_benchmark(run.engine, run.tokenizer, bench, problems, sampling, run.verifier, chunk=64)
    run.verifier.close()
    pairs = make_pairs(samples, problems, cfg.pairs.pairs_per_prompt, random.Random(tr.seed))
    write_pairs(run_dir / "pairs.jsonl", pairs)
    summary = {
        "pairs": str(run_dir / "pairs.jsonl"),
        "prompts": len(problems),
        "samples": len(samples),
        "sample_accuracy": sum(s.correct for s in samples) / max(len(samples), 1),
        "left_out_empty_or_truncated": sum(not s.completion.strip() or s.truncated for s in samples),
        "pair_count": len(pairs),
        "prompts_with_a_pair": len({p.prompt for p in pairs}),
        "model": run.model_path,
        "wall_seconds": time.perf_counter() - began,
        **peak_rss_gb(),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info(
        "pairs: %d from %d prompts (%d samples, %.1f%% correct)",
        len(pairs),
        len(problems),
        len(samples),
        100 * summary["sample_accuracy"],
    )
    return summary


main = hydra_job(run_pairs)


if __name__ == "__main__":
    main()
