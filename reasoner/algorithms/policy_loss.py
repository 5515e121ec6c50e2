"""Policy-gradient losses."""

from __future__ import annotations

import torch


def clipped_surrogate(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO clipped surrogate, per token, as a loss to minimize.

    ℓ_t = -min(r_t A, clip(r_t, 1 - clip_low, 1 + clip_high) A),  r_t = exp(logp_t - old_logp_t)

    (Schulman et al. 2017, arXiv 1707.06347 Eq. 7; separate low/high bounds are DAPO's
    clip-higher, arXiv 2503.14476 Eq. 10.) The log-ratio is clamped to [-20, 20] before exp,
    as in veRL, so an extreme ratio cannot overflow.

    Args:
        logp: (n, T) log-probs of the sampled tokens under the policy being trained (nats).
        old_logp: (n, T) log-probs under the policy that sampled them (no gradient).
        advantages: (n, 1) or (n, T).
    Returns:
        (loss, clipped): (n, T) per-token loss and (n, T) bool, True where the clipped term
        was the active one (the gradient is zero there).
    """
    ratio = torch.exp(torch.clamp(logp - old_logp, -20.0, 20.0))
    unclipped = ratio * advantages
    clipped_ratio = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    clipped = clipped_ratio * advantages
    loss = -torch.minimum(unclipped, clipped)
    return loss, clipped < unclipped
