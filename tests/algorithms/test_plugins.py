"""A user's own advantage estimator and policy loss, registered from this test module (no edit
under reasoner/), train 2 RL steps on the tiny model; unknown names list the valid ones."""

import json

import pytest
import torch
from hydra import compose, initialize_config_dir

from reasoner.algorithms.registry import AdvantageInput, get, register
from reasoner.config import CONF_DIR, register_configs
from reasoner.jobs.cli import to_run_config
from reasoner.jobs.rl import run

register_configs()
CALLS = {"advantage": 0, "policy_loss": 0}


@register("advantage", "test_sign")
def sign_advantage(x: AdvantageInput, algo) -> tuple[torch.Tensor, None]:
    """+1 above the group's mean reward, -1 below, 0 at it: a toy estimator."""
    CALLS["advantage"] += 1
    g = x.grouped
    return torch.sign(g - g.mean(dim=1, keepdim=True)).reshape(-1, 1) * x.mask, None


@register("policy_loss", "test_reinforce")
def reinforce_loss(logp, old_logp, advantages, mask, algo):
    """Plain REINFORCE, -A log π (no ratio, nothing clipped)."""
    CALLS["policy_loss"] += 1
    return -advantages * logp, torch.zeros_like(logp, dtype=torch.bool)


def _cfg(model_dir, extra):
    tiny = [
        f"model.path={model_dir}",
        "rollout.backend=hf",
        "trainer.steps=2",
        "trainer.prompts_per_step=2",
        "algorithm.sampling.group_size=4",
        "rollout.max_tokens=8",
        "rollout.max_model_len=256",
        "trainer.eval_max_tokens=8",
        "data.heldout_n=4",
        "sft.enabled=false",
        "reward.format_weight=0.1",
    ]
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return to_run_config(compose(config_name="config", overrides=[*tiny, *extra]))


def test_a_registered_estimator_and_loss_train_two_steps(tiny_model_dir, tmp_path):
    # the loss by name, the estimator by its import path (module:function)
    extra = [f"algorithm.estimator={__name__}:sign_advantage", "algorithm.policy_loss=test_reinforce"]
    cfg = _cfg(tiny_model_dir, extra)
    assert get("advantage", cfg.algorithm.estimator).fn is sign_advantage
    before = dict(CALLS)
    run(cfg, tmp_path)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2]
    assert all(m["policy/optimizer_steps"] == 1 and m["policy/clip_frac"] == 0.0 for m in lines)
    assert CALLS["advantage"] - before["advantage"] == 2  # once per step
    assert CALLS["policy_loss"] > before["policy_loss"]  # once per micro-batch


def test_unknown_names_list_the_registered_ones(tiny_model_dir):
    with pytest.raises(ValueError, match=r"algorithm.policy_loss='nope'.*registered: gspo, ppo_clip, .*test_reinforce"):
        _cfg(tiny_model_dir, ["algorithm.policy_loss=nope"])
    with pytest.raises(ValueError, match=r"algorithm.kl.estimator='k4'.*k1, k2, k3"):
        _cfg(tiny_model_dir, ["algorithm.kl.estimator=k4"])


def test_a_name_cannot_be_taken_twice():
    with pytest.raises(ValueError, match="already registered"):
        register("advantage", "grpo")(lambda x, algo: None)
