"""Losses on preference pairs: the Bradley-Terry reward-model loss and DPO (with its
conservative and IPO variants). Pure functions of per-pair scalars; shapes (n,) for n pairs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | float = 0.0
) -> torch.Tensor:
    """Per-pair loss of a Bradley-Terry reward model, -log σ(r_chosen - r_rejected - m).

    InstructGPT (Ouyang et al. 2022, Eq. 1) with m = 0; the margin m >= 0 of Llama 2 (Touvron et
    al. 2023, Eq. 2) asks the gap to exceed it. Computed as softplus(-(Δ - m)), stable for any Δ.

    Args:
        chosen, rejected: (n,) reward-model scores of the preferred and the dispreferred completion.
        margin: (n,) or a scalar, >= 0.
    Returns:
        (n,) float32 losses (nats).
    """
    return F.softplus(-(chosen.float() - rejected.float() - margin))


@dataclass
class DPOTerms:
    """What `dpo_loss` returns for n pairs, each (n,) float32.

    Attributes:
        loss: the per-pair loss.
        chosen_reward, rejected_reward: the implicit rewards β (log π(y|x) - log π_ref(y|x)) of
            each completion (DPO Eq. 5, without the partition term, which cancels in a pair).
    """

    loss: torch.Tensor
    chosen_reward: torch.Tensor
    rejected_reward: torch.Tensor


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
    kind: str = "sigmoid",
) -> DPOTerms:
    """Per-pair DPO loss from sequence log-probabilities (sums over the completion's tokens, nats).

    With h = (log π(y_w|x) - log π_ref(y_w|x)) - (log π(y_l|x) - log π_ref(y_l|x)):
        sigmoid: -(1 - ε) log σ(β h) - ε log σ(-β h)   (Rafailov et al. 2023, Eq. 7; ε > 0 is
                 the conservative DPO of Mitchell 2023, for labels flipped with probability ε)
        ipo:     (h - 1 / (2β))²                        (Azar et al. 2023, Eq. 17, τ = β)

    Args:
        policy_chosen, policy_rejected: (n,) log-probs of the chosen / rejected completions
            under the policy (with gradient).
        ref_chosen, ref_rejected: (n,) the same under the frozen reference.
        beta: β > 0 (the strength of the KL to the reference).
        label_smoothing: ε in [0, 0.5), sigmoid only.
        kind: ``sigmoid`` or ``ipo``.
    Returns:
        `DPOTerms`.
    Raises:
        ValueError: an unknown `kind`, β <= 0, ε outside [0, 0.5), or ε > 0 with ``ipo``.
    """
    if beta <= 0:
        raise ValueError(f"DPO beta must be > 0, got {beta}")
    if not 0 <= label_smoothing < 0.5:
        raise ValueError(f"DPO label_smoothing must be in [0, 0.5), got {label_smoothing}")
    chosen = policy_chosen.float() - ref_chosen.float()
    rejected = policy_rejected.float() - ref_rejected.float()
    h = chosen - rejected
    if kind == "sigmoid":
        loss = (1 - label_smoothing) * F.softplus(-beta * h) + label_smoothing * F.softplus(beta * h)
    elif kind == "ipo":
        if label_smoothing:
            raise ValueError("DPO label_smoothing applies to kind=sigmoid only, not ipo")
        loss = (h - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"unknown DPO loss kind {kind!r}; known: sigmoid, ipo")
    return DPOTerms(loss, beta * chosen.detach(), beta * rejected.detach())
