"""GRPO advantage, clipped surrogate, KL estimators and loss aggregation against hand-computed values."""

import math

import pytest
import torch

from reasoner.algorithms import aggregate
from reasoner.algorithms.advantages import grpo_advantages
from reasoner.algorithms.kl import kl_estimate
from reasoner.algorithms.policy_loss import clipped_surrogate


def test_grpo_advantage_hand_values():
    # group [1, 0, 0, 1]: mean 0.5, Bessel std = sqrt((4 * 0.25) / 3) = 0.57735
    # A = ±0.5 / (0.57735 + 1e-6) = ±0.866024
    adv = grpo_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0]]))
    expected = 0.5 / (math.sqrt(1 / 3) + 1e-6)
    torch.testing.assert_close(adv, torch.tensor([[expected, -expected, -expected, expected]]), rtol=1e-6, atol=1e-7)


def test_grpo_advantage_zero_variance_group_is_zero_and_groups_independent():
    rewards = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 2.0]])
    adv = grpo_advantages(rewards)
    assert torch.equal(adv[0], torch.zeros(3))
    # second group: mean 1, std 1 -> A = (-1, 0, 1) / (1 + 1e-6)
    torch.testing.assert_close(adv[1], torch.tensor([-1.0, 0.0, 1.0]) / (1 + 1e-6))


def test_dr_grpo_variant_drops_std():
    adv = grpo_advantages(torch.tensor([[0.0, 1.0, 2.0, 5.0]]), scale_by_std=False)
    torch.testing.assert_close(adv, torch.tensor([[-2.0, -1.0, 0.0, 3.0]]))


def test_grpo_advantage_rejects_bad_shape():
    with pytest.raises(ValueError, match="G >= 2"):
        grpo_advantages(torch.tensor([[1.0], [0.0]]))


def test_clipped_surrogate_hand_values():
    # ratios e^{0.5}=1.6487, e^{-0.5}=0.6065, 1.0 ; eps 0.2
    logp = torch.tensor([[0.5, -0.5, 0.0]])
    old = torch.zeros(1, 3)
    # A = +1: min(1.6487, 1.2) = 1.2 (clipped); min(0.6065, 0.8) = 0.6065; 1.0 -> loss = -[1.2, 0.6065, 1]
    loss, clipped = clipped_surrogate(logp, old, torch.tensor([[1.0]]))
    torch.testing.assert_close(loss, -torch.tensor([[1.2, math.exp(-0.5), 1.0]]))
    assert clipped.tolist() == [[True, False, False]]
    # A = -1: min(-1.6487, -1.2) = -1.6487; min(-0.6065, -0.8) = -0.8 (clipped)
    loss, clipped = clipped_surrogate(logp, old, torch.tensor([[-1.0]]))
    torch.testing.assert_close(loss, torch.tensor([[math.exp(0.5), 0.8, 1.0]]))
    assert clipped.tolist() == [[False, True, False]]


def test_clip_higher_bounds_are_separate():
    # ratio e^{0.3}=1.3499 with A=+1: clip_high=0.28 -> 1.28
    loss, _ = clipped_surrogate(torch.tensor([[0.3]]), torch.zeros(1, 1), torch.tensor([[1.0]]), 0.2, 0.28)
    torch.testing.assert_close(loss, torch.tensor([[-1.28]]))


def test_on_policy_gradient_is_minus_advantage():
    # with old = logp.detach(), d loss / d logp = -A (ratio 1, unclipped)
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    loss, _ = clipped_surrogate(logp, logp.detach(), torch.tensor([[0.7]]))
    loss.sum().backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-0.7, -0.7]]))


def test_kl_estimators_hand_values():
    logp, ref = torch.tensor([[-1.0]]), torch.tensor([[-1.5]])  # delta = ref - logp = -0.5
    torch.testing.assert_close(kl_estimate(logp, ref, "k1"), torch.tensor([[0.5]]))
    torch.testing.assert_close(kl_estimate(logp, ref, "k2"), torch.tensor([[0.125]]))
    torch.testing.assert_close(kl_estimate(logp, ref, "k3"), torch.tensor([[math.exp(-0.5) + 0.5 - 1]]))
    assert float(kl_estimate(logp, logp, "k3")) == 0.0
    with pytest.raises(ValueError, match="k1, k2, k3"):
        kl_estimate(logp, ref, "k4")


def test_aggregations_hand_values():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    # token-mean: (1+2+3+4) / 4 tokens = 2.5
    assert float(aggregate.token_mean(loss, mask, 4)) == 2.5
    # seq-mean-token-mean: (mean(1,2,3) + mean(4)) / 2 = (2 + 4) / 2 = 3
    assert float(aggregate.seq_mean_token_mean(loss, mask, 2)) == 3.0


@pytest.mark.parametrize("fn,norm", [(aggregate.token_mean, 4), (aggregate.seq_mean_token_mean, 2)])
def test_aggregation_is_micro_batch_invariant(fn, norm):
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    whole = fn(loss, mask, norm)
    split = fn(loss[:1], mask[:1], norm) + fn(loss[1:], mask[1:], norm)
    torch.testing.assert_close(whole, split)
