"""What a new user hits in the first hour (issue 24), each on real inputs: own data that the
held-out set swallows fails before any model loads; a refused or repeated job leaves the run's
record (``.hydra/config.yaml``, ``summary.json``) as it was; unknown ``+`` keys are refused; a
custom verifier works from one override and fails in seconds when it cannot be built; the
printed commands run as shown; ``reasoner-eval`` subcommands fail without a traceback."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from eval.cli import to_eval_config
from reasoner.config import CONF_DIR, register_configs
from reasoner.data import arithmetic
from reasoner.jobs.cli import to_run_config
from reasoner.jobs.rl import run
from verifiers.registry import build_verifier

register_configs()
ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
TINY_RUN = [
    "rollout=hf",
    "sft.enabled=false",
    "trainer.steps=1",
    "trainer.prompts_per_step=2",
    "algorithm.sampling.group_size=2",
    "trainer.micro_batch_size=4",
    "rollout.max_tokens=4",
    "trainer.eval_max_tokens=4",
    "data.heldout_n=2",
    "trainer.save_checkpoint=false",
    "trainer.loggers=[jsonl]",
]


def _rows_file(path: Path, n: int) -> Path:
    rows = [
        {"id": p.id, "problem": p.problem, "answer": p.answer, "solution": p.solution}
        for p in arithmetic.generate(n, [1], seed=11)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _cfg(overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return to_run_config(compose(config_name="config", overrides=overrides))


def _cli(args, timeout=600):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_own_file_swallowed_by_the_heldout_set_fails_before_any_model_loads(tmp_path):
    rows = _rows_file(tmp_path / "mine.jsonl", 3)
    # the model path does not exist: the data check must come first, or this would be FileNotFoundError
    cfg = _cfg([f"data.train={rows}", f"data.heldout={rows}", "model.path=/nonexistent/model", "sft.enabled=false"])
    with pytest.raises(ValueError, match=r"no RL prompt is left: all 3 of its problems are in the held-out set") as err:
        run(cfg, tmp_path / "run")
    assert "data.heldout_n=500" in str(err.value) and "below 3" in str(err.value)
    assert not (tmp_path / "run" / ".hydra").exists()  # nothing recorded for a job that did not run


def test_unknown_plus_keys_are_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"trainer\.stepz \(did you mean steps\?\)"):
        _cfg(["+trainer.stepz=3"])
    with pytest.raises(ValueError, match=r"unknown config key.*\bbogus\b"):
        _cfg(["+bogus=1"])
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        with pytest.raises(ValueError, match=r"limt \(did you mean limit\?\)"):
            to_eval_config(compose(config_name="eval", overrides=["+limt=3"]))
    # free-form nodes (a verifier's own keyword arguments) stay open
    assert _cfg(["+reward.verifier.extra_kwarg=1"]).reward.verifier["extra_kwarg"] == 1


class Strict:
    """A user's verifier with no keyword arguments at all (the math group's would break it)."""

    def verify_batch(self, pairs):
        from verifiers.base import VerifyResult

        return [VerifyResult(answer in text, float(answer in text), None, "substring") for text, answer in pairs]

    def close(self):
        pass


def test_custom_verifier_by_one_override_builds_and_says_what_it_left_out(caplog):
    spec = dict(_cfg([f"reward.verifier._target_={__name__}.Strict"]).reward.verifier)
    assert {"timeout_s", "workers"} <= set(spec)  # the math group's keys are still in the node
    with caplog.at_level(logging.WARNING, logger="reasoner"):
        verifier = build_verifier(spec)
    assert isinstance(verifier, Strict)
    assert verifier.verify_batch([("so 12", "12")])[0].correct
    assert "takes no fallbacks, free_form, timeout_s, workers: left out" in caplog.text


def test_a_verifier_that_cannot_be_built_fails_before_the_model_loads(tmp_path):
    cfg = _cfg(["reward.verifier._target_=no_such_package.Verifier", "model.path=/nonexistent/model"])
    with pytest.raises(ImportError, match="no_such_package"):
        run(cfg, tmp_path / "run")


def test_printed_command_runs_as_shown():
    from reasoner.jobs.cli import program

    cmd = program()
    if cmd == ["reasoner-train"]:
        assert os.path.samefile(__import__("shutil").which("reasoner-train"), Path(sys.executable).parent / cmd[0])
    else:  # not on PATH: a full path to this environment's script (or python -m)
        assert Path(cmd[0]).is_absolute() and Path(cmd[0]).is_file()


def test_harmless_vllm_warnings_are_dropped_and_others_kept(monkeypatch):
    from reasoner.rollout.vllm_engine import HARMLESS, _Drop, _quiet_vllm

    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "INFO")
    monkeypatch.delenv("VLLM_LOGGING_LEVEL")  # undone after the test, whatever _quiet_vllm sets
    _quiet_vllm()
    _quiet_vllm()  # idempotent: one filter per (logger, message)
    assert os.environ["VLLM_LOGGING_LEVEL"] == "WARNING"
    for name, prefix, why in HARMLESS:
        logger = logging.getLogger(name)
        assert sum(isinstance(f, _Drop) and f.prefix == prefix for f in logger.filters) == 1 and why
        drop = logger.makeRecord(name, logging.WARNING, __file__, 1, prefix + " (and the rest)", (), None)
        keep = logger.makeRecord(name, logging.WARNING, __file__, 1, "something else went wrong", (), None)
        assert not logger.filter(drop) and logger.filter(keep)


def test_eval_subcommands_on_a_missing_run_fail_without_a_traceback(tmp_path):
    out = _cli(["-m", "eval.cli", "compare", str(tmp_path / "nope_a"), str(tmp_path / "nope_b")], timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"reasoner-eval compare: {tmp_path / 'nope_a'}: no such directory" in out.stderr


def test_eval_help_lists_its_own_fields_not_the_training_groups():
    out = _cli(["-m", "eval.cli", "--help"], timeout=300)
    assert out.returncode == 0 and "benchmarks:" in out.stdout and "free_form" in out.stdout
    assert "algorithm" not in out.stdout and "Configuration groups" not in out.stdout


def test_refused_or_repeated_jobs_leave_the_run_record_as_it_was(tiny_model_dir, tmp_path):
    rows = _rows_file(tmp_path / "train.jsonl", 3)
    run_dir = tmp_path / "run"
    base = [
        "-m",
        "reasoner.jobs.cli",
        f"model.path={tiny_model_dir}",
        f"data.train={rows}",
        *TINY_RUN,
        "reward.verifier._target_=scripted_verifiers.VowelShare",
        f"hydra.run.dir={run_dir}",
    ]
    first = _cli([*base, "trainer.lr=5e-5"])
    assert first.returncode == 0, first.stderr[-3000:]
    record = yaml.safe_load((run_dir / ".hydra/config.yaml").read_text())
    assert record["trainer"]["lr"] == 5e-5 and "trainer.lr=5e-5" in (run_dir / ".hydra/overrides.yaml").read_text()
    summary = (run_dir / "summary.json").read_bytes()

    refused = _cli([*base, "trainer.lr=2e-5"])  # a change a resume cannot honour
    assert refused.returncode != 0 and "trainer.lr: 5e-05 -> 2e-05" in refused.stderr
    assert yaml.safe_load((run_dir / ".hydra/config.yaml").read_text())["trainer"]["lr"] == 5e-5
    assert "README" in refused.stderr and "trainer.resume=never" not in refused.stderr

    again = _cli([*base, "trainer.lr=5e-5"])  # the finished run's own command: nothing to redo
    assert again.returncode == 0 and "holds a finished run of 1 steps" in again.stderr
    assert (run_dir / "summary.json").read_bytes() == summary
    log = (run_dir / "train.log").read_text()
    assert "step   1 | reward" in log and "held-out accuracy (n=2" in log  # step lines and summary


def test_refused_eval_leaves_the_record_as_it_was(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "eval"
    base = [
        "-m",
        "eval.cli",
        f"model.path={tiny_model_dir}",
        "benchmarks=[gsm8k]",
        "limit=1",
        "max_tokens=4",
        "backend=hf",
        f"hydra.run.dir={run_dir}",
    ]
    first = _cli([*base, "n=1"])
    assert first.returncode == 0, first.stderr[-3000:]
    assert yaml.safe_load((run_dir / ".hydra/config.yaml").read_text())["n"] == 1
    refused = _cli([*base, "n=2"])
    assert refused.returncode != 0 and "holds a run with other settings" in refused.stderr
    assert yaml.safe_load((run_dir / ".hydra/config.yaml").read_text())["n"] == 1
    assert (run_dir / "eval.log").is_file()  # the log file is named after the command


def test_a_hub_id_that_cannot_be_fetched_fails_at_once(monkeypatch):
    from huggingface_hub import constants

    from reasoner.models import resolve_model_path

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # decided from the setting: no request, no retries
    with pytest.raises(
        FileNotFoundError, match=r"not in the local cache while the hub cannot be reached \(HF_HUB_OFFLINE"
    ):
        resolve_model_path("no-such-org/no-such-model")
    with pytest.raises(FileNotFoundError, match="not a hub id"):
        resolve_model_path("outputs/some/run/checkpoint")


def test_wandb_logger_writes_offline_without_a_key_and_keeps_its_run_id(tmp_path, monkeypatch):
    from reasoner.metrics_log import make_loggers

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    ids = []
    for start, steps in ((0, (1, 2)), (2, (3,))):  # a run, then its resume
        [sink] = make_loggers(["wandb"], tmp_path, start, None, {"trainer.lr": 2e-5})
        ids.append(sink.run.id)
        for step in steps:
            sink.log(step, {"reward/mean": step / 4, "data/problem_ids": ["a", "b"]})
        sink.close()
    run_id = (tmp_path / "wandb_run_id").read_text()
    assert ids == [run_id, run_id]  # the resume continues the same W&B run
    # one offline directory per segment (one, if both started within the same second)
    runs = sorted((tmp_path / "wandb").glob(f"offline-run-*-{run_id}"))
    assert runs
    records = [(r / f"run-{run_id}.wandb").read_bytes() for r in runs]
    assert all(b"reward/mean" in rec and b"trainer.lr" in rec for rec in records)
    assert b"problem_ids" not in records[0]  # only numbers go to W&B


def test_a_mistyped_verifier_keyword_is_still_an_error():
    with pytest.raises(TypeError, match=r"takes no keyword argument timout_s \(it takes: "):
        build_verifier({"_target_": "verifiers.math.MathVerifier", "timout_s": 5})
    with pytest.raises(TypeError, match="takes no keyword argument case_sensitive"):
        build_verifier({"_target_": f"{__name__}.Strict", "timeout_s": 1.0, "case_sensitive": True})


def test_one_file_for_rl_heldout_and_cold_start_leaves_rows_for_each(tmp_path):
    from reasoner.jobs.common import sft_rows
    from reasoner.jobs.heldout import load_heldout
    from reasoner.jobs.rl import load_rl_prompts, sft_exclusions

    rows = _rows_file(tmp_path / "mine.jsonl", 5)
    cfg = _cfg([f"data.train={rows}", f"data.heldout={rows}", f"sft.source={rows}", "data.heldout_n=2"])
    heldout = load_heldout(cfg)
    train = load_rl_prompts(cfg, heldout, None)
    sft = sft_rows(cfg, sft_exclusions(cfg, heldout, train))
    assert len(heldout) == 2 and len(train) == 3 and {p.id for p in sft} == {p.id for p in train}
    other = _cfg([f"data.train={rows}", "data.heldout_n=2"])  # arithmetic cold start: RL prompts stay out of it
    assert set(sft_exclusions(other, heldout, train)) == {p.problem for p in heldout + train}


def test_a_cold_start_source_without_solutions_fails_before_any_model_loads(tmp_path):
    bare = tmp_path / "bare.jsonl"
    bare.write_text(
        "".join(json.dumps({"problem": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n" for i in range(4))
    )
    cfg = _cfg([f"sft.source={bare}", "model.path=/nonexistent/model", "data.heldout_n=2", "trainer.steps=1"])
    with pytest.raises(ValueError, match=r"sft.source=.*bare.jsonl: none of its 4 rows has a 'solution' field"):
        run(cfg, tmp_path / "run")
