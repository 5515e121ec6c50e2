"""One GRPO step, top to bottom: sample prompts, generate, verify, advantages, update, sync."""

from __future__ import annotations

import random
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

from reasoner.algorithms.advantages import grpo_advantages
from reasoner.config import RunConfig
from reasoner.data import prompt_ids
from reasoner.learner import Learner
from reasoner.rewards import score
from reasoner.rollout.base import RolloutEngine, check_sync, sync_weights
from reasoner.types import Problem, PromptBatch, RolloutBatch, ScoredBatch, TrainBatch
from verifiers.base import Verifier


class PromptSampler:
    """Cycles through problems in a seeded shuffled order, reshuffling each epoch."""

    def __init__(self, problems: Sequence[Problem], seed: int) -> None:
        if not problems:
            raise ValueError("no training problems")
        self.problems, self.seed = list(problems), seed
        self.epoch, self.pos = 0, 0
        self._order = self._shuffled()

    def _shuffled(self) -> list[int]:
        order = list(range(len(self.problems)))
        random.Random(self.seed + self.epoch).shuffle(order)
        return order

    def next_batch(self, b: int) -> list[Problem]:
        out = []
        while len(out) < b:
            if self.pos == len(self._order):
                self.epoch, self.pos = self.epoch + 1, 0
                self._order = self._shuffled()
            out.append(self.problems[self._order[self.pos]])
            self.pos += 1
        return out


@dataclass
class SyncProbe:
    """A fixed prompt + completion whose log-probs are compared after every weight sync."""

    token_ids: list[int]
    prompt_len: int


class Timer:
    """Named wall-clock phases, in seconds."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def to_train_batch(scored: ScoredBatch, advantages: torch.Tensor) -> TrainBatch:
    """Flatten (B, G) groups into N = B*G sequences with their advantages."""
    seqs, plens, sampler = [], [], []
    for prompt, group in zip(scored.rollouts.prompts.prompt_ids, scored.rollouts.completions):
        for c in group:
            seqs.append(prompt + c.token_ids)
            plens.append(len(prompt))
            sampler.append(c.logprobs)
    return TrainBatch(seqs, plens, advantages.reshape(-1), sampler)


def rl_step(
    sampler: PromptSampler,
    engine: RolloutEngine,
    verifier: Verifier,
    learner: Learner,
    tokenizer: Any,
    cfg: RunConfig,
    probe: SyncProbe | None,
) -> dict[str, float]:
    """Run one step; return its metrics (keys prefixed by phase: reward/, response/, policy/, time/)."""
    timer, start = Timer(), time.perf_counter()
    problems = sampler.next_batch(cfg.trainer.prompts_per_step)
    prompts = PromptBatch(problems, [prompt_ids(tokenizer, p.problem, cfg.data.template) for p in problems])
    with timer("generate"):
        r = cfg.rollout
        completions = engine.generate(prompts.prompt_ids, cfg.algorithm.group_size, r.temperature, r.top_p, r.max_tokens)
    with timer("verify"):
        scored = score(RolloutBatch(prompts, completions), verifier, cfg.reward, cfg.data.template)
    with timer("learner"):
        adv = grpo_advantages(scored.rewards, cfg.algorithm.scale_by_std, cfg.algorithm.adv_eps)
        stats = learner.update(to_train_batch(scored, adv))
    sync_diff = float("nan")
    with timer("weight_sync"):
        sync_weights(engine, learner.model)
        if probe is not None:
            sync_diff = check_sync(engine, learner.model, probe.token_ids, probe.prompt_len, cfg.rollout.sync_check_tol)
    lengths = torch.tensor([len(c.token_ids) for g in completions for c in g], dtype=torch.float32)
    elapsed = time.perf_counter() - start
    timeouts = sum(v.reason == "timeout" for row in scored.verdicts for v in row)
    return {
        "reward/mean": float(scored.rewards.mean()),
        "reward/accuracy": float(scored.correct.float().mean()),
        "reward/verify_timeouts": float(timeouts),
        "response/len_mean": float(lengths.mean()),
        "response/len_max": float(lengths.max()),
        "response/truncated_frac": sum(c.truncated for g in completions for c in g) / lengths.numel(),
        "groups/zero_var_frac": float((scored.rewards.std(dim=1) == 0).float().mean()),
        "policy/loss": stats.loss,
        "policy/kl": stats.kl,
        "policy/entropy": stats.entropy,
        "policy/clip_frac": stats.clip_frac,
        "policy/grad_norm": stats.grad_norm,
        "policy/sampler_logprob_mismatch": stats.logprob_mismatch,
        "sync/logprob_diff": sync_diff,
        **{f"time/{k}": v for k, v in timer.seconds.items()},
        "time/step": elapsed,
        "perf/tokens_per_s": float(lengths.sum()) / elapsed,
    }
