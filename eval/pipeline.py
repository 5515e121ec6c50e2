"""An evaluation run, start to finish, in one directory (resumable).

Files of a run directory:

- ``settings.json``: model, problem subset (``limit``) and the sampling of every benchmark;
- ``samples.jsonl``: every sample (`eval.samples.Sample`: prompt, completion, extracted answer,
  verdict, reason, length), appended as each chunk of problems is scored;
- ``summary.json``: each benchmark's metrics (`eval.summary.BenchmarkSummary.to_dict`) and the
  wall time;
- ``results.md``: the markdown table (`eval.report.markdown`);
- ``plots/lengths.png`` (correct vs wrong completion lengths) and ``plots/<bench>_by_<key>.png``
  (MATH-500 by level and by subject).

Running again on the same directory resumes: the samples already written are kept and only
the missing (benchmark, problem, sample index) keys are drawn. The settings must match those
the directory was started with (a changed model or sampling raises `ValueError`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from eval.benchmarks import Benchmark, Sampling, get_benchmark, with_free_form
from eval.config import EvalConfig
from eval.report import markdown, plot_breakdowns, plot_lengths
from eval.runner import Verifiers, fit_max_tokens, longest_prompt, rescore, sample_benchmark
from eval.samples import Sample, SampleFile
from eval.summary import BenchmarkSummary, summarize
from reasoner.config import RolloutConfig, save_config
from reasoner.models import resolve_model_path
from reasoner.types import Problem

log = logging.getLogger("reasoner.eval")


@dataclass
class Plan:
    """One benchmark of a run: its problems and the sampling they get."""

    benchmark: Benchmark
    problems: list[Problem]
    sampling: Sampling


def run_eval(
    cfg: EvalConfig, run_dir: Path, progress: bool = True, overrides: list[str] = ()
) -> list[BenchmarkSummary]:
    """Evaluate `cfg.model` on `cfg.benchmarks` into `run_dir` (resuming what is there) and
    write every output; returns the summaries, in benchmark order. The run's record
    (``.hydra/config.yaml`` with the command-line `overrides`) is written once the settings
    check has passed.

    Raises:
        ValueError: an unknown benchmark, or `run_dir` holds a run with other settings.
    """
    from transformers import AutoConfig, AutoTokenizer

    from reasoner.envs.episodes import EpisodeEngine
    from reasoner.envs.registry import build_environment
    from reasoner.rollout import make_engine

    start = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    benches = [with_free_form(get_benchmark(name), cfg.free_form) for name in cfg.benchmarks]
    model_path = resolve_model_path(cfg.model.path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    context = cfg.max_model_len or AutoConfig.from_pretrained(model_path).max_position_embeddings
    plans = []
    for bench in benches:
        problems = bench.problems(cfg.limit)
        wanted = cfg.sampling(bench.sampling)
        try:
            sampling = fit_max_tokens(wanted, longest_prompt(tokenizer, bench, problems), context)
        except ValueError as err:
            raise ValueError(f"{bench.name}: {err} (max_model_len)") from err
        if sampling != wanted:
            log.warning(
                "%s: max_tokens %d does not fit the %d-token context after the longest prompt: using %d",
                bench.name,
                wanted.max_tokens,
                context,
                sampling.max_tokens,
            )
        plans.append(Plan(bench, problems, sampling))
    _save_settings(run_dir, cfg.model.path, cfg.limit, cfg.free_form, plans)
    save_config(cfg, run_dir, overrides)

    environment = build_environment(cfg.env)  # before the engine: a missing sandbox or corpus fails fast
    store = SampleFile(run_dir / "samples.jsonl")
    done = {s.key for s in store.load()}
    verifiers = Verifiers()
    try:
        if any((p.benchmark.name, q.id, i) not in done for p in plans for q in p.problems for i in range(p.sampling.n)):
            torch.manual_seed(cfg.seed)  # the transformers backend samples from torch's generator
            rollout = RolloutConfig(
                backend=cfg.backend,
                max_model_len=context,
                kv_cache_gb=cfg.kv_cache_gb,
                gpu_memory_utilization=cfg.gpu_memory_utilization,
            )
            engine = make_engine(cfg.backend, model_path, rollout, cfg.seed)
            if environment is not None:
                engine = EpisodeEngine(engine, environment, tokenizer, cfg.env, context)
            for p in plans:
                sample_benchmark(
                    engine,
                    tokenizer,
                    p.benchmark,
                    p.problems,
                    p.sampling,
                    verifiers.get(p.benchmark),
                    done,
                    store.append,
                    cfg.chunk,
                    progress,
                )
    finally:
        verifiers.close()
        if environment is not None:
            environment.close()
    return write_outputs(run_dir, cfg.model.path, plans, store.load(), time.perf_counter() - start)


def rescore_run(run_dir: Path) -> list[BenchmarkSummary]:
    """Judge every sample of a finished run again with the current verifiers, rewrite
    ``samples.jsonl`` and every output (no model needed).

    Raises:
        FileNotFoundError: `run_dir` has no ``settings.json``.
        ValueError: a benchmark of the run lacks samples.
    """
    start = time.perf_counter()
    settings = json.loads((run_dir / "settings.json").read_text())
    store = SampleFile(run_dir / "samples.jsonl")
    samples = store.load()
    plans = []
    verifiers = Verifiers()
    try:
        for name, sampling in settings["sampling"].items():
            bench = with_free_form(get_benchmark(name), settings.get("free_form", False))
            samples = rescore(bench, bench.problems(), samples, verifiers.get(bench))
            plans.append(Plan(bench, bench.problems(settings["limit"]), Sampling(**sampling)))
    finally:
        verifiers.close()
    store.replace(samples)
    return write_outputs(run_dir, settings["model"], plans, samples, time.perf_counter() - start)


def _save_settings(run_dir: Path, model: str, limit: int | None, free_form: bool, plans: list[Plan]) -> None:
    """Write ``settings.json``, after checking it against the one already there (resume).

    Raises:
        ValueError: the model, the problem subset or a benchmark's sampling differs from the
            run's (named).
    """
    path = run_dir / "settings.json"
    fresh = {"model": model, "limit": limit, "free_form": free_form, "sampling": {}}
    old = {"free_form": False, **json.loads(path.read_text())} if path.exists() else fresh
    new = {
        "model": model,
        "limit": limit,
        "free_form": free_form,
        "sampling": {**old["sampling"], **{p.benchmark.name: asdict(p.sampling) for p in plans}},
    }
    clashes = [f"{k}: {old[k]!r} -> {new[k]!r}" for k in ("model", "limit", "free_form") if old[k] != new[k]]
    clashes += [
        f"{name} sampling: {s} -> {new['sampling'][name]}"
        for name, s in old["sampling"].items()
        if s != new["sampling"][name]
    ]
    if clashes:
        raise ValueError(f"{run_dir} holds a run with other settings ({'; '.join(clashes)}): use a new run directory")
    path.write_text(json.dumps(new, indent=2))


def write_outputs(
    run_dir: Path, model: str, plans: list[Plan], samples: list[Sample], seconds: float
) -> list[BenchmarkSummary]:
    """Summaries of `plans` from `samples`, written as ``summary.json``, ``results.md`` and the
    plots; the table is printed too. Returns the summaries."""
    summaries = [summarize(p.benchmark, p.sampling, p.problems, samples) for p in plans]
    (run_dir / "summary.json").write_text(
        json.dumps(
            {"model": model, "wall_seconds": seconds, "benchmarks": {s.benchmark: s.to_dict() for s in summaries}},
            indent=2,
        )
    )
    table = markdown(summaries, model)
    (run_dir / "results.md").write_text(table)
    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    plot_breakdowns(summaries, plots)
    kept = {}
    for p in plans:
        ids = {q.id for q in p.problems}
        kept[p.benchmark.name] = [
            s for s in samples if s.benchmark == p.benchmark.name and s.problem_id in ids and s.index < p.sampling.n
        ]
    plot_lengths(kept, plots / "lengths.png")
    print(table)
    print(f"wall {seconds / 60:.1f} min; outputs in {run_dir}")
    return summaries


def load_summaries(run_dir: Path) -> dict[str, BenchmarkSummary]:
    """The benchmark summaries of a finished run (its ``summary.json``).

    Raises:
        FileNotFoundError: `run_dir` has no ``summary.json`` (the message says whether the
            directory is missing or the run unfinished).
    """
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        what = "no such directory" if not Path(run_dir).is_dir() else "no summary.json: not a finished evaluation run"
        raise FileNotFoundError(f"{run_dir}: {what} (looked for {path.resolve()})")
    data = json.loads(path.read_text())
    return {name: BenchmarkSummary.from_dict(d) for name, d in data["benchmarks"].items()}
