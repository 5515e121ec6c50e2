"""Score a rollout batch: the verifier's score (batch API) plus an optional format term.

reward_i = correct_weight * score_i + format_weight * 1[well formed_i]

score_i is the verifier's `VerifyResult.score`: 1/0 for math, the fraction of tests passed for
code (``scoring=fraction``).
"""

from __future__ import annotations

import torch

from reasoner.config import RewardConfig, Template
from reasoner.types import RolloutBatch, ScoredBatch
from verifiers.base import Verifier
from verifiers.format import verify_format


def score(rollouts: RolloutBatch, verifier: Verifier, cfg: RewardConfig, template: Template) -> ScoredBatch:
    """Verify every completion (in the verifier's worker pool) and compute (B, G) rewards."""
    problems = rollouts.prompts.problems
    pairs = [(c.text, p.answer) for p, group in zip(problems, rollouts.completions) for c in group]
    flat = verifier.verify_batch(pairs)
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
