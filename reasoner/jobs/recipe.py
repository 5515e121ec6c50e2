"""Multi-stage recipes (``reasoner-train recipe=r1``): stages run in order, each from the
previous stage's model, each in its own process and directory, resumable stage by stage.

Stage kinds (`reasoner.config.StageKind`):
- ``sft``: `reasoner.jobs.sft.run_sft_job`; after a ``rejection_sampling`` stage its
  ``sft.source`` defaults to that stage's ``data.jsonl``.
- ``rl``: `reasoner.jobs.rl.run` with the cold start off (it is its own stage).
- ``rejection_sampling``: `reasoner.jobs.rejection.run_rejection`; the model is not changed.

A stage's config is the run's config with ``model.path`` set to the current model, the
previous stage's data where it applies, then the stage's own ``overrides``. The held-out set
is evaluated on the starting model once (the first stage's ``base``) and after every stage
that changes the model.

Layout of the run directory: ``stages/NN_<name>/`` per stage (``config.yaml``, the job's own
outputs, ``done.json`` once finished), ``recipe_summary.json`` and ``results.md`` (the table
printed at the end). Running the same command again skips finished stages (refusing one whose
config changed, naming the fields) and continues an RL stage from its last checkpoint.
SIGTERM / SIGINT are passed to the running stage, which stops as a plain run does.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from reasoner.checkpoint import flat_config
from reasoner.config import RunConfig, StageConfig, StageKind, register_configs, save_config
from reasoner.jobs.rejection import run_rejection
from reasoner.jobs.rl import run_main
from reasoner.jobs.sft import run_sft_job

log = logging.getLogger("reasoner")


class RecipeError(RuntimeError):
    """A recipe stage failed or cannot be resumed; the message names the stage. `returncode`:
    the failed stage's exit status (128 + signal number when a signal stopped it), else 0."""

    def __init__(self, message: str, returncode: int = 0) -> None:
        super().__init__(message)
        self.returncode = returncode


@dataclass
class StageResult:
    """What a finished stage hands on and reports."""

    name: str
    kind: str
    model: str
    data: str | None
    heldout: dict | None  # `EvalResult.as_dict` after the stage (None: model unchanged)
    notes: str
    seconds: float


def stage_config(base: RunConfig, stage: StageConfig, model: str, data: str | None, first: bool) -> RunConfig:
    """The config a stage runs with (module docstring).

    Raises:
        ValueError: an override names an unknown field or breaks a check (named).
    """
    node = OmegaConf.structured(base)
    node.recipe.name, node.recipe.stages = "", []
    node.model.path = model
    node.trainer.eval_base = first
    if stage.kind is StageKind.sft and data is not None:
        node.sft.source = data
    if stage.kind is StageKind.rl:
        node.sft.enabled = False
        node.trainer.save_checkpoint = True
    try:
        node = OmegaConf.merge(node, OmegaConf.from_dotlist(stage.overrides))
        return OmegaConf.to_object(node)  # type: ignore[return-value]
    except Exception as err:  # omegaconf's errors and the RunConfig checks
        raise ValueError(f"recipe stage {stage.name!r}: bad overrides {stage.overrides}: {err}") from err


def _stage_dir(run_dir: Path, i: int, stage: StageConfig) -> Path:
    return run_dir / "stages" / f"{i:02d}_{stage.name}"


def _finished(path: Path, flat: dict) -> StageResult | None:
    """The result of a stage finished earlier in `path`, or None.

    Raises:
        RecipeError: it finished with another config.
    """
    done = path / "done.json"
    if not done.exists():
        return None
    record = json.loads(done.read_text())
    changed = {
        k: (record["config"].get(k), flat.get(k))
        for k in set(record["config"]) | set(flat)
        if record["config"].get(k) != flat.get(k)
    }
    if changed:
        listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items()))
        raise RecipeError(
            f"stage {path.name} finished with another config ({listed}); use a new hydra.run.dir, "
            f"or delete {path} to run it again"
        )
    return StageResult(**record["result"])


