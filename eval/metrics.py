"""Accuracy metrics with confidence intervals."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Proportion:
    """k successes of n, with the Wilson score 95% interval [low, high]."""

    k: int
    n: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else 0.0

    def __str__(self) -> str:
        return f"{100 * self.value:.1f}% [{100 * self.low:.1f}, {100 * self.high:.1f}] (n={self.n})"


def wilson(k: int, n: int, z: float = 1.959964) -> Proportion:
    """Wilson score interval for a binomial proportion (Wilson 1927; z = 1.96 for 95%).

    center = (p + z²/2n) / (1 + z²/n),  half = z √(p(1-p)/n + z²/4n²) / (1 + z²/n)

    Raises:
        ValueError: n < 0 or k outside [0, n].
    """
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return Proportion(0, 0, 0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if k == 0 else max(0.0, center - half)  # exact at the edges (no rounding residue)
    high = 1.0 if k == n else min(1.0, center + half)
    return Proportion(k, n, low, high)


def diff_interval(a: Proportion, b: Proportion, z: float = 1.959964) -> tuple[float, float]:
    """95% interval of b - a for two independent proportions (Wald, unpooled)."""
    pa, pb = a.value, b.value
    se = math.sqrt(pa * (1 - pa) / max(a.n, 1) + pb * (1 - pb) / max(b.n, 1))
    return (pb - pa - z * se, pb - pa + z * se)
