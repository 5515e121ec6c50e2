"""Reduce a per-token loss to a scalar, with the normalizer passed in explicitly.

The normalizer is a count over the *whole* optimizer batch (not the micro-batch), so summing
the micro-batch losses gives exactly the full-batch loss: gradient accumulation and
micro-batching do not change the gradient.
"""

from __future__ import annotations

import torch


def token_mean(loss: torch.Tensor, mask: torch.Tensor, total_tokens: int) -> torch.Tensor:
    """Σ_i Σ_t ℓ_{i,t} m_{i,t} / total_tokens (DAPO Eq. 12; veRL ``token-mean``).

    Every completion token weighs the same, so long completions are not under-weighted.
    Shapes: loss, mask (n, T); `total_tokens` counts completion tokens in the whole batch.
    """
    return (loss * mask).sum() / max(total_tokens, 1)


def seq_mean_token_mean(loss: torch.Tensor, mask: torch.Tensor, total_seqs: int) -> torch.Tensor:
    """(1/N) Σ_i (1/|o_i|) Σ_t ℓ_{i,t} m_{i,t} (the original GRPO objective, DeepSeekMath Eq. 3).

    Shapes: loss, mask (n, T); `total_seqs` is N, the sequences in the whole batch.
    """
    per_seq = (loss * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return per_seq.sum() / max(total_seqs, 1)


def seq_mean_token_sum_norm(loss: torch.Tensor, mask: torch.Tensor, total_seqs: int, max_tokens: int) -> torch.Tensor:
    """(1/N) Σ_i Σ_t ℓ_{i,t} m_{i,t} / L_max (Dr. GRPO, arXiv 2503.20783 §3.2 and Listing 1;
    veRL ``seq-mean-token-sum-norm``, TRL ``dr_grpo``).

    L_max is a constant (the generation budget), so no sequence's tokens are up- or
    down-weighted by its length. Shapes: loss, mask (n, T); `total_seqs` is N for the whole
    batch; `max_tokens` is L_max.
    """
    return (loss * mask).sum() / (max(total_seqs, 1) * max_tokens)
