"""Metrics sinks behind one small interface (`Logger`: JSON Lines, TensorBoard, Weights & Biases),
and the one-line step summary the run logs (console and train.log)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, Protocol

from torch.utils.tensorboard import SummaryWriter


class Logger(Protocol):
    """A metrics sink: ``log(step, metrics)`` once per RL step, ``close()`` at the end. Numbers,
    plus ``data/problem_ids`` (a list) that sinks without lists skip."""

    def log(self, step: int, metrics: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class JsonlLogger:
    """Append one JSON object per step to ``run_dir/metrics.jsonl``.

    A run that starts at step `start_step` (0 for a new run, the checkpoint's step on resume)
    keeps the stream's records up to that step and drops later ones (written after the
    checkpoint by the run that stopped, and about to be redone), so the stream continues with
    no step twice.

    Args:
        run_dir: the run directory.
        start_step: the last step whose record is kept.
        history: the stream to continue (default: this run dir's); a run resumed from another
            run dir's checkpoint copies that run's records up to `start_step`.
    """

    def __init__(self, run_dir: Path, start_step: int = 0, history: Path | None = None) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        source = self.path if history is None else Path(history)
        lines = source.read_text().splitlines() if source.is_file() else []
        kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= start_step]
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.path)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")

    def close(self) -> None:
        pass


class TensorBoardLogger:
    """Scalars to ``run_dir/tensorboard``; a run starting at `start_step` purges later events."""

    def __init__(self, run_dir: Path, start_step: int = 0) -> None:
        self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=start_step + 1)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


WANDB_MISSING = (
    "trainer.loggers has 'wandb' but wandb is not installed: .venv/bin/pip install -e '.[wandb]' in the "
    "reasoner checkout (or pip install wandb)"
)


class WandbLogger:
    """Scalars to Weights & Biases (the optional ``wandb`` extra: ``.venv/bin/pip install -e '.[wandb]'``).

    Online when ``WANDB_API_KEY`` is set, else offline: the run is written under
    ``run_dir/wandb/`` and ``wandb sync run_dir/wandb/offline-run-*`` uploads it later;
    ``WANDB_MODE`` (online / offline / disabled), ``WANDB_PROJECT`` (default ``reasoner``) and
    ``WANDB_ENTITY`` are honoured as wandb defines them. The W&B run id is kept in
    ``run_dir/wandb_run_id``, so a resumed run continues the same W&B run. Unlike metrics.jsonl, W&B
    cannot drop what a stopped run logged after its last checkpoint: for those steps it keeps the
    abandoned values, not the redone ones.

    Raises:
        ImportError: wandb is not installed (says how to install it).
    """

    def __init__(self, run_dir: Path, config: dict[str, Any] | None = None) -> None:
        try:
            import wandb
        except ImportError as err:
            raise ImportError(WANDB_MISSING) from err
        run_dir = Path(run_dir)
        id_file = run_dir / "wandb_run_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:8]
        id_file.write_text(run_id)
        mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "reasoner"),
            dir=str(run_dir),
            id=run_id,
            resume="allow",
            mode=mode,
            name=run_dir.name,
            config=config or {},
        )

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        self.run.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)

    def close(self) -> None:
        self.run.finish()


#: ``trainer.loggers`` names
LOGGERS = ("jsonl", "tensorboard", "wandb")


def check_loggers(names: list[str]) -> None:
    """Check ``trainer.loggers`` before a run starts: known names, and wandb installed if named.

    Raises:
        ValueError: an unknown name (the valid ones are listed).
        ImportError: ``wandb`` is named but not installed (says how to install it).
    """
    for name in names:
        if name not in LOGGERS:
            raise ValueError(f"config field trainer.loggers has {name!r}: known loggers are {', '.join(LOGGERS)}")
    if "wandb" in names:
        import importlib.util

        if importlib.util.find_spec("wandb") is None:
            raise ImportError(WANDB_MISSING)


def make_loggers(
    names: list[str], run_dir: Path, start_step: int, history: Path | None, config: dict[str, Any] | None = None
) -> list[Logger]:
    """The configured sinks (``trainer.loggers``), continuing a resumed run's streams; `config`
    (the flat resolved config) is the W&B run's config.

    Raises:
        ValueError: an unknown name (the valid ones are listed).
        ImportError: ``wandb`` is asked for but not installed.
    """
    check_loggers(names)
    made: list[Logger] = []
    for name in names:
        if name == "jsonl":
            made.append(JsonlLogger(run_dir, start_step, history))
        elif name == "tensorboard":
            made.append(TensorBoardLogger(run_dir, start_step))
        else:
            made.append(WandbLogger(run_dir, config))
    return made


def compact_line(step: int, m: dict[str, Any]) -> str:
    """One short human line per step (generation rounds shown when dynamic sampling took more
    than one; skipped updates and verifier errors when there were any; with rollouts ahead of the
    learner, on a step whose batch was stale: the staleness, the largest importance ratio and
    each role's idle seconds)."""
    rounds = m.get("groups/sampling_rounds", 1)
    return (
        f"step {step:3d} | reward {m['reward/mean']:.3f} acc {m['reward/accuracy']:.3f} "
        f"| len {m['response/len_mean']:.0f}/{m['response/len_max']:.0f} trunc {m['response/truncated_frac']:.2f} "
        f"zero-var {m['groups/zero_var_frac']:.2f} | kl {m['policy/kl']:.4f} ent {m['policy/entropy']:.3f} "
        f"clip {m['policy/clip_frac']:.3f} gnorm {m['policy/grad_norm']:.2f} "
        f"| gen {m['time/generate']:.1f}s reward {m['time/reward']:.1f}s logp {m.get('time/logprobs', 0.0):.1f}s "
        f"update {m.get('time/update', 0.0):.1f}s sync {m.get('time/sync', 0.0):.1f}s "
        f"| {m['perf/tokens_per_s']:.0f} tok/s"
        + (f" | {rounds:.0f} rounds" if rounds > 1 else "")
        + (
            f" | stale {m['rollout/staleness']:.0f} is-max {m['policy/is_ratio_max']:.2f} "
            f"idle learner {m['time/learner_idle']:.1f}s engine {m['time/engine_idle']:.1f}s"
            if m.get("rollout/staleness")
            else ""
        )
        + (
            f" | {m['policy/skipped_updates']:.0f} updates skipped (non-finite)"
            if m.get("policy/skipped_updates")
            else ""
        )
        + (f" | {m['reward/verify_errors']:.0f} verifier errors" if m.get("reward/verify_errors") else "")
    )
