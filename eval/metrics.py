"""Accuracy metrics with confidence intervals."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


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


def paired_diff_interval(a: Sequence[float], b: Sequence[float], z: float = 1.959964) -> tuple[float, float]:
    """95% interval of mean(b - a) when a[i] and b[i] score the *same* problem i (paired design).

    d_i = b_i - a_i;  mean(d) ± z · s_d / √n, with s_d the sample standard deviation (n - 1).
    A normal (paired t with z) interval, as for McNemar-style before/after comparisons
    (Agresti, *Categorical Data Analysis*, 3rd ed., §11.1.4). Scoring the same problems twice
    removes the between-problem variance, so it is tighter than `diff_interval`.

    Raises:
        ValueError: the sequences differ in length or hold fewer than 2 problems.
    """
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"need two equal-length score lists of >= 2 problems, got {len(a)} and {len(b)}")
    d = [y - x for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    half = z * sd / math.sqrt(n)
    return (mean - half, mean + half)
