"""Estimators, policy losses, value loss, aggregation, KL coefficient and length terms against
values computed by hand from the formulas (each function's docstring cites its paper and equation)."""

import math

import pytest
import torch

from reasoner.algorithms import aggregate
from reasoner.algorithms.advantages import (
    discounted_returns,
    masked_whiten,
    reinforce_pp_advantages,
    rloo_advantages,
    token_rewards,
)
from reasoner.algorithms.kl import adaptive_kl_coef
from reasoner.algorithms.length import kimi_length_reward, soft_overlong_punishment
from reasoner.algorithms.policy_loss import clipped_surrogate, gspo_surrogate, truncated_is_weights
from reasoner.algorithms.value import clipped_value_loss, gae

MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])  # lengths 3 and 1


def test_rloo_is_leave_one_out_mean():
    # group [1, 0, 0, 1]: A_0 = 1 - mean(0, 0, 1) = 2/3, A_1 = 0 - mean(1, 0, 1) = -2/3
    adv = rloo_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0]]))
    torch.testing.assert_close(adv, torch.tensor([[2 / 3, -2 / 3, -2 / 3, 2 / 3]]))


def test_token_rewards_put_outcome_on_last_token_and_kl_on_every_token():
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.4, 9.0, 9.0]])
    r = token_rewards(torch.tensor([1.0, 0.0]), MASK, kl, kl_beta=0.5)
    torch.testing.assert_close(r, torch.tensor([[-0.05, -0.1, 1.0 - 0.15], [-0.2, 0.0, 0.0]]))


def test_discounted_returns():
    r = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    # gamma 0.5: G_2 = 3, G_1 = 2 + 1.5 = 3.5, G_0 = 1 + 1.75 = 2.75; second row 4
    torch.testing.assert_close(discounted_returns(r, MASK, 0.5), torch.tensor([[2.75, 3.5, 3.0], [4.0, 0.0, 0.0]]))


def test_masked_whiten_uses_only_real_tokens():
    x = torch.tensor([[1.0, 2.0, 3.0], [6.0, 100.0, 100.0]])
    # real tokens 1, 2, 3, 6: mean 3, population var (4 + 1 + 0 + 9) / 4 = 3.5
    expected = (torch.tensor([[1.0, 2.0, 3.0], [6.0, 3.0, 3.0]]) - 3) / math.sqrt(3.5 + 1e-8) * MASK
    torch.testing.assert_close(masked_whiten(x, MASK), expected)


def test_reinforce_pp_whitens_returns_over_the_batch():
    rewards = torch.tensor([[1.0, 0.0]])  # one group of 2
    kl = torch.tensor([[0.2, 0.2, 0.2], [0.4, 0.0, 0.0]])
    # returns with beta 1: row 0: [1 - 0.6, 1 - 0.4, 1 - 0.2] = [0.4, 0.6, 0.8]; row 1: [-0.4]
    returns = torch.tensor([[0.4, 0.6, 0.8], [-0.4, 0.0, 0.0]])
    torch.testing.assert_close(reinforce_pp_advantages(rewards, MASK, kl, 1.0), masked_whiten(returns, MASK))
    # baseline: outcome minus group mean 0.5 first -> [0.5, -0.5] (then the same KL returns)
    base = torch.tensor([[-0.1, 0.1, 0.3], [-0.9, 0.0, 0.0]])
    torch.testing.assert_close(
        reinforce_pp_advantages(rewards, MASK, kl, 1.0, baseline=True), masked_whiten(base, MASK)
    )


def test_gae_hand_values():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.5, 0.0, 0.0]])
    values = torch.tensor([[0.2, 0.4, 0.6], [0.1, 7.0, 7.0]])
    gamma, lam = 0.9, 0.5
    # row 0: d2 = 1 - 0.6 = 0.4; d1 = 0 + 0.9*0.6 - 0.4 = 0.14; d0 = 0 + 0.9*0.4 - 0.2 = 0.16
    # A2 = 0.4; A1 = 0.14 + 0.45*0.4 = 0.32; A0 = 0.16 + 0.45*0.32 = 0.304
    # row 1 (one token, padding ignored): d0 = 0.5 - 0.1 = 0.4 = A0
    adv, ret = gae(rewards, values, MASK, gamma, lam)
    torch.testing.assert_close(adv, torch.tensor([[0.304, 0.32, 0.4], [0.4, 0.0, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[0.504, 0.72, 1.0], [0.5, 0.0, 0.0]]))


def test_gae_with_gamma_lambda_one_is_return_minus_value():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.3, 0.5, 0.9]])
    adv, ret = gae(rewards, values, torch.ones(1, 3))
    torch.testing.assert_close(adv, 1.0 - values)
    torch.testing.assert_close(ret, torch.ones(1, 3))


def test_clipped_value_loss():
    old = torch.tensor([[0.0, 0.0]])
    values = torch.tensor([[0.5, 0.1]])
    returns = torch.tensor([[1.0, -1.0]])
    # token 0: unclipped (0.5-1)^2 = 0.25, clipped 0.2 -> (0.2-1)^2 = 0.64: max 0.64 -> 0.32
    # token 1: within the clip: (0.1+1)^2 = 1.21 -> 0.605
    torch.testing.assert_close(clipped_value_loss(values, old, returns, 0.2), torch.tensor([[0.32, 0.605]]))


