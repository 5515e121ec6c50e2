"""Length terms added to the outcome reward: DAPO's soft overlong punishment and the Kimi k1.5
length reward. Both measure length in tokens."""

from __future__ import annotations

import torch


def soft_overlong_punishment(lengths: torch.Tensor, max_tokens: int, buffer: int) -> torch.Tensor:
    """DAPO Eq. 13 (arXiv 2503.14476 §3.4), with L_max = `max_tokens`, L_cache = `buffer`:

        R_length(y) = 0                                   if |y| <= L_max - L_cache
                    = ((L_max - L_cache) - |y|) / L_cache  if L_max - L_cache < |y| <= L_max
                    = -1                                   if |y| > L_max

    Args:
        lengths: (...) completion lengths in tokens.
    Returns:
        same shape, float, in [-1, 0]; added to the correctness reward.
    """
    lengths = lengths.float()
    soft = (max_tokens - buffer - lengths) / buffer
    return torch.where(lengths > max_tokens, torch.full_like(lengths, -1.0), soft.clamp(max=0.0))


def kimi_length_reward(lengths: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """Kimi k1.5 length reward (arXiv 2501.12599 §2.3.3), per group of k responses:

        λ_i = 0.5 - (len_i - min_len) / (max_len - min_len)
        len_reward_i = λ_i if correct_i else min(0, λ_i);    0 for the whole group if max_len = min_len

    Args:
        lengths: (B, G) completion lengths in tokens.
        correct: (B, G) bool.
    Returns:
        (B, G) float in [-0.5, 0.5]; the caller adds it with a weight (after a warm-up).
    """
    lengths = lengths.float()
    lo, hi = lengths.min(dim=1, keepdim=True).values, lengths.max(dim=1, keepdim=True).values
    span = hi - lo
    lam = 0.5 - (lengths - lo) / span.clamp(min=1e-12)
    reward = torch.where(correct, lam, lam.clamp(max=0.0))
    return torch.where(span > 0, reward, torch.zeros_like(reward))
