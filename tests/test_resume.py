"""Resume and crash safety on a tiny random Llama: a stopped-and-resumed run equals an
uninterrupted one bit for bit (transformers sampler); a checkpoint write killed with SIGKILL
leaves the previous checkpoint loadable; SIGTERM writes a checkpoint and exits non-zero; a
second signal exits at once; non-finite updates and engine failures stop the run cleanly."""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from scripted_verifiers import VowelShare
from tiny_runs import SMALL, comparable, metrics, run_cfg, same

from reasoner.checkpoint import Checkpoint, CheckpointError, CheckpointStore, find_resume_checkpoint
from reasoner.config import register_configs
from reasoner.jobs.rl import run
from reasoner.learner import NonFiniteUpdateError
from reasoner.rollout import RolloutEngineError
from verifiers.base import VerifyResult

register_configs()
ROOT = Path(__file__).resolve().parents[1]


class NaNScore(VowelShare):
    """A verifier with a bug: every score is NaN (so every loss is)."""

    def verify_batch(self, pairs):
        return [VerifyResult(False, float("nan"), None, "nan") for _ in pairs]


# every piece of resumable state at once: PPO's critic and mini-batch shuffling, a KL reference
# with an adaptive coefficient, dynamic sampling, LR warm-up, an epoch boundary in the data
# (3 problems, 2 to 4 drawn per step), keep-last-1 plus the best checkpoint
EVERYTHING = [
    "algorithm=ppo",
    "algorithm.kl.beta=0.05",
    "algorithm.kl.target=0.01",
    "algorithm.kl.placement=reward",
    "algorithm.sampling.dynamic=true",
    "algorithm.sampling.max_rounds=2",
    "trainer.lr=1e-3",
    "trainer.lr_warmup_steps=3",
    "trainer.checkpoint_every=1",
    "trainer.keep_last=1",
    "trainer.best_metric=reward/mean",
    # every step checks its sync, so that the resumed run's first step (always checked) has its twin
    "rollout.sync_check_every=1",
]


def test_stopped_and_resumed_run_equals_straight_run(tiny_model_dir, train_file, tmp_path, caplog):
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    run(run_cfg(tiny_model_dir, train_file, [*EVERYTHING, "trainer.steps=2"], VowelShare), straight)
    run(run_cfg(tiny_model_dir, train_file, [*EVERYTHING, "trainer.steps=1"], VowelShare), halves)

    # a change the checkpoint cannot honour is refused, naming each field
    with pytest.raises(CheckpointError, match=r"algorithm.clip.high: 0.2 -> 0.3.*trainer.lr: 0.001 -> 0.002"):
        run(
            run_cfg(
                tiny_model_dir,
                train_file,
                [*EVERYTHING, "trainer.steps=2", "algorithm.clip.high=0.3", "trainer.lr=2e-3"],
                VowelShare,
            ),
            halves,
        )
    with pytest.raises(CheckpointError, match="trainer.resume=never, but .* holds checkpoints"):
        run(run_cfg(tiny_model_dir, train_file, [*EVERYTHING, "trainer.resume=never"], VowelShare), halves)

    with caplog.at_level(logging.INFO, logger="reasoner"):
        summary = run(run_cfg(tiny_model_dir, train_file, [*EVERYTHING, "trainer.steps=2"], VowelShare), halves)
    assert "resume: trainer.steps changed from 1 to 2" in caplog.text  # a safe change, logged
    assert summary["resumed_from_step"] == 1

    a, b = metrics(straight), metrics(halves)
    assert [m["step"] for m in b] == [1, 2]  # continued, nothing repeated
    assert all(m["policy/optimizer_steps"] == 2 for m in a)  # both steps trained (2 mini-batches)
    assert len({m["policy/kl_coef"] for m in a}) == 2  # β adapted after each step
    assert sum(len(m["data/problem_ids"]) for m in a) > 3  # the data stream went into its second epoch
    for x, y in zip(a, b):
        assert same(comparable(x), comparable(y)), f"step {x['step']} differs"
    for name in ("policy", "critic", "reference"):
        pa = load_file(straight / "checkpoints/step_000002" / f"{name}.safetensors")
        pb = load_file(halves / "checkpoints/step_000002" / f"{name}.safetensors")
        assert pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa), name
    sa = torch.load(straight / "checkpoints/step_000002/trainer.pt", weights_only=True)
    sb = torch.load(halves / "checkpoints/step_000002/trainer.pt", weights_only=True)
    for key in ("optimizer", "critic_optimizer"):
        for p, state in sa[key]["state"].items():
            assert all(torch.equal(state[k], sb[key]["state"][p][k]) for k in state)
    assert sa["scheduler"] == sb["scheduler"] and sa["kl_coef"] == sb["kl_coef"]
    # keep-last-1 plus the best by reward/mean: the other was pruned
    rewards = {m["step"]: m["reward/mean"] for m in b}
    best = max(rewards, key=rewards.get)
    store = CheckpointStore(halves / "checkpoints", best_metric="reward/mean")
    assert [c.step for c in store.checkpoints()] == sorted({best, 2}) and store.best().step == best
    manifest = json.loads((halves / f"checkpoints/step_{best:06d}/manifest.json").read_text())
    assert manifest["best_value"] == rewards[best] and manifest["files"]["policy.safetensors"] > 0


