"""Score a rollout batch: correctness (math verifier, batch API) plus an optional format term.

reward_i = correct_weight * 1[correct_i] + format_weight * 1[well formed_i]
"""

from __future__ import annotations

import torch

from reasoner.config import RewardConfig, Template
from reasoner.types import RolloutBatch, ScoredBatch
from verifiers.format import verify_format
from verifiers.math import MathVerifier


def score(rollouts: RolloutBatch, verifier: MathVerifier, cfg: RewardConfig, template: Template) -> ScoredBatch:
    """Verify every completion (in the verifier's worker pool) and compute (B, G) rewards."""
    problems = rollouts.prompts.problems
    pairs = [(c.text, p.answer) for p, group in zip(problems, rollouts.completions) for c in group]
    flat = verifier.verify_batch(pairs)
    g = len(rollouts.completions[0])
    verdicts = [flat[i : i + g] for i in range(0, len(flat), g)]
    correct = torch.tensor([[v.correct for v in row] for row in verdicts])
    rewards = cfg.correct_weight * correct.float()
    if cfg.format_weight:
        fmt = torch.tensor(
            [[verify_format(c.text, template.value).score for c in group] for group in rollouts.completions]
        )
        rewards = rewards + cfg.format_weight * fmt
    return ScoredBatch(rollouts, verdicts, rewards, correct)
