"""What every job shares (``reasoner-train``, ``reasoner-sft``, rejection sampling, the recipe
stages): the preamble (`open_run`: seeding, model, tokenizer, held-out set, engine, verifier),
the evaluation-overlap filter, the cold start, exporting a model, memory housekeeping."""

from __future__ import annotations

import ctypes
import gc
import logging
import random
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from eval.benchmarks import get_benchmark
from reasoner.config import CONF_DIR, HeapTrim, RunConfig, TrainerConfig, register_configs, to_config
from reasoner.data import GENERATED, load_problems
from reasoner.data.decontaminate import OverlapFilter, training_pool
from reasoner.data.preferences import PairTokens, load_pairs, split_pairs, tokenize_pairs
from reasoner.distributed.cluster import RayCluster
from reasoner.envs.base import Environment
from reasoner.envs.episodes import EpisodeEngine
from reasoner.envs.registry import build_environment
from reasoner.envs.render import ToolMessages
from reasoner.jobs.heldout import HeldoutEval, load_heldout
from reasoner.models import load_tokenizer, resolve_model_path
from reasoner.rollout import make_engine
from reasoner.rollout.base import GuardedEngine, RolloutEngine
from reasoner.rollout.sync import named_weights, push_weights
from reasoner.sft import SFTStats, run_sft
from reasoner.types import Problem
from verifiers.base import Verifier
from verifiers.registry import build_verifier

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
    """Make glibc keep freed memory for reuse within a training step: no ``mmap`` for large
    blocks (glibc maps every block over 32 MB afresh, so each (tokens x vocabulary) logits tensor
    of every micro-batch page-faults and zeroes new pages) and no trimming of the heap top on
    ``free``. Call once, early. The jobs still hand the free heap back when it creeps past a
    slack (`HeapTrimmer`). Returns False where glibc is absent.

    The effect on a GRPO update is measured in BENCHMARKS.md ("Profile of the GRPO step").
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):
        return False


def peak_rss_gb() -> dict[str, float]:
    """Peak resident memory of this process and of its waited-for children, GB."""
    kb_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kb_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"peak_rss_gb": kb_self / 2**20, "peak_rss_children_gb": kb_children / 2**20}


def release_free_heap() -> None:
    """Hand freed heap memory back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    The learner's per-step tensors vary in size, so glibc keeps growing heap arenas that it
    never returns (the growth over a run: BENCHMARKS.md, "Figures moved from code comments").
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def resident_bytes() -> int:
    """This process's resident memory now, bytes (``/proc/self/statm``; 0 where there is none)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except (OSError, IndexError, ValueError):
        return 0


#: how far resident memory at the end of a step may creep above its first step's, GiB (`HeapTrimmer`)
HEAP_SLACK_GB = 0.5


class HeapTrimmer:
    """Called after every step of a training loop (the cold start, RL, reward model, DPO):
    hands the free heap back to the OS
    (`release_free_heap`) once resident memory at the end of a step exceeds, by more than
    `slack_gb` GiB, what it was at the end of the first step after the last hand-back.

    A step's tensors vary in size (sequence lengths), so a heap that keeps freed memory
    (`reuse_heap`) fragments and creeps up step after step; trimming after every step stops
    the creep but makes the next step page-fault its whole working set again. Trimming only
    past the slack does both: the peak stays within `slack_gb` of one step's, and most steps
    reuse their pages (measured: BENCHMARKS.md "Memory of the main job").
    """

    def __init__(self, slack_gb: float = HEAP_SLACK_GB) -> None:
        self.slack = slack_gb * 2**30
        self.floor: int | None = None

    def __call__(self) -> bool:
        """Trim if the creep is past the slack; returns whether it trimmed."""
        rss = resident_bytes()
        if self.floor is None:
            self.floor = rss
            return False
        if rss - self.floor <= self.slack:
            return False
        release_free_heap()
        self.floor = None
        return True


def step_trimmer(policy: HeapTrim) -> Callable[[], object]:
    """What the RL loop calls after every step (``trainer.heap_trim``): `release_free_heap`
    (``step``), or a `HeapTrimmer` (``slack``)."""
    return release_free_heap if policy is HeapTrim.step else HeapTrimmer()


@dataclass
class RunContext:
    """What a job opens before its own work (`open_run`)."""

    model_path: str
    tokenizer: Any
    heldout: list[Problem]
    engine: RolloutEngine
    verifier: Verifier
    heldout_eval: HeldoutEval
    #: the multi-turn environment (``env``), its episodes run by `engine`; None: single-turn
    environment: Environment | None = None


def open_run(
    cfg: RunConfig,
    engine_seed: int,
    evals: dict | None = None,
    heldout: list[Problem] | None = None,
    verifier: Verifier | None = None,
    model_path: str | None = None,
    cluster: RayCluster | None = None,
) -> RunContext:
    """The job preamble: seed the process (`setup_process`), build the verifier (first: a bad
    verifier config fails in seconds, before any model loads), load the held-out set and resolve
    the model path, each unless the caller did (`verifier`, `heldout`, `model_path`), load the
    tokenizer, start the rollout engine (seeded with `engine_seed`; on `cluster`, its engines),
    and set up the held-out evaluation (with a resumed run's results `evals`).

    Raises:
        FileNotFoundError: the model or a data source is missing (says what was looked for).
        reasoner.data.BadRowError: a bad held-out row, with ``data.on_bad_row=error``.
        ValueError, TypeError: ``reward.verifier`` cannot be built (`verifiers.registry.build_verifier`),
            or ``env`` (`reasoner.envs.registry.build_environment`).
    """
    setup_process(cfg.trainer)
    verifier = build_verifier(cfg.reward.verifier) if verifier is None else verifier
    heldout = load_heldout(cfg) if heldout is None else heldout
    model_path = str(resolve_model_path(cfg.model.path)) if model_path is None else model_path
    environment = build_environment(cfg.env)  # before the engine: a missing sandbox or corpus fails fast
    tokenizer = load_tokenizer(model_path)
    engine: RolloutEngine
    if cluster is None:
        engine = make_engine(cfg.rollout.backend, model_path, cfg.rollout, engine_seed)
    else:
        engines = cluster.engines(cfg.rollout.backend, model_path, cfg.rollout, engine_seed)
        engine = GuardedEngine(engines, f"{cfg.rollout.backend.value} on ray")
    if environment is not None:
        engine = EpisodeEngine(engine, environment, tokenizer, cfg.env, cfg.rollout.max_model_len)
    heldout_eval = HeldoutEval(cfg, engine, tokenizer, heldout, verifier, evals)
    return RunContext(model_path, tokenizer, heldout, engine, verifier, heldout_eval, environment)


def overlap_filter(benchmarks: list[str], ngram: int, heldout: list[Problem]) -> OverlapFilter:
    """The evaluation-overlap filter of training data (``data.decontaminate``,
    ``data.decontaminate_ngram``): every problem of the named benchmarks (`eval.benchmarks`) and of
    the run's held-out set.

    Raises:
        ValueError: an unknown benchmark name.
    """
    texts = [(name, p.problem) for name in benchmarks for p in get_benchmark(name).problems()]
    return OverlapFilter([*texts, *(("heldout", p.problem) for p in heldout)], ngram)


def sft_rows(cfg: RunConfig, exclude: list[str] = ()) -> list[Problem]:
    """The rows of ``sft.source`` that have a worked solution (texts in `exclude` left out); rows
    without one are left out and counted in the log.

    Raises:
        FileNotFoundError, reasoner.data.BadRowError: see `reasoner.data.load_problems`.
        ValueError: no row has a ``solution`` (the cold start has nothing to train on).
    """
    d, s = cfg.data, cfg.sft
    problems = load_problems(
        s.source,
        n=s.examples if s.source in GENERATED else None,
        seed=cfg.trainer.seed + 3,
        levels=list(d.arithmetic_levels),
        exclude=exclude,
        on_bad_row=d.on_bad_row.value,
        terse_fraction=s.terse_fraction,
        tool_fraction=s.tool_fraction if cfg.env.enabled else 0.0,
    )
    solved = [p for p in problems if p.solution]
    if not solved:
        raise ValueError(
            f"sft.source={s.source}: none of its {len(problems)} rows has a 'solution' field, which the cold start "
            "trains on: add worked solutions, point sft.source at data that has them, or set sft.enabled=false"
        )
    if len(solved) < len(problems):
        log.info(
            "sft.source=%s: %d of %d rows have no solution and are left out",
            s.source,
            len(problems) - len(solved),
            len(problems),
        )
    return solved


def load_sft_problems(cfg: RunConfig, heldout: list[Problem], exclude: list[str] = ()) -> tuple[list[Problem], dict]:
    """The SFT examples of ``sft.source``: loaded (texts in `exclude` left out), deduplicated
    (same problem and target), cleaned of problems that overlap the evaluation sets
    (`overlap_filter`), then the first ``sft.examples``. Returns (problems, the cleaning report:
    counts and dropped ids with reasons).

    Raises:
        FileNotFoundError, reasoner.data.BadRowError: see `reasoner.data.load_problems`.
        ValueError: nothing is left after cleaning.
    """
    d, s = cfg.data, cfg.sft
    problems = sft_rows(cfg, exclude)
    return training_pool(
        problems,
        overlap_filter(d.decontaminate, d.decontaminate_ngram, heldout),
        s.examples,
        f"sft.source={s.source}",
        key="problem+solution",
    )


def cold_start(cfg: RunConfig, run: RunContext, policy: torch.nn.Module, exclude: list[str]) -> tuple[SFTStats, dict]:
    """Supervised fine-tuning of `policy` on ``sft.source`` (`load_sft_problems`, `run_sft`),
    then its weights into the engine. Returns (the SFT figures, the data-cleaning report)."""
    problems, cleaning = load_sft_problems(cfg, run.heldout, exclude)
    log.info("cold start data: %d examples from %s", len(problems), cfg.sft.source)
    env = run.environment
    stats = run_sft(
        policy,
        run.tokenizer,
        problems,
        cfg.data.template,
        cfg.sft,
        cfg.trainer.bf16_autocast,
        cfg.trainer.seed,
        after_step=HeapTrimmer(),
        tools=None if env is None else (env, ToolMessages(run.tokenizer, cfg.env.max_observation_tokens)),
    )
    log.info("cold start: %s", stats)
    release_free_heap()
    push_weights(run.engine, named_weights(policy))
    return stats, cleaning


def hydra_job(job: Callable[[RunConfig, Path, list[str]], Any]) -> Callable[[], None]:
    """A console entry point that composes the run's Hydra config (``conf/config.yaml`` and the
    command line), checks it (`reasoner.config.to_config`) and calls ``job(config, run directory,
    command-line overrides)``. Call the result under ``__main__`` (vLLM spawns workers)."""
    import hydra
    from omegaconf import DictConfig

    register_configs()

    @hydra.main(version_base=None, config_path=CONF_DIR, config_name="config")
    def _main(cfg: DictConfig) -> None:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        job(to_config(cfg), Path(hc.runtime.output_dir), list(hc.overrides.task))

    return _main


@dataclass
class PairSplit:
    """Preference pairs as a job trains on them: the training and held-out pairs' tokens, and how
    many pairs were dropped as longer than the group's ``max_tokens``."""

    train: list[PairTokens]
    heldout: list[PairTokens]
    dropped: int


