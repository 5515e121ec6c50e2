"""Rejection sampling's selection rules, and a five-stage recipe (SFT -> RL -> rejection sampling
-> SFT -> RL) end to end on a tiny model: models chained, data handed on, resumable per stage."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from eval.samples import Sample
from reasoner.config import CONF_DIR, RejectionConfig, StageConfig, StageKind, Template, register_configs
from reasoner.jobs.cli import to_run_config
from reasoner.jobs.recipe import RecipeError, run_recipe, stage_config
from reasoner.jobs.rejection import select

register_configs()
TESTS = Path(__file__).resolve().parent

GOOD = "<think>\nadd them\n</think>\nThe final answer is \\boxed{4}."


def _s(pid, index, completion, correct=True, tokens=10, truncated=False):
    return Sample("b", pid, index, "", completion, tokens, truncated, correct, float(correct), "4", "r")


def test_select_keeps_correct_well_formed_untruncated_shortest_first():
    samples = [
        _s("p", 0, GOOD + " long", tokens=30),
        _s("p", 1, GOOD, tokens=12),
        _s("p", 2, GOOD, tokens=12),  # the same text again: kept once
        _s("p", 3, "no think block \\boxed{4}", tokens=5),  # correct but badly formed
        _s("p", 4, GOOD + " x", tokens=8, truncated=True),
        _s("q", 0, GOOD, correct=False),
        _s("r", 0, GOOD + " r", tokens=20),
    ]
    kept = select(samples, RejectionConfig(keep_per_problem=2, shortest=True), Template.r1)
    assert [(s.problem_id, s.index) for s in kept] == [("p", 1), ("p", 0), ("r", 0)]
    first = select(samples, RejectionConfig(keep_per_problem=1, shortest=False, require_format=False), Template.r1)
    assert [(s.problem_id, s.index) for s in first] == [("p", 0), ("r", 0)]
    loose = select(samples, RejectionConfig(keep_per_problem=1, shortest=True, require_format=False), Template.r1)
    assert [(s.problem_id, s.index) for s in loose] == [("p", 3), ("r", 0)]
    truncated_too = select(
        samples, RejectionConfig(keep_per_problem=1, shortest=True, drop_truncated=False), Template.r1
    )
    assert [(s.problem_id, s.index) for s in truncated_too] == [("p", 4), ("r", 0)]


def _cfg(extra):
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return to_run_config(compose(config_name="config", overrides=extra))


def test_stage_config_chains_model_and_data_and_names_bad_overrides():
    base = _cfg(["recipe=r1_cpu"])
    rl = stage_config(base, base.recipe.stages[1], "/m/prev", None, first=False)
    assert rl.model.path == "/m/prev" and not rl.sft.enabled and not rl.trainer.eval_base and rl.recipe.stages == []
    assert rl.trainer.steps == 20 and rl.data.template is Template.r1
    sft = stage_config(base, base.recipe.stages[3], "/m/rl", "/d/data.jsonl", first=False)
    assert sft.sft.source == "/d/data.jsonl" and sft.sft.lr == 5e-5
    with pytest.raises(ValueError, match=r"recipe stage 'x': bad overrides \['trainer.stepz=3'\]"):
        stage_config(base, StageConfig("x", StageKind.rl, ["trainer.stepz=3"]), "/m", None, first=True)
    with pytest.raises(
        ValueError, match=r"recipe stage 'x': bad overrides \['trainer.steps=-1'\].*trainer.steps=-1 is not allowed"
    ):
        stage_config(base, StageConfig("x", StageKind.rl, ["trainer.steps=-1"]), "/m", None, first=True)
    with pytest.raises(ValueError, match=r"recipe.stages\[1\].name='a' is not allowed: must be a unique name"):
        _cfg(["recipe=r1_zero_cpu", "recipe.stages=[{name: a, kind: rl}, {name: a, kind: sft}]"])


@pytest.mark.parametrize("recipe", ["r1", "r1_cpu", "r1_zero", "r1_zero_cpu", "k1_5", "k1_5_cpu"])
def test_every_shipped_recipe_builds_each_stage_config(recipe):
    base = _cfg([f"recipe={recipe}", "model.path=/m/given"])
    configs = [
        stage_config(base, stage, "/m/prev", "/d/data.jsonl", first=i == 0)
        for i, stage in enumerate(base.recipe.stages)
    ]
    assert configs and all(c.recipe.stages == [] for c in configs)
    if recipe.startswith("k1_5"):
        rl, length_rl = configs[-2:]
        assert (rl.algorithm.shaping.length_weight, rl.algorithm.scale_by_std) == (0.0, True)
        # the length round: k1.5's reward and its mean-only baseline (k1.5 Eq. 3)
        assert (length_rl.algorithm.shaping.length_weight, length_rl.algorithm.scale_by_std) == (0.5, False)
        assert length_rl.model.path == "/m/prev" and length_rl.data.train_seed == 1


STAGES = (
    "recipe.stages=["
    "{name: cold, kind: sft, overrides: ['sft.examples=8']},"
    "{name: rl1, kind: rl, overrides: ['trainer.steps=2']},"
    "{name: rs, kind: rejection_sampling, overrides: ['rejection.problems=4', 'rejection.samples=4', "
    "'rejection.keep_per_problem=2', 'rejection.require_format=false', 'rejection.drop_truncated=false']},"
    "{name: sft2, kind: sft},"
    "{name: rl2, kind: rl, overrides: ['trainer.steps=1', 'data.train_seed=1']}]"
)


def test_five_stage_recipe_chains_models_and_resumes(tiny_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    extra = [
        "recipe=r1_cpu",
        STAGES,
        f"model.path={tiny_model_dir}",
        "rollout=hf",
        "data.heldout_n=4",
        "data.arithmetic_levels=[1]",
        "trainer.prompts_per_step=2",
        "algorithm.sampling.group_size=4",
        "trainer.micro_batch_size=4",
        "rollout.max_tokens=8",
        "trainer.eval_max_tokens=8",
        "rejection.max_tokens=8",
        "sft.batch_size=4",
        "trainer.checkpoint_every=0",
    ]
    cfg = _cfg(extra)
    cfg.reward.verifier = {"_target_": "scripted_verifiers.VowelShare"}
    results = run_recipe(cfg, tmp_path)
    assert [(r.name, r.kind) for r in results] == [
        ("cold", "sft"),
        ("rl1", "rl"),
        ("rs", "rejection_sampling"),
        ("sft2", "sft"),
        ("rl2", "rl"),
    ]
    stages = sorted((tmp_path / "stages").iterdir())
    assert [p.name for p in stages] == ["00_cold", "01_rl1", "02_rs", "03_sft2", "04_rl2"]
    assert all((p / "done.json").exists() for p in stages)

    def stage_cfg(p):
        return json.loads((p / "done.json").read_text())["config"]

    # each stage starts from the model the one before produced; the rejection data feeds sft2
    assert stage_cfg(stages[0])["model.path"] == str(tiny_model_dir)
    assert stage_cfg(stages[1])["model.path"] == str(stages[0] / "checkpoint")
    assert stage_cfg(stages[2])["model.path"] == stage_cfg(stages[3])["model.path"] == str(stages[1] / "checkpoint")
    assert stage_cfg(stages[3])["sft.source"] == str(stages[2] / "data.jsonl")
    assert stage_cfg(stages[4])["model.path"] == str(stages[3] / "checkpoint")
    rows = [json.loads(line) for line in (stages[2] / "data.jsonl").read_text().splitlines()]
    assert rows and all(
        r["target"] == "verbatim" and r["provenance"]["model"] == str(stages[1] / "checkpoint") for r in rows
    )
    rs = json.loads((stages[2] / "summary.json").read_text())
    assert rs["kept"] == len(rows) and rs["samples"] == 16 and len(rows) <= 2 * rs["problems_with_a_kept_sample"]
    assert json.loads((stages[3] / "summary.json").read_text())["sft"]["examples"] == len(rows)
    assert json.loads((stages[4] / "summary.json").read_text())["steps"] == 1

    table = (tmp_path / "results.md").read_text()
    assert table.count("\n| ") == 7  # header, start, 5 stages
    assert "| start |" in table and "| rs | rejection_sampling | (model unchanged)" in table
    summary = json.loads((tmp_path / "recipe_summary.json").read_text())
    assert summary["base"]["n"] == 4 and summary["stages"][4]["heldout"]["n"] == 4

    # again: every stage is done, nothing runs; a changed stage is refused, naming the field
    before = {p: (p / "done.json").stat().st_mtime for p in stages}
    run_recipe(cfg, tmp_path)
    assert {p: (p / "done.json").stat().st_mtime for p in stages} == before
    changed = _cfg([*extra, STAGES.replace("trainer.steps=2", "trainer.steps=3")])
    changed.reward.verifier = cfg.reward.verifier
    with pytest.raises(RecipeError, match=r"stage 01_rl1 finished with another config \(trainer.steps: 2 -> 3\)"):
        run_recipe(changed, tmp_path)


def test_sigterm_stops_the_running_stage_and_the_same_command_resumes(tiny_model_dir, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    two = (
        "recipe.stages=[{name: a, kind: rl, overrides: ['trainer.steps=400']}, "
        "{name: b, kind: sft, overrides: ['sft.examples=4']}]"
    )
    cmd = [
        sys.executable,
        "-m",
        "reasoner.jobs.cli",
        "recipe=r1_zero_cpu",
        two,
        f"hydra.run.dir={tmp_path}",
        f"model.path={tiny_model_dir}",
        "rollout=hf",
        "data.heldout_n=2",
        "trainer.prompts_per_step=2",
        "algorithm.sampling.group_size=2",
        "rollout.max_tokens=4",
        "trainer.eval_max_tokens=4",
        "trainer.checkpoint_every=0",
        "sft.batch_size=4",
        "reward.verifier={_target_: scripted_verifiers.VowelShare}",
    ]
    proc = subprocess.Popen(
        cmd, env=env, cwd=TESTS.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    metrics = tmp_path / "stages/00_a/metrics.jsonl"
    deadline = time.monotonic() + 600
    while not (metrics.exists() and metrics.read_text().count("\n") >= 1):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "stage 00_a exited with status 143" in err and f"hydra.run.dir={tmp_path}" in err
    assert not (tmp_path / "stages/00_a/done.json").exists() and list(
        (tmp_path / "stages/00_a/checkpoints").glob("step_*")
    )
    done = len((tmp_path / "stages/00_a/metrics.jsonl").read_text().splitlines())
    # the same command with fewer steps (a safe change): stage a continues from its checkpoint
    again = [c.replace("trainer.steps=400", f"trainer.steps={done + 1}") for c in cmd]
    subprocess.run(
        again, env=env, cwd=TESTS.parent, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900
    )
    summary = json.loads((tmp_path / "stages/00_a/summary.json").read_text())
    assert summary["resumed_from_step"] == done and summary["steps"] == done + 1
    assert (tmp_path / "stages/01_b/done.json").exists() and (tmp_path / "results.md").exists()
