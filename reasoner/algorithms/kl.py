"""KL(π_θ ‖ π_ref) to the reference policy: per-token estimators and the adaptive coefficient."""

from __future__ import annotations

import torch


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k3") -> torch.Tensor:
    """Per-token KL estimate on tokens sampled from π_θ (Schulman 2020, "Approximating KL");
    all shapes (n, T), nats.

    With Δ = ref_logp - logp:
        k1 = -Δ                 (unbiased, can be negative)
        k2 = Δ² / 2             (biased, low variance)
        k3 = exp(Δ) - Δ - 1     (unbiased, >= 0; DeepSeekMath Eq. 4)
    No clamping is applied.

    Raises:
        ValueError: unknown `kind`.
    """
    delta = ref_logp - logp
    if kind == "k1":
        return -delta
    if kind == "k2":
        return 0.5 * delta.pow(2)
    if kind == "k3":
        return torch.exp(delta) - delta - 1.0
    raise ValueError(f"unknown KL estimator {kind!r}; known: k1, k2, k3")


def adaptive_kl_coef(beta: float, kl: float, target: float, horizon: int, n_samples: int) -> float:
    """Adaptive KL coefficient (Ziegler et al. 2019, arXiv 1909.08593 §2.2):

        e = clip(KL / KL_target - 1, -0.2, 0.2),   β ← β (1 + e · n_samples / horizon)

    Args:
        beta: the current coefficient.
        kl: the measured KL (same units as `target`).
        target: KL_target (> 0).
        horizon: the controller's horizon, in samples.
        n_samples: samples in the batch just trained on.
    """
    error = min(max(kl / target - 1.0, -0.2), 0.2)
    return beta * (1.0 + error * n_samples / horizon)
