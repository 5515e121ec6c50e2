"""One RL step, top to bottom: sample prompts, generate, verify, shape rewards, (dynamic sampling),
update (advantages and losses: `Learner`), sync."""

from __future__ import annotations

import hashlib
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

from reasoner.config import RunConfig
from reasoner.data import prompt_ids
from reasoner.learner import Learner, UpdateStats
from reasoner.rewards import add_length_terms, score
from reasoner.rollout.base import RolloutEngine, check_sync, sync_weights
from reasoner.types import Problem, PromptBatch, RolloutBatch, ScoredBatch, TrainBatch
from verifiers.base import Verifier


class PromptSampler:
    """Cycles through problems in a seeded shuffled order, reshuffling each epoch (epoch e's
    order is a shuffle seeded by ``seed + e``), so (epoch, position) fixes the rest of the stream."""

    def __init__(self, problems: Sequence[Problem], seed: int) -> None:
        if not problems:
            raise ValueError("no training problems")
        self.problems, self.seed = list(problems), seed
        self.epoch, self.pos = 0, 0
        self._order = self._shuffled()
        digest = hashlib.sha256()
        for p in self.problems:
            digest.update("\x1f".join((p.id, p.problem, p.answer)).encode("utf-8", "surrogatepass") + b"\x1e")
        self.digest = digest.hexdigest()[:16]

    def state_dict(self) -> dict[str, int | str]:
        """Position in the stream (epoch, position), shuffling seed, and the training set's size
        and digest (sha256 of ids, problems and answers, so a resume can tell it is the same set)."""
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "pos": self.pos,
            "size": len(self.problems),
            "digest": self.digest,
        }

    def load_state_dict(self, state: dict[str, int | str]) -> None:
        """Continue from a `state_dict`.

        Raises:
            ValueError: the training set or seed differs from the one the state was taken on.
        """
        mine = self.state_dict()
        for key in ("seed", "size", "digest"):
            if state[key] != mine[key]:
                raise ValueError(
                    f"the training data differs from the checkpoint's: {key} {state[key]!r} there, {mine[key]!r} now "
                    f"(the checkpoint's set: {state['size']} problems, digest {state['digest']}); resume needs the same data"
                )
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
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
    #: the probe's drift (nats/token) before training, sampler and learner on one checkpoint
    baseline: float = 0.0


