"""Policy-gradient losses, per token, as losses to minimize.

Shapes: n sequences in a micro-batch, T positions (padded); advantages (n, 1) or (n, T).
"""

from __future__ import annotations

import torch


def clipped_surrogate(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO clipped surrogate with a token-level ratio.

    ℓ_t = -min(r_t A, clip(r_t, 1 - clip_low, 1 + clip_high) A),  r_t = exp(logp_t - old_logp_t)

    (Schulman et al. 2017, arXiv 1707.06347 Eq. 7; separate low/high bounds are DAPO's
    clip-higher, arXiv 2503.14476 Eq. 10.) With ``dual_clip = c > 1``, tokens with A < 0 get
    ℓ_t = min(ℓ_t, -c A) (dual-clip PPO, Ye et al. 2020, arXiv 1912.09729 §3.2; veRL
    ``clip_ratio_c``), so a huge ratio on a bad token cannot blow the loss up. The log-ratio is
    clamped to [-20, 20] before exp, as in veRL, so an extreme ratio cannot overflow.

    Args:
        logp: (n, T) log-probs of the sampled tokens under the policy being trained (nats).
        old_logp: (n, T) log-probs under the policy that collected the batch (no gradient).
        advantages: (n, 1) or (n, T).
        dual_clip: c > 1, or 0 for off.
    Returns:
        (loss, clipped): (n, T) per-token loss and (n, T) bool, True where a clipped term was
        the active one (the gradient is zero there).
    """
    ratio = torch.exp(torch.clamp(logp - old_logp, -20.0, 20.0))
    return _clip_objective(ratio, advantages, clip_low, clip_high, dual_clip)


def gspo_surrogate(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float = 3e-4,
    clip_high: float = 4e-4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GSPO: the clipped surrogate on a sequence-level, length-normalized ratio
    (Zheng et al. 2025, arXiv 2507.18071 §4; token form as veRL ``compute_policy_loss_gspo``).

        s_i = exp((1/|y_i|) Σ_t (logp_{i,t} - old_logp_{i,t}))
        s_{i,t} = sg[s_i] · π_θ(y_{i,t}) / sg[π_θ(y_{i,t})]     (value s_i; gradient of log π per token)
        ℓ_{i,t} = -min(s_{i,t} A_i, clip(s_{i,t}, 1 - clip_low, 1 + clip_high) A_i)

    Every token of a sequence shares one ratio, so clipping drops whole sequences. log s_{i,t}
    is clamped at 10, as in veRL. The paper aggregates with seq-mean-token-mean.

    Args:
        logp, old_logp: (n, T); mask: (n, T), 1 on completion tokens; advantages (n, 1) or (n, T).
    Returns:
        (loss, clipped) as `clipped_surrogate`.
    """
    mask = mask.float()
    log_seq_ratio = ((logp - old_logp) * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1)
    log_token = log_seq_ratio.detach() + logp - logp.detach()
    ratio = torch.exp(torch.clamp(log_token, max=10.0))
    return _clip_objective(ratio, advantages, clip_low, clip_high, 0.0)


def _clip_objective(
    ratio: torch.Tensor, advantages: torch.Tensor, clip_low: float, clip_high: float, dual_clip: float
) -> tuple[torch.Tensor, torch.Tensor]:
    unclipped = -ratio * advantages
    clipped = -torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * advantages
    loss = torch.maximum(unclipped, clipped)
    active = clipped > unclipped
    if dual_clip:
        floor = -dual_clip * advantages
        capped = (advantages < 0) & (loss > floor)
        loss = torch.where(capped, floor.expand_as(loss), loss)
        active = active | capped
    return loss, active


def truncated_is_weights(
    old_logp: torch.Tensor, sampler_logp: torch.Tensor, cap: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Truncated importance-sampling weights for the sampler-vs-learner mismatch (Yao et al.
    2025, "Your Efficient RL Framework Secretly Brings You Off-Policy RL Training"; veRL TIS):

        w_t = min(π_old(y_t) / π_sampler(y_t), cap)

    The rollout engine (e.g. vLLM in bf16) samples from a slightly different distribution than
    the learner computes; each token's policy-gradient loss is multiplied by w_t (no gradient).

    Args:
        old_logp: (n, T) learner log-probs of the sampled tokens before the update.
        sampler_logp: (n, T) the rollout engine's log-probs of the same tokens.
    Returns:
        (weights, capped): (n, T) float, and (n, T) bool where the cap was hit.
    """
    ratio = torch.exp(torch.clamp(old_logp - sampler_logp, -20.0, 20.0))
    return torch.clamp(ratio, max=cap), ratio > cap
