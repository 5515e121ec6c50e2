"""Wilson interval against hand-computed values."""

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
