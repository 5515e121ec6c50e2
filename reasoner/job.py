"""What every training job shares (``reasoner-train``, ``reasoner-sft``, the recipe stages):
seeding, the held-out set and its evaluation, exporting the policy, memory housekeeping."""

from __future__ import annotations

import ctypes
import gc
import logging
import random
import resource
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eval.benchmarks import Benchmark, Sampling
from reasoner.config import RunConfig, TrainerConfig
from reasoner.data import load_problems
from reasoner.evaluate import EvalResult, evaluate
from reasoner.rollout.base import RolloutEngine
from reasoner.types import Problem
from verifiers.base import Verifier

log = logging.getLogger("reasoner")


def setup_process(tr: TrainerConfig) -> None:
    """Seed Python, NumPy and torch with ``trainer.seed``; set torch's intra-op threads
    (``trainer.threads``, 0 = leave as is); keep freed memory for reuse if ``trainer.reuse_heap``."""
    random.seed(tr.seed)
    np.random.seed(tr.seed)
    torch.manual_seed(tr.seed)
    if tr.threads:
        torch.set_num_threads(tr.threads)
    if tr.reuse_heap and not reuse_heap():
        log.info("trainer.reuse_heap: not glibc, left the allocator as it is")


#: glibc ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def reuse_heap() -> bool:
    """Make glibc keep freed memory for reuse: no ``mmap`` for large blocks (glibc maps every
    block over 32 MB afresh, so each (tokens x vocabulary) logits tensor of every step
    page-faults and zeroes new pages) and no trimming of the heap top. Call once, early; the
    per-step `release_free_heap` must then be skipped. Returns False where glibc is absent.

    Measured (a GRPO update of 2 prompts x 8 completions of up to 128 tokens on the embedded
    default, 2 cores; BENCHMARKS.md "Profile of the GRPO step"): 14.7-18.8 s per update with
    7.8-11.4 s of system CPU time before, 8.1-10.2 s with 0.1-2.6 s after.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):
        return False


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
    by default, `reasoner.evaluate.evaluate`) and keeps each result under a name.

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
            "held-out accuracy %-10s %s (mean length %.1f tokens, %.0f%% well formed)",
            name,
            e.accuracy,
            e.mean_len,
            100 * e.well_formed,
        )
        return e


def export_policy(policy: torch.nn.Module, tokenizer: Any, path: Path) -> None:
    """Write the policy as an HF model directory (bf16 safetensors + tokenizer), loadable by
    vLLM and transformers and by the next stage of a recipe; the in-memory model stays fp32."""
    policy.to(torch.bfloat16).save_pretrained(str(path), safe_serialization=True)
    tokenizer.save_pretrained(str(path))
    policy.to(torch.float32)


def peak_rss_gb() -> dict[str, float]:
    """Peak resident memory of this process and of its waited-for children, GB."""
    kb_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kb_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"peak_rss_gb": kb_self / 2**20, "peak_rss_children_gb": kb_children / 2**20}


def release_free_heap() -> None:
    """Hand freed heap memory back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    The learner's per-step tensors vary in size, so glibc keeps growing heap arenas that it
    never returns: measured on the embedded default, the process grew 0.7 GB over 40 steps.
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
