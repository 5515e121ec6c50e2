"""Score a rollout batch: the verifier's score (batch API) plus an optional format term, then
the optional length terms of the algorithm.

reward_i = correct_weight * score_i + format_weight * 1[well formed_i]
           + R_overlong(|y_i|)                                (DAPO, algorithm.overlong_buffer)
           + length_reward_weight * len_reward_i              (Kimi k1.5, after the warm-up)

score_i is the verifier's `VerifyResult.score`: 1/0 for math, the fraction of tests passed for
code (``scoring=fraction``).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Sequence

import torch

from reasoner.algorithms.length import kimi_length_reward, soft_overlong_punishment
from reasoner.config import AlgorithmConfig, RewardConfig, Template
from reasoner.types import RolloutBatch, ScoredBatch
from verifiers.base import Verifier, VerifyResult
from verifiers.format import verify_format

log = logging.getLogger(__name__)


def verify_guarded(verifier: Verifier, pairs: Sequence[tuple[str, str]]) -> list[VerifyResult]:
    """``verifier.verify_batch(pairs)``, surviving a verifier that raises: the pairs are then
    verified one at a time, and each pair whose call raises gets
    ``VerifyResult(False, 0.0, None, "error: <type>: <message>")`` (score 0; the trainer counts
    these as ``reward/verify_errors``, with the verdicts a verifier itself reports as errors)."""
    try:
        return verifier.verify_batch(pairs)
    except Exception as err:
        log.warning(
            "verifier %s raised on a batch of %d (%s: %s); verifying one at a time",
            type(verifier).__name__,
            len(pairs),
            type(err).__name__,
            err,
        )
    results = []
    for pair in pairs:
        try:
            results += verifier.verify_batch([pair])
        except Exception as err:
            results.append(VerifyResult(False, 0.0, None, f"error: {type(err).__name__}: {err}"[:500]))
    return results


def score(rollouts: RolloutBatch, verifier: Verifier, cfg: RewardConfig, template: Template) -> ScoredBatch:
    """Verify every completion (in the verifier's worker pool; see `verify_guarded`) and compute
    (B, G) rewards."""
    problems = rollouts.prompts.problems
    pairs = [(c.text, p.answer) for p, group in zip(problems, rollouts.completions) for c in group]
    flat = verify_guarded(verifier, pairs)
    g = len(rollouts.completions[0])
    verdicts = [flat[i : i + g] for i in range(0, len(flat), g)]
    correct = torch.tensor([[v.correct for v in row] for row in verdicts])
    rewards = cfg.correct_weight * torch.tensor([[v.score for v in row] for row in verdicts], dtype=torch.float32)
    if cfg.format_weight:
        fmt = torch.tensor(
            [[verify_format(c.text, template.value).score for c in group] for group in rollouts.completions]
        )
        rewards = rewards + cfg.format_weight * fmt
    return ScoredBatch(rollouts, verdicts, rewards, correct)


def add_length_terms(
    scored: ScoredBatch, algo: AlgorithmConfig, max_tokens: int, step: int
) -> tuple[ScoredBatch, dict[str, float]]:
    """Add DAPO's soft overlong punishment (L_max = `max_tokens`) and, from RL step
    ``length_reward_warmup + 1`` on, the weighted Kimi k1.5 length reward; each is off at 0.
    Lengths are completion tokens. Returns the re-scored batch and the mean of each term added."""
    lengths = torch.tensor([[len(c.token_ids) for c in group] for group in scored.rollouts.completions])
    rewards, metrics = scored.rewards, {}
    if algo.overlong_buffer:
        penalty = soft_overlong_punishment(lengths, max_tokens, algo.overlong_buffer)
        rewards = rewards + penalty
        metrics["reward/overlong_penalty"] = float(penalty.mean())
    if algo.length_reward_weight and step > algo.length_reward_warmup:
        bonus = kimi_length_reward(lengths, scored.correct)
        rewards = rewards + algo.length_reward_weight * bonus
        metrics["reward/length_reward"] = float(bonus.mean())
    return replace(scored, rewards=rewards), metrics
