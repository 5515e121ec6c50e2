"""The real `Learner` on a tiny random Llama: every loss mode gives the same gradient whether a
mini-batch runs as 1, 2 or 4 micro-batches; epochs / mini-batches; the default GRPO update is
the plain on-policy policy gradient."""

import copy
import io
from dataclasses import replace

import pytest
import torch
from transformers import AutoModelForCausalLM

from reasoner.config import AlgorithmConfig, ClipConfig, CriticConfig, KLConfig, KLPlacement, TrainerConfig
from reasoner.critic import ValueModel
from reasoner.learner import Learner
from reasoner.logprobs import completion_logprobs, pad_batch
from reasoner.rl_step import estimate_advantages
from reasoner.types import TrainBatch

G = 4
PAD = 0

MODES = {
    "token_mean": AlgorithmConfig(loss_agg="token_mean"),
    "seq_mean_token_mean": AlgorithmConfig(loss_agg="seq_mean_token_mean"),
    "seq_mean_token_sum_norm": AlgorithmConfig(loss_agg="seq_mean_token_sum_norm", scale_by_std=False),
    "gspo": AlgorithmConfig(policy_loss="gspo", clip=ClipConfig(0.05, 0.05), loss_agg="seq_mean_token_mean"),
    "dual_clip_tis_kl_loss_entropy": AlgorithmConfig(
        clip=ClipConfig(high=0.28, dual=3.0), tis_cap=2.0, kl=KLConfig(beta=0.1, estimator="k3"), entropy_coef=0.01
    ),
    "rloo_mask_truncated": AlgorithmConfig(estimator="rloo", mask_truncated=True),
    "reinforce_pp_kl_reward": AlgorithmConfig(
        estimator="reinforce_pp", kl=KLConfig(beta=0.1, estimator="k1", placement=KLPlacement.reward)
    ),
    "reinforce_pp_baseline_k2": AlgorithmConfig(
        estimator="reinforce_pp_baseline", kl=KLConfig(beta=0.01, estimator="k2")
    ),
    "ppo_gae_critic": AlgorithmConfig(
        estimator="gae", critic=CriticConfig(gamma=0.99, gae_lambda=0.95, value_clip=0.1)
    ),
}


@pytest.fixture(scope="module")
def batch(noisy_sampler_logprobs):
    """2 groups of 4 sequences with varied prompt and completion lengths, mixed rewards, one
    truncated completion, and sampler log-probs that differ from the learner's."""
    gen = torch.Generator().manual_seed(1)
    seqs, plens = [], []
    for i in range(2 * G):
        p, t = 3 + i % 3, 2 + (5 * i) % 7
        seqs.append(torch.randint(10, 1000, (p + t,), generator=gen).tolist())
        plens.append(p)
    sampler = noisy_sampler_logprobs(seqs, plens, 0.5, gen)
    sampler[3] = []  # a sequence without sampler log-probs
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.5])
    truncated = [False, True, False, False, False, False, False, False]
    return TrainBatch(seqs, plens, rewards, G, sampler, truncated)


