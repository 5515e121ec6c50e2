"""Config: every YAML composes; typos, wrong types and bad values fail naming the field."""

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from reasoner.config import CONF_DIR, Backend, RunConfig, register_configs
from reasoner.jobs.cli import to_run_config
from reasoner.models import resolve_model_path, train_device

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
    with pytest.raises(ValueError, match=r"algorithm.sampling.group_size=1 .*>= 2"):
        to_run_config(_compose(["algorithm.sampling.group_size=1"]))


def test_benchmark_eval_needs_a_cadence():
    assert to_run_config(_compose(["trainer.eval_benchmarks=[gsm8k]"])).trainer.eval_benchmarks == [
        "gsm8k"
    ]  # trainer=cpu: every 10 steps
    with pytest.raises(
        ValueError,
        match=r"trainer.eval_benchmarks=\['gsm8k'\] is not allowed: must be empty unless trainer.eval_every > 0",
    ):
        to_run_config(_compose(["trainer.eval_benchmarks=[gsm8k]", "trainer.eval_every=0"]))


@pytest.mark.parametrize(
    "override,field,allowed",
    [
        ("trainer.keep_last=0", "trainer.keep_last=0", ">= 1"),
        ("trainer.checkpoint_every=-1", "trainer.checkpoint_every=-1", ">= 0"),
        ("trainer.max_nonfinite_steps=0", "trainer.max_nonfinite_steps=0", ">= 1"),
        ("trainer.lr_warmup_steps=-2", "trainer.lr_warmup_steps=-2", ">= 0"),
        ("trainer.resume=''", "trainer.resume=''", "'auto', 'never' or a checkpoint"),
        ("trainer.grad_clip=0", "trainer.grad_clip=0.0", "> 0"),
        ("sft.lr=0", "sft.lr=0.0", "> 0"),
        ("rollout.gpu_memory_utilization=1.5", "rollout.gpu_memory_utilization=1.5", r"in \(0, 1\]"),
        ("rollout.top_p=0", "rollout.top_p=0.0", r"in \(0, 1\]"),
        ("data.train=' '", "data.train=' '", "a source: arithmetic"),
        ("trainer.device=gpu", "trainer.device='gpu'", "auto, cpu, cuda or cuda:N"),
    ],
)
def test_config_errors_name_field_value_and_what_is_allowed(override, field, allowed):
    with pytest.raises(ValueError, match=rf"config field {re.escape(field)} is not allowed: must be {allowed}"):
        to_run_config(_compose([override]))


def test_bad_best_mode_lists_choices():
    with pytest.raises(ConfigCompositionException) as err:
        _compose(["trainer.best_mode=highest"])
    assert "trainer.best_mode" in str(err.value.__cause__) and "max" in str(err.value.__cause__)


def test_missing_model_paths_say_what_was_looked_for(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=rf"model.path='{tmp_path}/gone': no such directory \(looked for {tmp_path}/gone\)"
    ):
        resolve_model_path(str(tmp_path / "gone"))
    with pytest.raises(FileNotFoundError, match=rf"not an HF model directory \(looked for {tmp_path}/config.json\)"):
        resolve_model_path(str(tmp_path))


def test_training_device_auto_is_the_cpu_here_and_a_gpu_that_is_absent_is_refused():
    import torch

    assert train_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert train_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"trainer.device='cuda:1': torch .* sees no CUDA device"):
            train_device("cuda:1")
    assert to_run_config(_compose(["trainer.device=cuda:1"])).trainer.device == "cuda:1"  # valid; resolved at load


def test_rollout_dtype_choices():
    assert to_run_config(_compose(["rollout.dtype=float32"])).rollout.dtype.value == "float32"
    with pytest.raises(ValueError, match="rollout.dtype='bfloat16' is not allowed: must be auto or float32"):
        to_run_config(_compose(["rollout=hf", "rollout.dtype=bfloat16"]))
    with pytest.raises(ConfigCompositionException) as err:
        _compose(["rollout.dtype=fp16"])
    assert "rollout.dtype" in str(err.value.__cause__) and "float32" in str(err.value.__cause__)