def test_missing_resume_path_says_what_was_looked_for(tmp_path):
    with pytest.raises(
        CheckpointError,
        match=rf"trainer.resume='{tmp_path}/old': no checkpoint there \(looked for {tmp_path}/old/manifest.json, "
        rf"{tmp_path}/old/checkpoints/step_\*/manifest.json",
    ):
        find_resume_checkpoint(str(tmp_path / "old"), tmp_path / "run")
    damaged = tmp_path / "run/checkpoints/step_000003"
    damaged.mkdir(parents=True)
    (damaged / "manifest.json").write_text(json.dumps({"step": 3, "files": {"policy.safetensors": 10}}))
    with pytest.raises(
        CheckpointError, match=r"step_000003 is damaged: policy.safetensors should be 10 bytes, is missing"
    ):
        find_resume_checkpoint(str(damaged), tmp_path / "run")
    assert find_resume_checkpoint("auto", tmp_path / "run") is None  # a damaged checkpoint is not resumed from


DRIVER = """
import sys, time
from pathlib import Path
from hydra import compose, initialize_config_dir
import reasoner.learner as learner_module
from reasoner.config import CONF_DIR
from reasoner.jobs.cli import to_run_config
from reasoner.jobs.rl import run

run_dir, marker, slow_step = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
    cfg = to_run_config(compose(config_name="config", overrides=sys.argv[4:]))
real_save = learner_module.save_model

def slow_save_model(module, path):  # the policy file is written, then the writer hangs
    real_save(module, path)
    if f".tmp-step_{slow_step:06d}" in path:
        marker.touch()
        time.sleep(600)

learner_module.save_model = slow_save_model
run(cfg, run_dir)
"""


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def _wait_for(predicate, proc, log, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"process ended (rc {proc.returncode}) before {what}: {log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_sigkill_during_checkpoint_write_keeps_previous_checkpoint(tiny_model_dir, train_file, tmp_path):
    run_dir, marker = tmp_path / "run", tmp_path / "writing"
    overrides = [f"model.path={tiny_model_dir}", f"data.train={train_file}", *SMALL, "trainer.checkpoint_every=1"]
    log = tmp_path / "stderr.txt"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(run_dir), str(marker), "2", *overrides, "trainer.steps=3"],
            env=_env(),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    _wait_for(marker.exists, proc, log, 900, "the step-2 checkpoint write")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpts = run_dir / "checkpoints"
    assert (ckpts / ".tmp-step_000002/policy.safetensors").exists() and not (ckpts / "step_000002").exists()
    assert [m["step"] for m in metrics(run_dir)] == [1, 2]  # step 2 ran and was logged, its checkpoint did not finish

    assert Checkpoint.open(ckpts / "step_000001").step == 1
    summary = run(run_cfg(tiny_model_dir, train_file, ["trainer.checkpoint_every=1", "trainer.steps=3"]), run_dir)
    assert summary["resumed_from_step"] == 1
    assert [m["step"] for m in metrics(run_dir)] == [1, 2, 3]
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_000002", "step_000003"]  # partial write cleaned up


