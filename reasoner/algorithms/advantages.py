"""Advantage estimators: group baselines (GRPO, Dr. GRPO, RLOO) and token-level returns
(REINFORCE++, REINFORCE++-baseline). GAE with a learned critic is in `value.py`.

Shapes: B prompts, G completions per prompt, N = B*G sequences (group-major: sequence
b*G + g is completion g of prompt b), T completion tokens (padded; `mask` marks real ones).
"""

from __future__ import annotations

import torch


def _check_groups(rewards: torch.Tensor) -> None:
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be (B, G) with G >= 2, got shape {tuple(rewards.shape)}")


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
    _check_groups(rewards)
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not scale_by_std:
        return centred
    return centred / (rewards.std(dim=1, keepdim=True, unbiased=True) + eps)


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """RLOO leave-one-out baseline (Ahmadian et al. 2024, arXiv 2402.14740 §3).

    A_i = R_i - (1/(G-1)) Σ_{j≠i} R_j = G/(G-1) · (R_i - mean(R_1..G))   (as veRL codes it)

    Args:
        rewards: (B, G).
    Returns:
        (B, G).
    Raises:
        ValueError: rewards is not 2-D or G < 2.
    """
    _check_groups(rewards)
    g = rewards.shape[1]
    return g / (g - 1) * (rewards - rewards.mean(dim=1, keepdim=True))


def token_rewards(
    outcome: torch.Tensor, mask: torch.Tensor, kl: torch.Tensor | None = None, kl_beta: float = 0.0
) -> torch.Tensor:
    """Per-token rewards: the outcome reward on each sequence's last completion token, minus
    ``kl_beta * kl_t`` on every token when the KL goes into the reward (PPO-style placement,
    Ouyang et al. 2022 Eq. 2; veRL ``apply_kl_penalty``).

    Args:
        outcome: (N,) sequence rewards.
        mask: (N, T) 1 on completion tokens (left-aligned: a row's tokens come first).
        kl: (N, T) per-token KL estimate, or None.
    Returns:
        (N, T) float rewards, zero on padding.
    """
    mask = mask.float()
    last = (mask.sum(-1).long() - 1).clamp(min=0)
    rewards = torch.zeros_like(mask)
    rewards[torch.arange(len(outcome)), last] = outcome.float() * (mask.sum(-1) > 0)
    if kl is not None and kl_beta:
        rewards = rewards - kl_beta * kl * mask
    return rewards


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """G_t = Σ_{s>=t} γ^{s-t} r_s over each sequence's completion tokens.

    Args:
        rewards, mask: (N, T).
    Returns:
        (N, T), zero on padding.
    """
    mask = mask.float()
    out = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
    for t in reversed(range(rewards.shape[1])):
        running = (rewards[:, t] + gamma * running) * mask[:, t]
        out[:, t] = running
    return out


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) over the masked entries of the whole batch (population
    variance), as OpenRLHF whitens REINFORCE++ advantages and veRL whitens GAE advantages.

    Args:
        x, mask: (N, T).
    Returns:
        (N, T), zero on padding.
    """
    mask = mask.float()
    n = mask.sum().clamp(min=1)
    mean = (x * mask).sum() / n
    var = ((x - mean).pow(2) * mask).sum() / n
    return (x - mean) * torch.rsqrt(var + eps) * mask


def reinforce_pp_advantages(
    rewards: torch.Tensor,
    mask: torch.Tensor,
    kl: torch.Tensor | None = None,
    kl_beta: float = 0.0,
    baseline: bool = False,
) -> torch.Tensor:
    """REINFORCE++ (Hu et al. 2025, arXiv 2501.03262 §3): token-level return of the outcome
    reward and the per-token KL penalty, normalized over the whole batch (global advantage
    normalization, instead of per group):

        A_t = whiten_batch( R - β Σ_{s>=t} kl_s )           (γ = 1)

    ``baseline=True`` is REINFORCE++-baseline: R_i - mean(R of its group) first, then the same
    batch normalization (OpenRLHF ``reinforce_baseline``).

    Args:
        rewards: (B, G) outcome rewards.
        mask: (N, T), N = B*G, group-major.
        kl: (N, T) per-token KL estimate for the in-reward penalty, or None.
    Returns:
        (N, T) advantages, zero on padding.
    """
    _check_groups(rewards)
    outcome = rewards - rewards.mean(dim=1, keepdim=True) if baseline else rewards
    returns = discounted_returns(token_rewards(outcome.reshape(-1), mask, kl, kl_beta), mask)
    return masked_whiten(returns, mask)
