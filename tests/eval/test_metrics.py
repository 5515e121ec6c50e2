"""Wilson interval against hand-computed values."""

import pytest

from eval.metrics import diff_interval, wilson


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
