"""The evaluator end to end on a tiny model (transformers backend): every output is written, a
known-correct sample file scores 100% and a shuffled one what hand counting says, an
interrupted run resumes, two runs compare, and MATH-500 verdicts match the verifier's labels."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from eval.benchmarks import get_benchmark
from eval.cli import main, to_eval_config
from eval.pipeline import load_summaries, rescore_run, run_eval
from eval.report import compare
from eval.runner import Verifiers, rescore
from eval.samples import Sample, SampleFile
from reasoner.config import CONF_DIR, Backend
from reasoner.prompts import Template, target_text

LABELED = Path(__file__).resolve().parents[1] / "verifiers" / "data" / "math_labeled.jsonl"
N, LIMIT = 3, 4


def _config(model_dir, *extra):
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = compose(
            config_name="eval",
            overrides=[
                f"model.path={model_dir}",
                "backend=hf",
                "benchmarks=[math500,mbpp]",
                f"n={N}",
                f"limit={LIMIT}",
                "max_tokens=4",
                *extra,
            ],
        )
    return to_eval_config(cfg)


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("eval_run")
    run_eval(_config(tiny_model_dir), run_dir, progress=False)
    return run_dir


def test_config_composes_and_bad_values_are_named(tiny_model_dir):
    cfg = _config(tiny_model_dir)
    assert cfg.backend is Backend.hf and cfg.benchmarks == ["math500", "mbpp"] and cfg.n == N
    assert cfg.sampling(get_benchmark("math500").sampling) == replace(
        get_benchmark("math500").sampling, n=N, max_tokens=4
    )
    with pytest.raises(ValueError, match=r"top_p=2.0 is not allowed"):
        _config(tiny_model_dir, "top_p=2")
    with pytest.raises(ConfigCompositionException) as err:
        _config(tiny_model_dir, "n=many")
    assert isinstance(err.value.__cause__, ValidationError) and "full_key: n" in str(err.value.__cause__)


def test_a_run_writes_every_output(tiny_run):
    samples = SampleFile(tiny_run / "samples.jsonl").load()
    assert len(samples) == 2 * LIMIT * N and len({s.key for s in samples}) == len(samples)
    assert {s.index for s in samples} == set(range(N))
    for s in samples:
        assert s.prompt.endswith("<|im_start|>assistant\n") and 1 <= s.tokens <= 4 and s.reason
    mbpp = [s for s in samples if s.benchmark == "mbpp"]
    assert all(
        s.reason == "no code" and s.extracted is None and not s.correct for s in mbpp
    )  # 4 tokens of a random model
    summary = json.loads((tiny_run / "summary.json").read_text())
    math500 = summary["benchmarks"]["math500"]
    assert (
        math500["problems"] == LIMIT
        and set(math500["pass_at"]) == {"1", "2", "3"}
        and set(math500["maj_at"]) == {"1", "2", "3"}
    )
    assert summary["benchmarks"]["mbpp"]["maj_at"] == {}
    assert set(math500["breakdown"]) == {"level", "subject"}
    assert math500["sampling"] == {"n": N, "temperature": 0.6, "top_p": 0.95, "max_tokens": 4}
    table = (tiny_run / "results.md").read_text()
    assert (
        "| math500 | 4 | 3 | 0.6 | 0.95 | 4 |" in table and "| mbpp | 4 | 3 |" in table and "math500 by level" in table
    )
    for png in ("lengths.png", "math500_by_level.png", "math500_by_subject.png"):
        assert (tiny_run / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _rewrite(src: Path, dst: Path, completion_for) -> Path:
    """A copy of run `src` whose sample i of problem j has completion ``completion_for(bench, j, i)``."""
    shutil.copytree(src, dst)
    store = SampleFile(dst / "samples.jsonl")
    problems = {name: get_benchmark(name).problems(LIMIT) for name in ("math500", "mbpp")}
    position = {(name, p.id): j for name, ps in problems.items() for j, p in enumerate(ps)}
    store.replace(
        replace(
            s,
            completion=completion_for(problems[s.benchmark], position[(s.benchmark, s.problem_id)], s.index),
            correct=False,
            reason="unscored",
        )
        for s in store.load()
    )
    rescore_run(dst)
    return dst


def _gold(problems, j):
    p = problems[j]
    if "entry_point" in p.meta:
        return target_text(p, Template.code)  # the MBPP reference solution in a python block
    return f"Working omitted. The final answer is $\\boxed{{{p.answer}}}$."


@pytest.fixture(scope="module")
def scored_runs(tiny_run, tmp_path_factory):
    """The tiny run's samples replaced by known completions, then re-scored: every sample
    right (`correct`), or sample 0 right and samples 1, 2 the next problem's answer (`shuffled`)."""
    root = tmp_path_factory.mktemp("scored")
    correct = _rewrite(tiny_run, root / "correct", lambda ps, j, i: _gold(ps, j))
    shuffled = _rewrite(tiny_run, root / "shuffled", lambda ps, j, i: _gold(ps, j if i == 0 else (j + 1) % len(ps)))
    return correct, shuffled


def test_known_correct_samples_score_100_percent(scored_runs):
    answers = [p.answer for p in get_benchmark("math500").problems(LIMIT)]
    assert len(set(answers)) == LIMIT  # a neighbour's answer is a wrong answer
    runs = load_summaries(scored_runs[0])
    for s in runs.values():
        assert s.avg.value == 1.0 and all(p.value == 1.0 for p in s.pass_at.values())
        assert s.breakdown.get("level") is None or all(p.value == 1.0 for p in s.breakdown["level"].values())
    assert all(p.value == 1.0 for p in runs["math500"].maj_at.values())
    assert all(
        s.reason == "passed" for s in SampleFile(scored_runs[0] / "samples.jsonl").load() if s.benchmark == "mbpp"
    )


