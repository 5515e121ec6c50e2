"""The built-in algorithms, registered by name (`reasoner.algorithms.registry`): thin adapters
from each kind's one signature to the pure functions beside this module, which carry the
formulas, shapes and sources. ``algo`` is the run's ``AlgorithmConfig``."""

from __future__ import annotations

from typing import Any

import torch

import reasoner.algorithms.aggregate as aggregate
from reasoner.algorithms.advantages import (
    grpo_advantages,
    masked_whiten,
    reinforce_pp_advantages,
    rloo_advantages,
    token_rewards,
)
from reasoner.algorithms.kl import kl_estimate
from reasoner.algorithms.policy_loss import clipped_surrogate, gspo_surrogate
from reasoner.algorithms.registry import AdvantageInput, register
from reasoner.algorithms.value import gae

Advantages = tuple[torch.Tensor, "torch.Tensor | None"]

# ------------------------------------------------------------------ advantage estimators


@register("advantage", "grpo")
def grpo(x: AdvantageInput, algo: Any) -> Advantages:
    """(R - group mean) / (group std + adv_eps), one value per sequence; ``scale_by_std=false``
    is Dr. GRPO (`grpo_advantages`)."""
    return grpo_advantages(x.grouped, algo.scale_by_std, algo.adv_eps).reshape(-1, 1) * x.mask, None


@register("advantage", "rloo")
def rloo(x: AdvantageInput, algo: Any) -> Advantages:
    """Leave-one-out group baseline (`rloo_advantages`)."""
    return rloo_advantages(x.grouped).reshape(-1, 1) * x.mask, None


@register("advantage", "reinforce_pp", token_level=True)
def reinforce_pp(x: AdvantageInput, algo: Any) -> Advantages:
    """Token returns whitened over the batch (`reinforce_pp_advantages`)."""
    return reinforce_pp_advantages(x.grouped, x.mask, x.kl, x.kl_coef), None


@register("advantage", "reinforce_pp_baseline", token_level=True)
def reinforce_pp_baseline(x: AdvantageInput, algo: Any) -> Advantages:
    """Group mean subtracted, then as ``reinforce_pp`` (`reinforce_pp_advantages`)."""
    return reinforce_pp_advantages(x.grouped, x.mask, x.kl, x.kl_coef, baseline=True), None


@register("advantage", "gae", needs_critic=True, token_level=True)
def gae_estimator(x: AdvantageInput, algo: Any) -> Advantages:
    """GAE over per-token rewards (`token_rewards`, `gae`) with the critic's values, advantages
    whitened over the batch; returns are the critic's targets."""
    if x.values is None:
        raise ValueError("the gae estimator needs critic values")
    rewards = token_rewards(x.rewards, x.mask, x.kl, x.kl_coef)
    adv, returns = gae(rewards, x.values, x.mask, algo.critic.gamma, algo.critic.gae_lambda)
    return masked_whiten(adv, x.mask), returns


# ------------------------------------------------------------------ policy losses


@register("policy_loss", "ppo_clip", zero_at_zero_advantage=True)
def ppo_clip(logp: torch.Tensor, old: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor, algo: Any):
    """Token-level ratio, clipped surrogate, optional dual clip (`clipped_surrogate`)."""
    return clipped_surrogate(logp, old, adv, algo.clip.low, algo.clip.high, algo.clip.dual)


@register("policy_loss", "gspo", zero_at_zero_advantage=True)
def gspo(logp: torch.Tensor, old: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor, algo: Any):
    """Sequence-level, length-normalized ratio (`gspo_surrogate`)."""
    return gspo_surrogate(logp, old, adv, mask, algo.clip.low, algo.clip.high)


# ------------------------------------------------------------------ loss aggregations


@register("loss_agg", "token_mean")
def token_mean(per_token: torch.Tensor, mask: torch.Tensor, tokens: int, seqs: int, max_tokens: int):
    """Σ ℓ / tokens in the mini-batch (`aggregate.token_mean`)."""
    return aggregate.token_mean(per_token, mask, tokens)


@register("loss_agg", "seq_mean_token_mean")
def seq_mean_token_mean(per_token: torch.Tensor, mask: torch.Tensor, tokens: int, seqs: int, max_tokens: int):
    """Mean over sequences of each one's token mean (`aggregate.seq_mean_token_mean`)."""
    return aggregate.seq_mean_token_mean(per_token, mask, seqs)


@register("loss_agg", "seq_mean_token_sum_norm")
def seq_mean_token_sum_norm(per_token: torch.Tensor, mask: torch.Tensor, tokens: int, seqs: int, max_tokens: int):
    """Σ ℓ / (sequences * L_max) (`aggregate.seq_mean_token_sum_norm`)."""
    return aggregate.seq_mean_token_sum_norm(per_token, mask, seqs, max_tokens)


# ------------------------------------------------------------------ KL estimators


def _kl(kind: str) -> None:
    register("kl", kind)(lambda logp, ref: kl_estimate(logp, ref, kind))


for _kind in ("k1", "k2", "k3"):  # Schulman 2020, "Approximating KL divergence" (`kl_estimate`)
    _kl(_kind)
