"""A verifier that fails on every sample: the step is not trained on (its zeros are not the
model's rewards), and after ``trainer.max_verifier_failures`` such steps in a row the run stops,
naming its last intact checkpoint."""

import json

import pytest
import torch
from hydra import compose, initialize_config_dir
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from reasoner.config import CONF_DIR, register_configs
from reasoner.jobs.cli import to_run_config
from reasoner.jobs.rl import VerifierFailed, run

register_configs()


class BrokenVerifier:
    """Raises on every call, as a verifier whose worker pool died does."""

    def __init__(self, **_: object) -> None:
        pass

    def verify_batch(self, pairs):
        raise BrokenPipeError("[Errno 32] Broken pipe")

    def close(self) -> None:
        pass


def test_a_run_whose_verifier_always_fails_trains_nothing_and_stops(tiny_model_dir, tmp_path):
    overrides = [
        f"model.path={tiny_model_dir}",
        "rollout.backend=hf",
        f"reward.verifier._target_={__name__}.BrokenVerifier",
        "trainer.steps=5",
        "trainer.prompts_per_step=2",
        "algorithm.sampling.group_size=2",
        "rollout.max_tokens=4",
        "rollout.max_model_len=256",
        "data.heldout_n=2",
        "sft.enabled=false",
        "trainer.eval_base=false",
        "trainer.checkpoint_every=1",
        "trainer.max_verifier_failures=2",
    ]
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = to_run_config(compose(config_name="config", overrides=overrides))
    with pytest.raises(VerifierFailed, match=r"steps 1-2: the verifier failed on every sample.*step_000002 \(step 2\)"):
        run(cfg, tmp_path)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(m["step"], m["reward/verifier_failed"], m["policy/optimizer_steps"]) for m in lines] == [
        (1, 1.0, 0.0),
        (2, 1.0, 0.0),
    ]
    assert all(m["reward/verify_errors"] == 4 for m in lines)
    # nothing was trained on: the checkpointed policy is the model as loaded
    saved = load_file(tmp_path / "checkpoints" / "step_000002" / "policy.safetensors")
    start = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).state_dict()
    assert all(torch.equal(saved[k], start[k]) for k in saved)
