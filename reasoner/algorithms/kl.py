"""Per-token KL(π_θ ‖ π_ref) estimators on tokens sampled from π_θ (Schulman 2020, "Approximating KL")."""

from __future__ import annotations

import torch


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k3") -> torch.Tensor:
    """Per-token KL estimate; all shapes (n, T), nats.

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
