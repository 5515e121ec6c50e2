"""Config: every YAML composes; typos, wrong types and bad values fail naming the field."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from reasoner.config import Backend, RunConfig, register_configs
from reasoner.train import CONF_DIR, to_run_config

register_configs()


def _compose(overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return compose(config_name="config", overrides=overrides)


def test_default_composes_to_typed_config():
    cfg = to_run_config(_compose([]))
    assert isinstance(cfg, RunConfig)
    assert cfg.rollout.backend is Backend.vllm and cfg.algorithm.name == "grpo"


@pytest.mark.parametrize(
    "group_file", sorted(p for p in Path(CONF_DIR).rglob("*.yaml") if p.parent != Path(CONF_DIR)), ids=str
)
def test_every_group_option_composes(group_file):
    group = group_file.parent.relative_to(CONF_DIR).as_posix()
    cfg = to_run_config(_compose([f"{group}={group_file.stem}"]))
    assert isinstance(cfg, RunConfig)


def test_typo_in_override_names_the_field():
    with pytest.raises(ConfigCompositionException) as err:
        _compose(["trainer.lr_typo=1e-5"])
    assert "lr_typo" in str(err.value.__cause__ or err.value)


def test_wrong_type_names_the_field():
    with pytest.raises(ConfigCompositionException) as err:
        _compose(["trainer.steps=many"])
    cause = err.value.__cause__
    assert isinstance(cause, ValidationError) and "trainer.steps" in str(cause)


def test_bad_enum_value_lists_choices():
    with pytest.raises(ConfigCompositionException) as err:
        _compose(["rollout.backend=trl"])
    assert "rollout.backend" in str(err.value.__cause__) and "vllm" in str(err.value.__cause__)


def test_out_of_range_value_names_field_and_rule():
    with pytest.raises(ValueError, match=r"algorithm.group_size=1 .*>= 2"):
        to_run_config(_compose(["algorithm.group_size=1"]))


def test_benchmark_eval_needs_a_cadence():
    assert to_run_config(_compose(["trainer.eval_benchmarks=[gsm8k]"])).trainer.eval_benchmarks == ["gsm8k"]  # trainer=cpu: every 10 steps
    with pytest.raises(ValueError, match=r"trainer.eval_benchmarks=\['gsm8k'\] is not allowed: must be empty unless trainer.eval_every > 0"):
        to_run_config(_compose(["trainer.eval_benchmarks=[gsm8k]", "trainer.eval_every=0"]))
