"""Intervals, pass@k, maj@k and the mean-score interval against hand-computed values."""

import pytest

from eval.metrics import diff_interval, paired_diff_interval, wilson


def test_wilson_hand_values():
    # k=20, n=100, z=1.96: p=0.2, denom=1.038415, center=(0.2+0.019208)/denom=0.211100,
    # half=1.96*sqrt(0.0016+0.00009604)/denom=0.077741 -> [0.1334, 0.2888]
    p = wilson(20, 100)
    assert p.value == 0.2
    assert p.low == pytest.approx(0.1334, abs=1e-4) and p.high == pytest.approx(0.2888, abs=1e-4)


def test_wilson_edges():
    assert wilson(0, 50).low == 0.0 and wilson(50, 50).high == 1.0
    with pytest.raises(ValueError, match="k=3, n=2"):
        wilson(3, 2)


def test_difference_interval():
    lo, hi = diff_interval(wilson(40, 100), wilson(60, 100))
    # se = sqrt(.24/100 + .24/100) = 0.069282; 0.2 ± 1.96*se = [0.0642, 0.3358]
    assert lo == pytest.approx(0.0642, abs=1e-4) and hi == pytest.approx(0.3358, abs=1e-4)


def test_paired_difference_interval():
    # 10 problems: 3 fixed (0->1), 1 broken (1->0), 6 unchanged. d = [1,1,1,-1,0,0,0,0,0,0]
    # mean 0.2; s_d = sqrt((3*0.64 + 1.44 + 6*0.04)/9) = sqrt(3.6/9) = 0.632456;
    # half = 1.96 * 0.632456 / sqrt(10) = 0.392 -> [-0.192, 0.592]
    a = [0, 0, 0, 1, 1, 1, 0, 0, 0, 0]
    b = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]
    lo, hi = paired_diff_interval(a, b)
    assert lo == pytest.approx(-0.192, abs=1e-3) and hi == pytest.approx(0.592, abs=1e-3)
    # the same totals scored as independent samples give a wider interval
    ulo, uhi = diff_interval(wilson(sum(a), 10), wilson(sum(b), 10))
    assert uhi - ulo > hi - lo
    with pytest.raises(ValueError, match="equal-length"):
        paired_diff_interval([1, 0], [1])


def test_pass_at_k_hand_values():
    from math import comb

    from eval.metrics import pass_at_k

    # n=5, c=2: pass@1 = 2/5; pass@2 = 1 - C(3,2)/C(5,2) = 1 - 3/10; pass@3 = 1 - C(3,3)/C(5,3) = 1 - 1/10
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    assert pass_at_k(5, 2, 3) == pytest.approx(0.9)
    assert pass_at_k(5, 2, 4) == 1.0 and pass_at_k(5, 0, 5) == 0.0 and pass_at_k(5, 5, 1) == 1.0
    # the product form equals Eq. 1's binomial ratio where both are exact
    for n, c, k in [(10, 3, 4), (20, 1, 10), (16, 7, 2)]:
        assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k), rel=1e-12)
    # n=200, c=1 (Codex-paper scale): pass@100 = 1 - C(199,100)/C(200,100) = 1 - 100/200
    assert pass_at_k(200, 1, 100) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="n=3, c=4, k=1"):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError, match="k=0"):
        pass_at_k(3, 1, 0)


def test_majority_vote_hand_cases():
    from eval.metrics import majority_correct

    # "7" twice (wrong) beats "8" once (right)
    assert majority_correct(["7", "8", "7"], [False, True, False]) is False
    assert majority_correct(["8", "7", "8"], [True, False, True]) is True
    # a tie goes to the answer seen first; samples without an answer do not vote
    assert majority_correct(["8", "7"], [True, False]) is True
    assert majority_correct(["7", "8"], [False, True]) is False
    assert majority_correct([None, None, "8"], [False, False, True]) is True
    assert majority_correct([None, None], [False, False]) is False
    with pytest.raises(ValueError, match="2 answer keys for 1 verdicts"):
        majority_correct(["1", "2"], [True])


def test_mean_score_interval():
    from eval.metrics import mean_score

    # 0/1 scores: exactly Wilson's interval for k of n
    assert mean_score([1.0] * 20 + [0.0] * 80) == wilson(20, 100)
    # fractional scores (avg@4 per problem): Wilson at p = mean with n = problems
    p = mean_score([0.25, 0.75, 0.5, 0.5])
    assert p.value == 0.5 and p.n == 4 and p.k == 2.0
    # k=2, n=4, z=1.96: center 0.5, half = 1.96*sqrt(0.0625 + 0.060025)/1.9604 = 0.349945 -> [0.1500, 0.8500]
    assert p.low == pytest.approx(0.1500, abs=1e-4) and p.high == pytest.approx(0.8500, abs=1e-4)
    assert mean_score([0.0, 0.0]).low == 0.0 and mean_score([1.0, 1.0]).high == 1.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mean_score([1.5])