def test_shuffled_samples_score_as_hand_counted(scored_runs):
    # each problem: 1 of 3 right -> avg@3 = pass@1 = 1/3; pass@2 = 1 - C(2,2)/C(3,2) = 2/3; pass@3 = 1.
    # votes: maj@1 = the right sample 0; maj@2 = a 1-1 tie, won by sample 0 (seen first): right;
    # maj@3 = the neighbour's answer twice: wrong.
    runs = load_summaries(scored_runs[1])
    for s in runs.values():
        assert s.avg.value == pytest.approx(1 / 3) and s.avg.n == LIMIT
        assert [s.pass_at[k].value for k in (1, 2, 3)] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert [runs["math500"].maj_at[k].value for k in (1, 2, 3)] == [1.0, 1.0, 0.0]
    assert runs["mbpp"].maj_at == {}


def test_compare_two_runs(scored_runs, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["reasoner-eval", "compare", str(scored_runs[0]), str(scored_runs[1])])
    main()
    rows = {
        tuple(c.strip() for c in line.split("|")[1:3]): [c.strip() for c in line.split("|")[3:-1]]
        for line in capsys.readouterr().out.splitlines()[2:]
        if line.startswith("| ")
    }
    # Wilson at n=4, z=1.96 (denominator 1.9604): p=1 -> low (1 + 0.4802 - 0.4802) / ... = 0.5101;
    # p=1/3 -> center (0.3333 + 0.4802)/1.9604 = 0.4150, half 1.96 sqrt(0.0556 + 0.0600)/1.9604 = 0.3399.
    # Same 4 problems: paired; every problem drops by 2/3, so the paired interval is the point -66.7.
    assert rows[("math500", "avg@3")] == [
        "100.0 [51.0, 100.0]",
        "33.3 [7.5, 75.5]",
        "-66.7",
        "[-66.7, -66.7]",
        "paired",
        "yes",
    ]
    assert rows[("math500", "pass@3")][2:] == ["+0.0", "[+0.0, +0.0]", "paired", "no"]
    assert rows[("math500", "maj@3")][2:] == ["-100.0", "[-100.0, -100.0]", "paired", "yes"]
    assert ("mbpp", "maj@3") not in rows
    # other problems on one side: unpaired (Wald) interval of the difference of the two totals;
    # se = sqrt(1 * 0 / 4 + (1/3)(2/3) / 4) = 0.235702, -0.6667 +- 1.96 se = [-112.9, -20.5] (points)
    a = load_summaries(scored_runs[0])["math500"]
    b = load_summaries(scored_runs[1])["math500"]
    b = replace(b, per_problem={f"other/{k}": v for k, v in b.per_problem.items()})
    row = next(line for line in compare({"math500": a}, {"math500": b}).splitlines() if "avg@3" in line)
    assert "| -66.7 | [-112.9, -20.5] | unpaired | yes |" in row


def test_an_interrupted_run_resumes_where_it_stopped(tiny_run, tiny_model_dir, tmp_path):
    run_dir = tmp_path / "resumed"
    shutil.copytree(tiny_run, run_dir)
    path = run_dir / "samples.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:10]) + lines[10][:40])  # killed while writing record 11
    run_eval(_config(tiny_model_dir), run_dir, progress=False)
    after = path.read_text().splitlines(keepends=True)
    assert after[:10] == lines[:10]  # kept as written, not drawn again
    samples = SampleFile(path).load()
    assert len(after) == len(samples) == len(lines) and {s.key for s in samples} == {
        Sample(**json.loads(x)).key for x in lines
    }
    with pytest.raises(ValueError, match=r"other settings \(math500 sampling"):
        run_eval(_config(tiny_model_dir, "temperature=1.0"), run_dir, progress=False)


def test_math500_verdicts_match_the_verifier_labels():
    """Acceptance 3: the labeled set's 305 MATH-500 pairs (reference solutions ending in hand-written
    answers, tests/verifiers/data) scored the evaluator's way, by the math500 benchmark's verifier,
    get exactly the labels the verifier's own tests expect."""
    bench = get_benchmark("math500")
    problems = {p.id: p for p in bench.problems()}
    rows = [r for r in map(json.loads, LABELED.open()) if r["source"].startswith("math500:")]
    assert len(rows) == 305
    samples, counts = [], {}
    for r in rows:
        pid = r["source"].removeprefix("math500:")
        assert problems[pid].answer == r["gold"]
        counts[pid] = counts.get(pid, -1) + 1
        samples.append(Sample("math500", pid, counts[pid], "", r["completion"], 0, False, False, 0.0, None, "unscored"))
    verifiers = Verifiers()
    try:
        scored = rescore(bench, list(problems.values()), samples, verifiers.get(bench))
    finally:
        verifiers.close()
    wrong = [(r["source"], r["note"], s.extracted, s.reason) for r, s in zip(rows, scored) if s.correct != r["label"]]
    assert not wrong
    assert sum(r["label"] for r in rows) not in (0, len(rows))


def test_a_run_with_the_python_tool_samples_episodes(tiny_model_dir, tmp_path):
    """``env=python``: every sample is an episode whose prompt lists the tool; the samples record
    turns, tool calls and the transcript (the random tiny model calls no tool: one turn each)."""
    run_eval(_config(tiny_model_dir, "env=python", "benchmarks=[math500]"), tmp_path, progress=False)
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == N * LIMIT
    for s in samples:
        assert "<python>...</python>" in s["prompt"] and s["turns"] >= 1 and s["transcript"] is not None