def _gradients(model_dir, algo, micro_batch_size, batch):
    """Prepare, move the weights a little (so ratios leave 1 and clipping is active), then
    accumulate the whole batch as one mini-batch; return every parameter's gradient."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    algo = replace(algo, ppo_epochs=2)  # old log-probs from `prepare`, not the current ones
    ref = copy.deepcopy(model).requires_grad_(False) if algo.kl.beta else None
    critic = ValueModel(model) if algo.needs_critic else None
    trainer = TrainerConfig(micro_batch_size=micro_batch_size, bf16_autocast=False)
    learner = Learner(model, algo, trainer, PAD, temperature=1.0, max_tokens=16, ref_model=ref, critic=critic)
    prep = _prepare(learner, batch, algo)
    modules = [model] + ([critic] if critic is not None else [])
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for m in modules:
            for p in m.parameters():
                p.add_(0.5 * p.abs().mean() * torch.randn(p.shape, generator=gen))
    sums = learner.accumulate(prep, list(range(len(batch))))
    grads = [p.grad.clone() for m in modules for p in m.parameters() if p.grad is not None]
    return grads, sums


@pytest.mark.parametrize("mode", list(MODES))
def test_gradient_is_micro_batch_invariant(tiny_model_dir, batch, mode):
    whole, sums = _gradients(tiny_model_dir, MODES[mode], 8, batch)
    assert whole and any(float(g.abs().sum()) > 0 for g in whole)
    if mode == "dual_clip_tis_kl_loss_entropy":
        assert sums["clip"] > 0 and sums["tis_capped"] > 0 and sums["kl"] > 0
    if mode == "ppo_gae_critic":
        assert sums["value_loss"] > 0
    for mb in (4, 2):  # 2 and 4 micro-batches
        split, _ = _gradients(tiny_model_dir, MODES[mode], mb, batch)
        assert len(split) == len(whole)
        for a, b in zip(whole, split):
            _assert_same_gradient(a, b)


def _prepare(learner, batch, algo):
    """The step's logprobs and advantages phases (`Learner.score`, `estimate_advantages`)."""
    return estimate_advantages(learner.score(batch), algo, learner.kl_coef)


def _train(learner, batch, algo):
    return learner.update(_prepare(learner, batch, algo))


def _batch_without_advantages():
    return TrainBatch([[11, 12, 13]], [2], torch.tensor([1.0]), 1, [[]], [False])


def _assert_same_gradient(a, b):
    """Equal up to float32 summation order: relative L2 error below 1e-5."""
    err = float((a - b).norm() / a.norm().clamp(min=1e-12))
    assert err < 1e-5, f"gradients differ by {err:.2e} (relative L2)"


def test_default_grpo_update_is_the_on_policy_policy_gradient(tiny_model_dir, batch):
    """With one epoch and one mini-batch the loss gradient is that of -Σ A_i logp_{i,t} / tokens."""
    from reasoner.algorithms.advantages import grpo_advantages

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    algo = AlgorithmConfig()
    trainer = TrainerConfig(micro_batch_size=3, bf16_autocast=False)
    learner = Learner(model, algo, trainer, PAD, temperature=1.0, max_tokens=16)
    learner.accumulate(_prepare(learner, batch, algo), list(range(len(batch))))
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    padded = pad_batch(batch.sequences, batch.prompt_lens, PAD)
    logp, _ = completion_logprobs(model, padded)
    adv = grpo_advantages(batch.rewards.reshape(-1, G)).reshape(-1, 1)
    (-(adv * logp * padded.target_mask).sum() / padded.target_mask.sum()).backward()
    for a, b in zip(got, [p.grad for p in model.parameters()]):
        _assert_same_gradient(a, b)


def test_epochs_and_mini_batches_take_one_step_each_and_move_the_critic(tiny_model_dir, batch):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    critic = ValueModel(model)
    algo = AlgorithmConfig(estimator="gae", ppo_epochs=2, mini_batches=2, kl=KLConfig(beta=0.05, target=0.001))
    ref = copy.deepcopy(model).requires_grad_(False)
    trainer = TrainerConfig(micro_batch_size=2)
    learner = Learner(model, algo, trainer, PAD, 1.0, 16, ref_model=ref, critic=critic)
    before = [p.detach().clone() for p in model.parameters()]
    stats = _train(learner, batch, algo)
    assert stats.optimizer_steps == 4
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert float(critic.head.weight.abs().sum()) > 0  # the value head left its zero init
    assert stats.value_loss > 0 and stats.kl > 0
    assert stats.kl_coef != 0.05  # adaptive: moved toward the target
    assert 0 <= stats.logprob_mismatch < 2