def test_sigterm_writes_a_checkpoint_and_exits_nonzero(tiny_model_dir, train_file, tmp_path):
    run_dir = tmp_path / "run"
    overrides = [
        f"model.path={tiny_model_dir}",
        f"data.train={train_file}",
        *SMALL,
        "trainer.steps=500",
        "trainer.checkpoint_every=0",
    ]
    log = tmp_path / "stderr.txt"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reasoner.jobs.cli", f"hydra.run.dir={run_dir}", *overrides],
            env=_env(),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    metrics_file = run_dir / "metrics.jsonl"
    _wait_for(
        lambda: metrics_file.exists() and metrics_file.read_text().count("\n") >= 1, proc, log, 900, "the first RL step"
    )
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=600)
    err = log.read_text()
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    steps = [m["step"] for m in metrics(run_dir)]
    done = steps[-1]
    assert steps == list(range(1, done + 1)) and done < 500
    assert f"stopped by SIGTERM after RL step {done}; checkpoint {run_dir / 'checkpoints' / f'step_{done:06d}'}" in err
    printed = next(line for line in err.splitlines() if line.startswith("resume with: "))
    argv = shlex.split(printed.removeprefix("resume with: "))
    assert shutil.which(argv[0]) is not None  # runs as printed from here, venv activated or not
    assert f"model.path={tiny_model_dir}" in argv and argv[-1] == f"hydra.run.dir={run_dir}"
    ckpt = Checkpoint.open(run_dir / "checkpoints" / f"step_{done:06d}")
    stream = ckpt.state["prompt_stream"]
    assert 3 * stream["epoch"] + stream["pos"] == 2 * done and ckpt.config["trainer.steps"] == 500


FULL_DISK_DRIVER = """
import resource, signal, sys
from pathlib import Path
from hydra import compose, initialize_config_dir
from reasoner.config import CONF_DIR
from reasoner.jobs.cli import to_run_config
from reasoner.jobs.rl import run

with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
    cfg = to_run_config(compose(config_name="config", overrides=sys.argv[2:]))
# a disk that holds no file over 1 MB: writes past it fail with EFBIG, as on a full disk with ENOSPC
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))
run(cfg, Path(sys.argv[1]))
"""


def test_a_checkpoint_that_cannot_be_written_is_removed_and_named(tiny_model_dir, train_file, tmp_path):
    run_dir = tmp_path / "run"
    overrides = [
        f"model.path={tiny_model_dir}",
        f"data.train={train_file}",
        *SMALL,
        "trainer.save_checkpoint=true",
        "trainer.checkpoint_every=1",
        "trainer.steps=2",
    ]
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK_DRIVER, str(run_dir), *overrides],
        env=_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    ckpts = run_dir / "checkpoints"
    assert f"CheckpointWriteError: could not write the checkpoint of step 1 in {ckpts} (" in proc.stderr
    assert "The partial write was removed and no earlier checkpoint exists" in proc.stderr
    assert list(ckpts.iterdir()) == []  # no .tmp-step_000001 left to fill the disk
    assert [m["step"] for m in metrics(run_dir)] == [1]  # the step's metrics were logged before the save