class Timer:
    """Named wall-clock phases, in seconds."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def to_train_batch(scored: ScoredBatch) -> TrainBatch:
    """Flatten (B, G) groups into N = B*G sequences (group-major) with their rewards."""
    seqs, plens, sampler, truncated = [], [], [], []
    for prompt, group in zip(scored.rollouts.prompts.prompt_ids, scored.rollouts.completions):
        for c in group:
            seqs.append(prompt + c.token_ids)
            plens.append(len(prompt))
            sampler.append(c.logprobs)
            truncated.append(c.truncated)
    return TrainBatch(seqs, plens, scored.rewards.reshape(-1), scored.rewards.shape[1], sampler, truncated)


def sample_groups(
    sampler: PromptSampler, engine: RolloutEngine, verifier: Verifier, tokenizer: Any, cfg: RunConfig, timer: Timer
) -> tuple[ScoredBatch, list[int], int]:
    """Generate and verify groups for B = trainer.prompts_per_step prompts.

    Without dynamic sampling: one round, every group is trained on. With it (DAPO §3.3): only
    groups whose correctness is mixed (0 < correct < G) are kept; another B prompts are sampled
    while fewer than B groups are kept, for at most ``algorithm.dynamic_sampling_max_rounds``
    rounds (then the batch is trained on as it is, maybe smaller, maybe empty).

    Returns:
        (everything generated, indices of the groups to train on (at most B), rounds run).
    """
    a, r, b = cfg.algorithm, cfg.rollout, cfg.trainer.prompts_per_step
    rounds: list[ScoredBatch] = []
    keep: list[int] = []
    while True:
        problems = sampler.next_batch(b)
        prompts = PromptBatch(problems, [prompt_ids(tokenizer, p.problem, cfg.data.template) for p in problems])
        with timer("generate"):
            completions = engine.generate(prompts.prompt_ids, a.group_size, r.temperature, r.top_p, r.max_tokens)
        with timer("verify"):
            scored = score(RolloutBatch(prompts, completions), verifier, cfg.reward, cfg.data.template)
        offset = b * len(rounds)
        rounds.append(scored)
        if not a.dynamic_sampling:
            return scored, list(range(b)), 1
        n_correct = scored.correct.sum(dim=1)
        keep += [offset + i for i in range(b) if 0 < n_correct[i] < a.group_size]
        if len(keep) >= b or len(rounds) == a.dynamic_sampling_max_rounds:
            return ScoredBatch.cat(rounds), keep[:b], len(rounds)


def rl_step(
    sampler: PromptSampler,
    engine: RolloutEngine,
    verifier: Verifier,
    learner: Learner,
    tokenizer: Any,
    cfg: RunConfig,
    probe: SyncProbe | None,
    step: int = 1,
) -> dict[str, Any]:
    """Run RL step `step` (1-based); return its metrics (keys prefixed by phase: reward/,
    response/, groups/, policy/, sync/, time/), plus ``data/problem_ids``, the ids of the
    problems drawn in the step in order (a list, the only non-number). Reward and response
    figures cover every completion generated in the step; the policy figures, the groups
    trained on. When dynamic sampling keeps no group, the update and weight sync are skipped and
    policy figures are NaN; ``policy/skipped_updates`` counts optimizer steps skipped for a
    non-finite loss or gradient, ``reward/verify_errors`` the verifier crashes (scored 0)."""
    timer, start = Timer(), time.perf_counter()
    generated, keep, rounds = sample_groups(sampler, engine, verifier, tokenizer, cfg, timer)
    generated, length_metrics = add_length_terms(generated, cfg.algorithm, cfg.rollout.max_tokens, step)
    stats = UpdateStats.skipped()
    sync_diff = float("nan")
    if keep:
        with timer("learner"):
            stats = learner.update(to_train_batch(generated.take(keep)))
        with timer("weight_sync"):
            sync_weights(engine, learner.model)
            if probe is not None:
                sync_diff = check_sync(
                    engine, learner.model, probe.token_ids, probe.prompt_len, cfg.rollout.sync_check_tol, probe.baseline
                )
    completions = generated.rollouts.completions
    lengths = torch.tensor([len(c.token_ids) for g in completions for c in g], dtype=torch.float32)
    elapsed = time.perf_counter() - start
    timeouts = sum(v.reason == "timeout" for row in generated.verdicts for v in row)
    errors = sum(v.reason.startswith("error") for row in generated.verdicts for v in row)
    return {
        "reward/mean": float(generated.rewards.mean()),
        "reward/accuracy": float(generated.correct.float().mean()),
        "reward/verify_timeouts": float(timeouts),
        "reward/verify_errors": float(errors),
        **length_metrics,
        "response/len_mean": float(lengths.mean()),
        "response/len_max": float(lengths.max()),
        "response/truncated_frac": sum(c.truncated for g in completions for c in g) / lengths.numel(),
        "groups/zero_var_frac": float((generated.rewards.std(dim=1) == 0).float().mean()),
        "groups/trained": float(len(keep)),
        "groups/sampling_rounds": float(rounds),
        "policy/loss": stats.loss,
        "policy/kl": stats.kl,
        "policy/kl_coef": stats.kl_coef,
        "policy/entropy": stats.entropy,
        "policy/clip_frac": stats.clip_frac,
        "policy/grad_norm": stats.grad_norm,
        "policy/sampler_logprob_mismatch": stats.logprob_mismatch,
        "policy/tis_clip_frac": stats.tis_clip_frac,
        "policy/value_loss": stats.value_loss,
        "policy/optimizer_steps": float(stats.optimizer_steps),
        "policy/skipped_updates": float(stats.skipped_steps),
        "sync/logprob_diff": sync_diff,
        **{f"time/{k}": v for k, v in timer.seconds.items()},
        **({"time/ref_old_logprobs": stats.prepare_seconds} if keep else {}),
        "time/step": elapsed,
        "perf/tokens_per_s": float(lengths.sum()) / elapsed,
        "data/problem_ids": [p.id for p in generated.rollouts.prompts.problems],
    }