def _run_child(path: Path) -> None:
    """Run the stage in `path` in a child process, passing SIGTERM / SIGINT on to it.

    Raises:
        RecipeError: the stage exited non-zero (its log is ``path/stage.log``).
    """
    with (path / "stage.log").open("a") as out:
        # its own session: a terminal's Ctrl-C reaches the stage once, through `forward` (a second
        # copy straight from the terminal would count as the "exit at once" second signal)
        child = subprocess.Popen(
            [sys.executable, "-m", "reasoner.jobs.recipe", str(path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        forward = lambda signum, _frame: child.send_signal(signum)  # noqa: E731
        previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            rc = child.wait()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    if rc:
        raise RecipeError(f"stage {path.name} exited with status {rc}; see {path / 'stage.log'}", rc)


def _result(stage: StageConfig, path: Path, model: str, seconds: float) -> StageResult:
    summary = json.loads((path / "summary.json").read_text())
    if stage.kind is StageKind.rejection_sampling:
        notes = (
            f"kept {summary['kept']} of {summary['samples']} samples ({summary['correct']} correct), "
            f"{summary['problems_with_a_kept_sample']} of {summary['problems']} problems"
        )
        return StageResult(stage.name, stage.kind.value, model, summary["data"], None, notes, seconds)
    after = "after_sft" if stage.kind is StageKind.sft else "after_rl"
    notes = f"{summary['sft']['examples']} examples" if stage.kind is StageKind.sft else f"{summary['steps']} steps"
    return StageResult(
        stage.name, stage.kind.value, str(path / "checkpoint"), None, summary["heldout"][after], notes, seconds
    )


def run_recipe(cfg: RunConfig, run_dir: Path, overrides: list[str] = ()) -> list[StageResult]:
    """Run (or resume) every stage of ``cfg.recipe``; write and print the per-stage table. The
    run's record (``.hydra/config.yaml``, the command-line `overrides`) is written when the first
    stage left to run starts (after every finished stage's config was checked).

    Raises:
        RecipeError: a stage failed, or a finished stage's config changed.
        ValueError: a stage's overrides are bad (named).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    model, data = cfg.model.path, None
    results: list[StageResult] = []
    base: dict | None = None
    recorded = False
    for i, stage in enumerate(cfg.recipe.stages):
        path = _stage_dir(run_dir, i, stage)
        scfg = stage_config(cfg, stage, model, data if stage.kind is StageKind.sft else None, first=i == 0)
        flat = flat_config(scfg)
        result = _finished(path, flat)
        if result is None:
            if not recorded:
                save_config(cfg, run_dir, overrides)
                recorded = True
            path.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(OmegaConf.structured(scfg), path / "config.yaml")
            (path / "stage.json").write_text(json.dumps({"kind": stage.kind.value, "name": stage.name}))
            log.info(
                "recipe %s: stage %d/%d %s (%s) from %s",
                cfg.recipe.name,
                i + 1,
                len(cfg.recipe.stages),
                stage.name,
                stage.kind.value,
                model,
            )
            start = time.perf_counter()
            _run_child(path)
            result = _result(stage, path, model, time.perf_counter() - start)
            (path / "done.json").write_text(json.dumps({"config": flat, "result": vars(result)}, indent=2))
        if i == 0:
            base = json.loads((path / "summary.json").read_text()).get("heldout", {}).get("base")
        results.append(result)
        model = result.model
        data = result.data or data
    table = results_table(cfg.recipe.name, base, results)
    (run_dir / "results.md").write_text(table + "\n")
    (run_dir / "recipe_summary.json").write_text(
        json.dumps({"recipe": cfg.recipe.name, "base": base, "stages": [vars(r) for r in results]}, indent=2)
    )
    print(table)
    return results


def results_table(name: str, base: dict | None, results: list[StageResult]) -> str:
    """Markdown: held-out accuracy [95% interval], mean length, format compliance and language
    consistency before the first stage and after each stage that changes the model."""
    lines = [
        f"Recipe {name}: held-out evaluation after each stage",
        "",
        "| stage | kind | accuracy [95% CI] | mean length (tokens) | format ok | language consistency "
        "| wall (min) | notes |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]

    def cells(e: dict | None) -> str:
        if e is None:
            return "(model unchanged) | | | "
        lang = e.get("language_consistency", 1.0)
        interval = f"{100 * e['accuracy']:.1f}% [{100 * e['ci_low']:.1f}, {100 * e['ci_high']:.1f}]"
        return f"{interval} | {e['mean_len']:.1f} | {100 * e['well_formed']:.1f}% | {100 * lang:.1f}%"

    if base is not None:
        lines.append(f"| start | (model as given) | {cells(base)} | | |")
    for r in results:
        lines.append(f"| {r.name} | {r.kind} | {cells(r.heldout)} | {r.seconds / 60:.1f} | {r.notes} |")
    return "\n".join(lines)


def run_stage(path: Path) -> None:
    """The child side of `_run_child`: run the stage whose ``config.yaml`` and ``stage.json``
    are in `path`, writing its outputs there."""
    register_configs()
    kind = StageKind(json.loads((path / "stage.json").read_text())["kind"])
    cfg: RunConfig = OmegaConf.to_object(
        OmegaConf.merge(OmegaConf.structured(RunConfig), OmegaConf.load(path / "config.yaml"))
    )  # type: ignore[assignment]
    if kind is StageKind.sft:
        run_sft_job(cfg, path)
    elif kind is StageKind.rejection_sampling:
        run_rejection(cfg, path)
    else:
        run_main(cfg, path, [sys.executable, "-m", "reasoner.jobs.recipe", str(path)])


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    run_stage(Path(sys.argv[1]))
