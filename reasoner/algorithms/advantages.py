"""Outcome-reward advantage estimators."""

from __future__ import annotations

import torch


def grpo_advantages(rewards: torch.Tensor, scale_by_std: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """GRPO group-normalized advantage, one per completion (broadcast later to its tokens).

    A_i = (R_i - mean(R_1..G)) / (std(R_1..G) + eps)       (DeepSeekMath §4.1.2; DAPO §2.2)

    std is Bessel-corrected (N-1), as in veRL, TRL and OpenRLHF; eps = 1e-6 as in veRL.
    With ``scale_by_std=False`` this is Dr. GRPO's A_i = R_i - mean (arXiv 2503.20783 §3.2).
    A group whose rewards are all equal gets A = 0 for every member (no signal).

    Args:
        rewards: (B, G) float rewards.
    Returns:
        (B, G) float advantages.
    Raises:
        ValueError: rewards is not 2-D or G < 2.
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be (B, G) with G >= 2, got shape {tuple(rewards.shape)}")
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not scale_by_std:
        return centred
    return centred / (rewards.std(dim=1, keepdim=True, unbiased=True) + eps)