def pair_split(cfg: RunConfig, group: str, tokenizer: Any) -> PairSplit:
    """The pairs of ``<group>.source`` (`group`: ``rm`` or ``dpo``; ``data.on_bad_row`` applies),
    split by prompt (``<group>.heldout_fraction``, seeded by ``trainer.seed``) and tokenized with
    ``data.template`` (`reasoner.data.preferences`).

    Raises:
        ValueError: ``<group>.source`` is not set, the split leaves a side empty, or every
            training pair is longer than ``<group>.max_tokens`` (each names the field).
        FileNotFoundError, reasoner.data.BadRowError: a missing pairs file, a bad row.
    """
    g = getattr(cfg, group)
    if not g.source:
        raise ValueError(f"{group}.source is not set: point it at preference pairs (reasoner-pairs writes pairs.jsonl)")
    pairs = load_pairs(g.source, on_bad_row=cfg.data.on_bad_row.value)
    train, held = split_pairs(pairs, g.heldout_fraction, cfg.trainer.seed, f"{group}.heldout_fraction")
    train_tok, dropped = tokenize_pairs(tokenizer, train, cfg.data.template, g.max_tokens)
    held_tok, held_dropped = tokenize_pairs(tokenizer, held, cfg.data.template, g.max_tokens)
    if not train_tok:
        raise ValueError(f"{group}.max_tokens={g.max_tokens}: every one of the {dropped} training pairs is longer")
    return PairSplit(train_tok, held_tok, dropped + held_dropped)
