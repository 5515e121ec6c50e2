"""Learned-critic pieces of PPO: generalized advantage estimation and the clipped value loss.

Shapes: N sequences, T completion tokens (padded; `mask` marks real ones, left-aligned).
Values V_t are the critic's estimate of the return from completion token t on.
"""

from __future__ import annotations

import torch


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016, arXiv 1506.02438 Eq. 16).

        δ_t = r_t + γ V_{t+1} - V_t      (V after the last token = 0)
        A_t = Σ_l (γλ)^l δ_{t+l},        returns_t = A_t + V_t   (the critic's regression target)

    With γ = λ = 1 (Open-Reasoner-Zero) A_t = Σ_{s>=t} r_s - V_t.

    Args:
        rewards, values, mask: (N, T).
    Returns:
        (advantages, returns): (N, T) each, zero on padding; not whitened.
    """
    mask = mask.float()
    values = values * mask
    adv = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
    next_value = torch.zeros_like(running)
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        adv[:, t] = running
        next_value = values[:, t]
    return adv, (adv + values) * mask


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip: float
) -> torch.Tensor:
    """PPO value loss with value clipping, per token (as in OpenAI baselines ppo2, veRL
    ``compute_value_loss``):

        ℓ_t = ½ max((V_t - R_t)², (V_old,t + clip(V_t - V_old,t, -c, c) - R_t)²)

    Args:
        values: (n, T) current critic values (with gradient).
        old_values: (n, T) values when the batch was collected.
        returns: (n, T) targets.
    Returns:
        (n, T) per-token loss.
    """
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * torch.maximum((values - returns).pow(2), (clipped - returns).pow(2))
