"""Accuracy metrics with confidence intervals, and the sampling metrics of the evaluation
protocol: pass@k (unbiased estimator), maj@k (majority vote), avg@k (mean accuracy)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Hashable, Sequence


@dataclass(frozen=True)
class Proportion:
    """k successes of n, with the Wilson score 95% interval [low, high].

    `k` may be fractional when it is a sum of per-problem scores in [0, 1] (see `mean_score`).
    """

    k: float
    n: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else 0.0

    def __str__(self) -> str:
        return f"{100 * self.value:.1f}% [{100 * self.low:.1f}, {100 * self.high:.1f}] (n={self.n})"


def wilson(k: float, n: int, z: float = 1.959964) -> Proportion:
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


def mean_score(scores: Sequence[float], z: float = 1.959964) -> Proportion:
    """Mean of N per-problem scores in [0, 1] with a conservative 95% interval.

    The interval is Wilson's (`wilson`) at p = mean with n = N problems. A variable in [0, 1]
    with mean mu has variance at most mu (1 - mu) (Bhatia & Davis 2000, "A better bound on the
    variance", Amer. Math. Monthly 107(4)), with equality for 0/1 scores, so the binomial
    variance that Wilson's interval assumes bounds the true one: exact when each score is 0/1
    (one sample per problem), wider than needed when scores are means over samples (avg@k).

    Raises:
        ValueError: a score outside [0, 1].
    """
    if any(not 0.0 <= s <= 1.0 for s in scores):
        raise ValueError(f"scores must lie in [0, 1], got {[s for s in scores if not 0.0 <= s <= 1.0][:5]}")
    return wilson(math.fsum(scores), len(scores), z)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k for one problem from n samples of which c are correct.

    pass@k = 1 - C(n - c, k) / C(n, k)   (Chen et al. 2021, "Evaluating Large Language Models
    Trained on Code", Eq. 1), the probability that a k-subset of the n samples holds a correct
    one; computed as 1 - prod_{i = n-c+1}^{n} (1 - k / i), the paper's numerically stable form.
    pass@1 = c / n. The benchmark's pass@k is the mean over problems.

    Raises:
        ValueError: unless 0 <= c <= n and 1 <= k <= n.
    """
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def majority_correct(keys: Sequence[Hashable | None], correct: Sequence[bool]) -> bool:
    """Whether the majority answer among samples is correct (maj@k for k = len(keys)).

    Majority voting (self-consistency: Wang et al. 2023, arXiv:2203.11171; maj@k as reported by
    Lewkowycz et al. 2022, Minerva, arXiv:2206.14858): samples vote with their answer's key
    (a canonical form of the extracted answer), ``None`` (no answer) does not vote; the most
    frequent key wins, a tie going to the key that appeared first; the vote is correct when a
    sample carrying the winning key is (the first such). No votes at all count as wrong.

    Raises:
        ValueError: `keys` and `correct` differ in length.
    """
    if len(keys) != len(correct):
        raise ValueError(f"{len(keys)} answer keys for {len(correct)} verdicts")
    counts: dict[Hashable, int] = {}
    first: dict[Hashable, bool] = {}
    for key, ok in zip(keys, correct):
        if key is None:
            continue
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, ok)
    if not counts:
        return False
    winner = max(counts, key=counts.__getitem__)  # max keeps the first of equal counts (insertion order)
    return first[winner]
