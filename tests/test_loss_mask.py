"""The per-token loss mask: tokens the policy did not generate (a tool's output inside a
completion) are context only. They get no log-prob and no gradient, count in no normalizer, KL
or length, and the sampler's log-probs line up with the policy's tokens."""

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from reasoner.config import AlgorithmConfig, KLConfig, ShapingConfig, TrainerConfig
from reasoner.learner import Learner
from reasoner.logprobs import completion_logprobs, pad_batch
from reasoner.rewards import add_length_terms
from reasoner.rl_step import estimate_advantages, to_train_batch
from reasoner.types import Completion, Problem, PromptBatch, RolloutBatch, ScoredBatch

PAD = 0
PROMPT = [21, 22, 23, 24]
# completion g of the group: 6 tokens; positions 2-3 are a "tool output" in the first two
TOKENS = [[31, 32, 33, 34, 35, 36], [41, 42, 43, 44, 45, 46], [51, 52, 53, 54, 55, 56], [61, 62, 63, 64, 65, 66]]
MASKS = [[1, 1, 0, 0, 1, 1], [1, 0, 0, 1, 1, 1], [1] * 6, [1] * 6]


def _scored(rewards=(1.0, 0.0, 0.0, 1.0)):
    completions = [Completion(t, "", [-1.0] * sum(m), "stop", loss_mask=m) for t, m in zip(TOKENS, MASKS)]
    prompts = PromptBatch([Problem("p", "q", "1")], [PROMPT])
    r = torch.tensor([list(rewards)])
    return ScoredBatch(RolloutBatch(prompts, [completions]), [[None] * 4], r, r > 0)


def test_masked_targets_get_no_logprob_and_the_rest_match_the_full_pass(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    seqs, plens = [PROMPT + t for t in TOKENS], [len(PROMPT)] * 4
    with torch.no_grad():
        full, _ = completion_logprobs(model, pad_batch(seqs, plens, PAD))  # shared prompt path
        masked_batch = pad_batch(seqs, plens, PAD, MASKS)
        masked, _ = completion_logprobs(model, masked_batch)
        alone, _ = completion_logprobs(model, pad_batch(seqs[:1], plens[:1], PAD, MASKS[:1]))  # no sharing
    assert masked_batch.target_mask.sum() == sum(map(sum, MASKS))
    off = masked_batch.completion_mask & ~masked_batch.target_mask
    assert int(off.sum()) == 4 and float(masked[off].abs().sum()) == 0.0
    torch.testing.assert_close(masked[masked_batch.target_mask], full[masked_batch.target_mask])
    torch.testing.assert_close(alone[0], masked[0])


def _grads(model_dir, batch, algo):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    learner = Learner(model, algo, TrainerConfig(micro_batch_size=2, bf16_autocast=False), PAD, 1.0, 8)
    prepared = estimate_advantages(learner.score(batch), algo, learner.kl_coef)
    sums = learner.accumulate(prepared, list(range(len(batch))))
    return model, prepared, sums


def test_the_update_trains_on_policy_tokens_only(tiny_model_dir):
    """The learner's gradient is that of -Σ_t m_t A_i logp_{i,t} / Σ m (token mean over policy
    tokens), computed by hand from a full forward pass."""
    batch = to_train_batch(_scored())
    algo = AlgorithmConfig()
    model, prepared, sums = _grads(tiny_model_dir, batch, algo)
    assert sums["tokens"] == 20 and batch.policy_lengths == [4, 4, 6, 6]
    assert [len(a) for a in prepared.advantages] == [4, 4, 6, 6]
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    padded = pad_batch(batch.sequences, batch.prompt_lens, PAD, MASKS)
    logp, _ = completion_logprobs(model, padded)
    r = torch.tensor([1.0, 0.0, 0.0, 1.0])
    adv = (r - r.mean()) / (r.std() + 1e-6)  # GRPO's group z-score (Bessel std): ±0.866
    mask = padded.target_mask.float()
    (-(adv[:, None] * logp * mask).sum() / mask.sum()).backward()
    for a, b in zip(got, [p.grad for p in model.parameters()]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_masked_tokens_add_no_kl_and_sampler_logprobs_line_up(tiny_model_dir):
    """The KL term sums k1 = logp - ref_logp over the policy's tokens only (hand-computed from
    full passes of both models), and each sequence's sampler log-probs count its 1s."""
    batch = to_train_batch(_scored())
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    ref = copy.deepcopy(model).requires_grad_(False)
    with torch.no_grad():
        ref.lm_head.weight.add_(0.05 * torch.randn_like(ref.lm_head.weight))
    algo = AlgorithmConfig(kl=KLConfig(beta=0.1, estimator="k1"))
    learner = Learner(model, algo, TrainerConfig(micro_batch_size=2, bf16_autocast=False), PAD, 1.0, 8, ref)
    sums = learner.accumulate(estimate_advantages(learner.score(batch), algo, 0.1), list(range(4)))
    padded = pad_batch(batch.sequences, batch.prompt_lens, PAD, MASKS)
    with torch.no_grad():
        logp, _ = completion_logprobs(model, padded)
        ref_logp, _ = completion_logprobs(ref, padded)
    everywhere = pad_batch(batch.sequences, batch.prompt_lens, PAD)
    with torch.no_grad():
        all_kl = (completion_logprobs(model, everywhere)[0] - completion_logprobs(ref, everywhere)[0]).sum()
    want = float((logp - ref_logp)[padded.target_mask].sum())
    assert sums["kl"] == pytest.approx(want, rel=1e-4) and abs(want - float(all_kl)) > 1e-3
    assert sums["mismatch_n"] == 20  # every policy token has a sampler log-prob, no masked one does


def test_length_terms_count_policy_tokens():
    shaped, metrics = add_length_terms(_scored(), ShapingConfig(overlong_buffer=2), max_tokens=6, step=1)
    # policy tokens 4, 4, 6, 6 with L_max 6, L_cache 2: (L_max - L_cache) = 4 < |y| gets -(|y| - 4) / 2
    torch.testing.assert_close(shaped.rewards - _scored().rewards, torch.tensor([[0.0, 0.0, -1.0, -1.0]]))
    assert metrics["reward/overlong_penalty"] == pytest.approx(-0.5)


def test_a_mask_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="loss_mask has 2 flags for 3 tokens"):
        Completion([1, 2, 3], "", [], "stop", loss_mask=[1, 0])