def test_learner_rejects_missing_models(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with pytest.raises(ValueError, match="reference model"):
        Learner(model, AlgorithmConfig(kl=KLConfig(beta=0.1)), TrainerConfig(), PAD, 1.0, 16)
    with pytest.raises(ValueError, match="gae: a critic is needed"):
        Learner(model, AlgorithmConfig(estimator="gae"), TrainerConfig(), PAD, 1.0, 16)
    with pytest.raises(ValueError, match="no advantages"):
        Learner(model, AlgorithmConfig(), TrainerConfig(), PAD, 1.0, 16).update(_batch_without_advantages())


def test_nonfinite_update_is_skipped_without_touching_any_state(tiny_model_dir, batch):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    critic = ValueModel(model)
    algo = AlgorithmConfig(estimator="gae", mini_batches=2)
    learner = Learner(model, algo, TrainerConfig(micro_batch_size=4, lr_warmup_steps=4), PAD, 1.0, 16, critic=critic)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bad = replace(batch, rewards=batch.rewards.clone().index_fill_(0, torch.tensor([5]), float("nan")))
    stats = _train(learner, bad, algo)  # the NaN reward makes every token's advantage (whitened over the batch) NaN
    assert (stats.skipped_steps, stats.optimizer_steps) == (2, 0) and stats.loss != stats.loss
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert learner.optimizer.state_dict()["state"] == {} and learner.critic_optimizer.state_dict()["state"] == {}
    assert learner.scheduler.last_epoch == 0 and all(p.grad is None for p in model.parameters())
    stats = _train(learner, batch, algo)  # a finite batch trains again, at the warm-up's next rates
    assert (stats.skipped_steps, stats.optimizer_steps) == (0, 2) and stats.grad_norm > 0
    assert learner.scheduler.last_epoch == 2 and learner.optimizer.param_groups[0]["lr"] == pytest.approx(
        TrainerConfig().lr * 3 / 4
    )


def test_learner_state_round_trips(tiny_model_dir, batch):
    """A second learner given the first's state_dict (through torch.save / torch.load, as a
    checkpoint holds it) and weights takes the same next update."""
    algo = AlgorithmConfig(mini_batches=2, kl=KLConfig(beta=0.05, target=0.001))
    trainer = TrainerConfig(micro_batch_size=4, lr_warmup_steps=3, bf16_autocast=False)

    def fresh():
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        return Learner(
            model,
            algo,
            replace(trainer, seed=7),
            PAD,
            1.0,
            16,
            ref_model=copy.deepcopy(model).requires_grad_(False),
        )

    first = fresh()
    _train(first, batch, algo)
    second = fresh()
    second.model.load_state_dict(first.model.state_dict())
    saved = io.BytesIO()
    torch.save(first.state_dict(), saved)
    saved.seek(0)
    second.load_state_dict(torch.load(saved, weights_only=True))
    a, b = _train(first, batch, algo), _train(second, batch, algo)
    assert a == b and a.kl_coef != 0.05
    assert all(torch.equal(x, y) for x, y in zip(first.model.parameters(), second.model.parameters()))


def test_loading_weights_of_another_model_names_the_file_and_tensor(tiny_model_dir, tmp_path):
    """A checkpoint directory whose policy file has a tensor the model lacks, lacks one it has,
    or has another shape is refused, naming the file and the tensor (no partial load)."""
    from safetensors.torch import load_file, save_file

    learner = Learner(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
        AlgorithmConfig(),
        TrainerConfig(),
        PAD,
        1.0,
        16,
    )
    learner.save(tmp_path)
    file = tmp_path / "policy.safetensors"
    weights = load_file(file)
    name = "model.layers.0.mlp.up_proj.weight"
    cases = {
        "has tensors the model has not \\(model.layers.9.extra\\)": {**weights, "model.layers.9.extra": torch.zeros(2)},
        f"has no tensor '{name}'": {k: v for k, v in weights.items() if k != name},
        f"'{name}' has shape \\(3, 3\\)": {**weights, name: torch.zeros(3, 3)},
    }
    for message, tensors in cases.items():
        save_file(tensors, file)
        with pytest.raises(ValueError, match=f"{file}.*{message}|{file}: {message}"):
            learner.load(tmp_path)