SIGNAL_DRIVER = """
import sys, time
from reasoner.interrupt import StopRequest
with StopRequest() as stop:
    print("ready", flush=True)
    while stop.signum is None:
        time.sleep(0.01)
    print("stop requested", stop.signum, flush=True)
    time.sleep(60)  # a step that takes long to finish
print("finished", flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_second_signal_exits_at_once(sig):
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGNAL_DRIVER],
        env=_env(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(sig)
    assert proc.stdout.readline() == f"stop requested {int(sig)}\n"  # the first signal only asks
    start = time.monotonic()
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -sig and "finished" not in out and time.monotonic() - start < 10


def test_nonfinite_updates_are_skipped_then_the_run_stops(tiny_model_dir, train_file, tmp_path):
    cfg = run_cfg(
        tiny_model_dir,
        train_file,
        ["trainer.steps=5", "trainer.max_nonfinite_steps=2", "trainer.checkpoint_every=0"],
        NaNScore,
    )
    with pytest.raises(NonFiniteUpdateError, match=r"steps 1-2 all had a non-finite loss or gradient.*step_000002"):
        run(cfg, tmp_path)
    lines = metrics(tmp_path)
    assert [(m["step"], m["policy/skipped_updates"], m["policy/optimizer_steps"]) for m in lines] == [
        (1, 1, 0),
        (2, 1, 0),
    ]
    saved = load_file(tmp_path / "checkpoints/step_000002/policy.safetensors")
    from transformers import AutoModelForCausalLM

    initial = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).state_dict()
    assert all(torch.equal(saved[k], initial[k]) for k in saved)  # the skipped updates changed nothing
    assert torch.load(tmp_path / "checkpoints/step_000002/trainer.pt", weights_only=True)["optimizer"]["state"] == {}


def test_engine_failure_stops_with_the_last_checkpoint_intact(tiny_model_dir, train_file, tmp_path, monkeypatch):
    from reasoner.rollout.hf_engine import HFEngine

    real, calls = HFEngine.generate, []

    def failing_generate(self, *args, **kwargs):  # fault injection: the engine dies on its 4th call
        calls.append(1)
        if len(calls) == 4:  # base eval, steps 1 and 2, then step 3
            raise RuntimeError("engine core died")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(HFEngine, "generate", failing_generate)
    cfg = run_cfg(tiny_model_dir, train_file, ["trainer.steps=5", "trainer.checkpoint_every=2"])
    with pytest.raises(
        RolloutEngineError,
        match=r"(?s)rollout engine \(hf\) failed in generate: RuntimeError: engine core died.*"
        r"RL step 3 did not finish; the last checkpoint, .*step_000002 \(step 2\), is intact",
    ):
        run(cfg, tmp_path)
    assert [c.step for c in CheckpointStore(tmp_path / "checkpoints").checkpoints()] == [2]
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


@pytest.mark.slow
def test_resume_with_vllm_keeps_data_order_step_count_and_optimizer_state(tiny_model_dir, train_file, tmp_path):
    """vLLM's sampling stream cannot be restored (README: "Resuming and crash safety"), so a
    resumed run samples other completions; everything the checkpoint holds must still match."""
    vllm = [
        f"model.path={tiny_model_dir}",
        f"data.train={train_file}",
        *SMALL,
        "rollout=vllm",
        "rollout.max_model_len=256",
        "trainer.checkpoint_every=1",
        "trainer.lr_warmup_steps=2",
    ]

    def cli(run_dir, steps):
        cmd = [sys.executable, "-m", "reasoner.jobs.cli", f"hydra.run.dir={run_dir}", *vllm, f"trainer.steps={steps}"]
        subprocess.run(cmd, env=_env(), cwd=ROOT, check=True, stdout=subprocess.DEVNULL, timeout=900)

    straight, halves = tmp_path / "straight", tmp_path / "halves"
    cli(straight, 4)
    cli(halves, 2)
    cli(halves, 4)
    a, b = metrics(straight), metrics(halves)
    assert [m["step"] for m in a] == [m["step"] for m in b] == [1, 2, 3, 4]
    assert [m["data/problem_ids"] for m in a] == [m["data/problem_ids"] for m in b]  # the same data order
    assert json.loads((halves / "summary.json").read_text())["resumed_from_step"] == 2
    sa = torch.load(straight / "checkpoints/step_000004/trainer.pt", weights_only=True)
    sb = torch.load(halves / "checkpoints/step_000004/trainer.pt", weights_only=True)
    assert sa["optimizer"]["param_groups"] == sb["optimizer"]["param_groups"] and sa["scheduler"] == sb["scheduler"]
    assert sa["optimizer"]["state"].keys() == sb["optimizer"]["state"].keys()
    for p, state in sa["optimizer"]["state"].items():
        assert float(state["step"]) == float(sb["optimizer"]["state"][p]["step"]) == 4  # every update applied once
    ca, cb = Checkpoint.open(straight / "checkpoints/step_000004"), Checkpoint.open(halves / "checkpoints/step_000004")
    assert ca.state["prompt_stream"] == cb.state["prompt_stream"]
