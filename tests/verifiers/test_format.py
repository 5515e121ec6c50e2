"""Format verifier for the plain and R1 templates."""

import pytest

from verifiers.format import verify_format


@pytest.mark.parametrize(
    "text,template,ok",
    [
        ("Step 1: 2 + 2 = 4.\nThe final answer is \\boxed{4}.", "plain", True),
        ("The answer is 4.", "plain", False),
        ("<think>\n2 + 2 = 4\n</think>\nThe final answer is \\boxed{4}.", "r1", True),
        ("<think>2 + 2 = 4</think> 4", "r1", False),  # no box after the think block
        ("\\boxed{4} <think>x</think>", "r1", False),  # does not open with the think block
        ("<think>a</think><think>b</think>\\boxed{4}", "r1", False),  # two think blocks
    ],
)
def test_format(text, template, ok):
    r = verify_format(text, template)
    assert r.correct is ok and r.score == float(ok)


def test_unknown_template():
    with pytest.raises(ValueError, match="plain, r1"):
        verify_format("x", "chatml")
