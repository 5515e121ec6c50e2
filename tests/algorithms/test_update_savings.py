"""What the learner leaves out or recomputes to save time and memory changes no gradient:
sequences with a zero advantage are not run (and are run whenever a KL, entropy or critic term
sees them), the LM head runs in chunks that are recomputed in the backward pass, micro-batches
are packed to a token budget or into one row without padding, and decoder layers can be
checkpointed. The real `Learner` on a tiny random Llama, with the attention the learner has on
the CPU (`reasoner.attention.attention_for`)."""

from dataclasses import replace

import pytest
import torch
from transformers import AutoModelForCausalLM

from reasoner.algorithms import registry
from reasoner.algorithms.policy_loss import clipped_surrogate
from reasoner.attention import attention_for
from reasoner.config import AlgorithmConfig, ClipConfig, CriticConfig, KLConfig, KLPlacement, TrainerConfig
from reasoner.critic import ValueModel
from reasoner.learner import Learner
from reasoner.logprobs import completion_logprobs, pad_batch
from reasoner.rl_step import estimate_advantages
from reasoner.types import TrainBatch

G = 4
PAD = 0


@registry.register("policy_loss", "test_plain_surrogate")
def _plain_surrogate(logp, old, adv, mask, algo):
    """A registered loss that does not declare ``zero_at_zero_advantage``: never skipped."""
    return clipped_surrogate(logp, old, adv)


#: every aggregation mode and both policy losses that may skip
SKIPPING = {
    "token_mean": AlgorithmConfig(loss_agg="token_mean"),
    "seq_mean_token_mean": AlgorithmConfig(loss_agg="seq_mean_token_mean"),
    "seq_mean_token_sum_norm": AlgorithmConfig(loss_agg="seq_mean_token_sum_norm", scale_by_std=False),
    "gspo": AlgorithmConfig(policy_loss="gspo", clip=ClipConfig(0.05, 0.05), loss_agg="seq_mean_token_mean"),
    "dual_clip_tis": AlgorithmConfig(clip=ClipConfig(high=0.28, dual=3.0), tis_cap=1.5),
}
#: terms that see every sequence whatever its advantage: nothing may be skipped
NOT_SKIPPING = {
    "kl_in_loss": AlgorithmConfig(kl=KLConfig(beta=0.1, estimator="k3")),
    "kl_as_reward": AlgorithmConfig(
        estimator="reinforce_pp", kl=KLConfig(beta=0.1, estimator="k1", placement=KLPlacement.reward)
    ),
    "entropy_bonus": AlgorithmConfig(entropy_coef=0.01),
    "critic": AlgorithmConfig(estimator="gae", critic=CriticConfig(gamma=1.0, gae_lambda=1.0)),
    "undeclared_loss": AlgorithmConfig(policy_loss="test_plain_surrogate"),
}