def test_dual_clip_caps_the_loss_of_negative_advantages():
    logp, old = torch.tensor([[2.0, 2.0]]), torch.zeros(1, 2)  # ratio e^2 = 7.389
    adv = torch.tensor([[-1.0, 1.0]])
    loss, clipped = clipped_surrogate(logp, old, adv, 0.2, 0.2, dual_clip=3.0)
    # A = -1: plain PPO loss = max(7.389, 1.2) = 7.389, dual-clip caps it at 3; A = +1: -1.2 (clipped)
    torch.testing.assert_close(loss, torch.tensor([[3.0, -1.2]]))
    assert clipped.tolist() == [[True, True]]
    loss_plain, _ = clipped_surrogate(logp, old, adv, 0.2, 0.2)
    torch.testing.assert_close(loss_plain, torch.tensor([[math.exp(2.0), -1.2]]))


def test_gspo_uses_the_length_normalized_sequence_ratio():
    logp = torch.tensor([[0.1, 0.3, 5.0], [-0.02, 0.0, 0.0]], requires_grad=True)
    old = torch.zeros(2, 3)
    adv = torch.tensor([[1.0], [1.0]])
    loss, clipped = gspo_surrogate(logp, old, adv, MASK, clip_low=0.2, clip_high=0.3)
    # row 0 (3 tokens): s = exp(mean(0.1, 0.3, 5.0)) = exp(1.8), clipped at 1.3 on every token
    # row 1 (1 token; padding ignored): s = exp(-0.02) = 0.9802, inside [0.8, 1.3]
    torch.testing.assert_close(loss[0], torch.full((3,), -1.3))
    torch.testing.assert_close(loss[1, 0], torch.tensor(-math.exp(-0.02)))
    assert clipped[0].all() and not clipped[1, 0]
    # gradient: d loss_{1,0} / d logp_{1,0} = -A * s (the token term carries the sequence ratio)
    (loss * MASK).sum().backward()
    torch.testing.assert_close(logp.grad[1, 0], torch.tensor(-math.exp(-0.02)))
    assert float(logp.grad[0].abs().sum()) == 0.0  # clipped sequence: no gradient


def test_truncated_is_weights():
    old = torch.tensor([[-1.0, -1.0, -1.0]])
    sampler = torch.tensor([[-1.0, -2.0, -0.5]])  # ratios 1, e, e^-0.5
    w, capped = truncated_is_weights(old, sampler, cap=2.0)
    torch.testing.assert_close(w, torch.tensor([[1.0, 2.0, math.exp(-0.5)]]))
    assert capped.tolist() == [[False, True, False]]


def test_seq_mean_token_sum_norm_divides_by_constant_budget():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    # (1 + 2 + 3 + 4) / (2 sequences * L_max 10) = 0.5, whatever the lengths
    assert float(aggregate.seq_mean_token_sum_norm(loss, MASK, 2, 10)) == 0.5
    split = aggregate.seq_mean_token_sum_norm(loss[:1], MASK[:1], 2, 10) + aggregate.seq_mean_token_sum_norm(
        loss[1:], MASK[1:], 2, 10
    )
    assert float(split) == 0.5


def test_adaptive_kl_coefficient():
    # KL twice the target: error clipped to +0.2; beta * (1 + 0.2 * 64 / 1000)
    assert adaptive_kl_coef(0.1, 0.02, 0.01, 1000, 64) == pytest.approx(0.1 * (1 + 0.2 * 0.064))
    # KL 0.9 of the target: error -0.1
    assert adaptive_kl_coef(0.1, 0.009, 0.01, 1000, 64) == pytest.approx(0.1 * (1 - 0.1 * 0.064))


def test_soft_overlong_punishment_three_branches():
    # L_max 100, L_cache 20: free up to 80, linear to -1 at 100, -1 beyond
    got = soft_overlong_punishment(torch.tensor([50, 80, 90, 100, 130]), max_tokens=100, buffer=20)
    torch.testing.assert_close(got, torch.tensor([0.0, 0.0, -0.5, -1.0, -1.0]))


def test_kimi_length_reward():
    lengths = torch.tensor([[10, 20, 30, 30], [5, 5, 5, 5]])
    correct = torch.tensor([[True, True, False, True], [True, False, True, False]])
    # lambda = 0.5 - (len - 10) / 20 = [0.5, 0, -0.5, -0.5]; incorrect: min(0, lambda)
    # second group: all lengths equal -> 0
    got = kimi_length_reward(lengths, correct)
    torch.testing.assert_close(got, torch.tensor([[0.5, 0.0, -0.5, -0.5], [0.0, 0.0, 0.0, 0.0]]))
    wrong_short = kimi_length_reward(torch.tensor([[10, 30]]), torch.tensor([[False, True]]))
    torch.testing.assert_close(wrong_short, torch.tensor([[0.0, -0.5]]))  # a short wrong answer earns nothing