def _batch(noisy_sampler_logprobs, rewards: list[float], seed: int = 1) -> TrainBatch:
    """len(rewards) / G groups; varied prompt and completion lengths (a group shares its
    prompt); sampler log-probs near the learner's."""
    gen = torch.Generator().manual_seed(seed)
    seqs, plens = [], []
    for i in range(len(rewards)):
        if i % G == 0:
            prompt = torch.randint(10, 1000, (3 + (i // G) % 3,), generator=gen).tolist()
        seqs.append(prompt + torch.randint(10, 1000, (2 + (5 * i) % 9,), generator=gen).tolist())
        plens.append(len(prompt))
    sampler = noisy_sampler_logprobs(seqs, plens, 0.3, gen)
    return TrainBatch(seqs, plens, torch.tensor(rewards), G, sampler, [False] * len(seqs))


@pytest.fixture(scope="module")
def mixed(noisy_sampler_logprobs) -> TrainBatch:
    """4 groups: two with a zero advantage (`REWARDS`)."""
    return _batch(noisy_sampler_logprobs, REWARDS)


#: group 0 all right and group 2 all wrong (zero advantage), groups 1 and 3 mixed
REWARDS = [1.0] * G + [1.0, 0.0, 0.0, 1.0] + [0.0] * G + [0.0, 1.0, 1.0, 1.0]


def _learner(model_dir, algo, **trainer):
    torch.manual_seed(0)
    attention = attention_for(torch.device("cpu"))
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation=attention)
    ref = (
        AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).requires_grad_(False)
        if algo.kl.beta
        else None
    )
    critic = ValueModel(model) if algo.needs_critic else None
    cfg = TrainerConfig(bf16_autocast=False, **{"micro_batch_size": 3, **trainer})
    return Learner(model, algo, cfg, PAD, 1.0, 16, ref_model=ref, critic=critic)


def _gradients(model_dir, batch, algo, **trainer):
    """Score and estimate advantages, move the weights a little (ratios leave 1, clipping
    acts), accumulate the whole batch; every parameter's gradient and the accumulate sums."""
    algo = replace(algo, ppo_epochs=2)  # old log-probs from the scoring pass
    learner = _learner(model_dir, algo, **trainer)
    prep = estimate_advantages(learner.score(batch), algo, learner.kl_coef)
    modules = [learner.model] + ([learner.critic] if learner.critic is not None else [])
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in (p for m in modules for p in m.parameters()):
            p.add_(0.3 * p.abs().mean() * torch.randn(p.shape, generator=gen))
    sums = learner.accumulate(prep, list(range(len(batch))))
    return [p.grad.clone() for m in modules for p in m.parameters() if p.grad is not None], sums


def _max_abs_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    assert len(a) == len(b) and a
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


@pytest.mark.parametrize("mode", list(SKIPPING))
def test_skipping_zero_advantage_sequences_leaves_the_gradient_unchanged(tiny_model_dir, mixed, mode):
    batch = mixed
    full, full_sums = _gradients(tiny_model_dir, batch, SKIPPING[mode], skip_zero_advantage=False)
    skip, skip_sums = _gradients(tiny_model_dir, batch, SKIPPING[mode])
    assert (full_sums["zero_adv"], skip_sums["zero_adv"]) == (0, 2 * G)
    assert skip_sums["tokens"] < full_sums["tokens"]
    scale = max(float(g.abs().max()) for g in full)
    diff = _max_abs_diff(full, skip)
    print(f"{mode}: max |grad_full - grad_skip| = {diff:.3e} (largest gradient entry {scale:.3e})")
    assert scale > 0 and diff <= 1e-5 * scale


@pytest.mark.parametrize("mode", list(NOT_SKIPPING))
def test_nothing_is_skipped_when_another_term_sees_every_sequence(tiny_model_dir, mixed, mode):
    _, sums = _gradients(tiny_model_dir, mixed, NOT_SKIPPING[mode])
    assert sums["zero_adv"] == 0


def test_a_batch_of_zero_advantages_runs_no_pass_and_steps_as_without_skipping(tiny_model_dir, noisy_sampler_logprobs):
    """A mini-batch with nothing left to run still takes its optimizer step, on a zero gradient,
    so AdamW's moments, weight decay and the LR schedule move as they do without skipping."""
    algo = AlgorithmConfig()
    varied = _batch(noisy_sampler_logprobs, [1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0])  # nothing to skip
    zero = _batch(noisy_sampler_logprobs, [1.0] * G + [0.0] * G)
    runs = {}
    for skip in (True, False):
        learner = _learner(tiny_model_dir, algo, skip_zero_advantage=skip, lr=1e-3, weight_decay=0.1)
        learner.update(estimate_advantages(learner.score(varied), algo, learner.kl_coef))  # momentum != 0
        before = [p.detach().clone() for p in learner.model.parameters()]
        stats = learner.update(estimate_advantages(learner.score(zero), algo, learner.kl_coef))
        moved = max(float((a - b).abs().max()) for a, b in zip(before, learner.model.parameters()))
        runs[skip] = (stats, [p.detach().clone() for p in learner.model.parameters()], learner, moved)
    (skipped, params, learner, moved), (full, full_params, full_learner, _) = runs[True], runs[False]
    assert (skipped.optimizer_steps, skipped.empty_steps, skipped.zero_adv_sequences) == (1, 1, 2 * G)
    assert (full.optimizer_steps, full.empty_steps, full.zero_adv_sequences) == (1, 0, 0)
    assert skipped.grad_norm == full.grad_norm == 0.0 and skipped.entropy != skipped.entropy  # NaN: nothing run
    assert moved > 1e-6  # the zero-gradient step moved the weights
    assert learner.scheduler.last_epoch == full_learner.scheduler.last_epoch == 2
    diff = _max_abs_diff(params, full_params)
    print(f"max |param_skip - param_full| after the zero-advantage step = {diff:.3e} (moved {moved:.3e})")
    assert diff == 0.0


def test_chunked_lm_head_gives_the_same_logprobs_entropy_and_gradients(tiny_model_dir, mixed):
    batch = mixed
    padded = pad_batch(batch.sequences, batch.prompt_lens, PAD)
    results = []
    for chunk in (10_000, 7, 1):  # one chunk (kept), several and one position per chunk (recomputed)
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        logp, ent = completion_logprobs(model, padded, 0.7, with_entropy=True, entropy_grad=True, chunk_tokens=chunk)
        ((logp * torch.linspace(-1, 1, logp.shape[1])).sum() + ent.sum()).backward()
        results.append((logp.detach(), ent.detach(), [p.grad for p in model.parameters()]))
    (lp0, ent0, g0), *others = results
    for lp, ent, g in others:
        torch.testing.assert_close(lp, lp0, rtol=0, atol=1e-5)
        torch.testing.assert_close(ent, ent0, rtol=0, atol=1e-5)
        assert _max_abs_diff(g0, g) <= 1e-5 * max(float(x.abs().max()) for x in g0)


def test_token_budget_micro_batches_respect_the_budget_and_keep_the_gradient(tiny_model_dir, mixed):
    batch = mixed
    learner = _learner(tiny_model_dir, AlgorithmConfig(), micro_batch_tokens=40)
    parts = learner._micro_batches(batch, list(range(len(batch))))
    assert sorted(i for part in parts for i in part) == list(range(len(batch)))
    longest = [max(len(batch.sequences[i]) for i in part) for part in parts]
    assert all(len(part) * n <= 40 or len(part) == 1 for part, n in zip(parts, longest))
    assert len(parts) > 2 and any(len(part) > 1 for part in parts)
    algo = SKIPPING["token_mean"]
    whole, _ = _gradients(tiny_model_dir, batch, algo, micro_batch_size=len(batch), skip_zero_advantage=False)
    packed, _ = _gradients(tiny_model_dir, batch, algo, micro_batch_tokens=40, skip_zero_advantage=False)
    assert _max_abs_diff(whole, packed) <= 1e-5 * max(float(x.abs().max()) for x in whole)


def test_gradient_checkpointing_keeps_the_gradient(tiny_model_dir, mixed):
    batch = mixed
    algo = SKIPPING["token_mean"]
    plain, _ = _gradients(tiny_model_dir, batch, algo)
    ckpt, _ = _gradients(tiny_model_dir, batch, algo, gradient_checkpointing=True, logits_chunk_tokens=5)
    assert _max_abs_diff(plain, ckpt) <= 1e-5 * max(float(x.abs().max()) for x in plain)


@pytest.mark.parametrize("mode", ["token_mean", "seq_mean_token_sum_norm", "dual_clip_tis"])
def test_packed_micro_batches_keep_the_gradient(tiny_model_dir, mixed, mode):
    """`trainer.packing`: the scoring pass and the update on packed rows give the padded rows'
    gradient and sums (micro-batches of 3 rows, so some hold two groups' prompts)."""
    algo = SKIPPING[mode]
    padded, padded_sums = _gradients(tiny_model_dir, mixed, algo, packing=False)  # packing is the default
    packed, packed_sums = _gradients(tiny_model_dir, mixed, algo, packing=True)
    assert _max_abs_diff(padded, packed) <= 1e-5 * max(float(x.abs().max()) for x in padded)
    assert packed_sums["tokens"] == padded_sums["tokens"]
    assert packed_sums["loss"] == pytest.approx(padded_sums["loss"], rel=1e-5)
