"""Resumable checkpoints: everything a run needs to continue where it stopped, written atomically.

A checkpoint is a directory ``run_dir/checkpoints/step_NNNNNN/`` (NNNNNN: RL steps done) holding

- what the learner writes (`reasoner.learner.LearnerAPI.save`; the single-process learner:
  ``policy.safetensors``, the policy's fp32 weights; ``reference.safetensors``, the frozen KL
  reference (``algorithm.kl.beta > 0``); ``critic.safetensors``, the critic; ``trainer.pt``,
  optimizer(s), LR scheduler, adaptive β, the mini-batch shuffling generator);
- ``rng.pt``: the Python ``random``, NumPy and torch (CPU and CUDA) generator states;
- ``state.json``: the step, the prompt stream's position (epoch, position, shuffling seed, size
  and digest of the training set), the run's results so far (held-out evaluations, cold-start
  figures) and the step's metrics;
- ``config.yaml``: the resolved run config;
- ``manifest.json``, written last: the step, each file's size in bytes, the best-metric value.

Writing goes to ``checkpoints/.tmp-step_NNNNNN``; every file is flushed to disk (fsync), then the
directory is renamed into place and the parent directory synced. A ``step_*`` directory is
therefore complete; a write killed midway leaves a ``.tmp-*`` directory, deleted by the next save
or resume. A checkpoint whose manifest is missing or whose file sizes disagree with it is not
loaded. After each save only the last ``keep_last`` checkpoints are kept, plus the best by a
metric when one is named.

Data between steps: the prompt stream's position is the whole data-loader state, and a dynamic-sampling
batch never outlives its step (surplus groups are dropped at the end of the step), so a
checkpoint taken between steps holds no partial batch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from reasoner.config import BestMode, RunConfig
from reasoner.data.stream import PromptStream
from reasoner.distributed.sharded import LearnerWorkerError
from reasoner.learner import LearnerAPI

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_PREFIX = "step_"
_TMP = ".tmp-"


#: fields a resumed run may change: the budget, checkpoint / evaluation cadence, memory and
#: parallelism settings, the sampler backend and the weight-sync check. None of them is part of
#: the training state, so the run continues as it would have. Any other change is refused on
#: resume (`resume_changes`).
RESUME_SAFE_FIELDS = frozenset(
    {
        "trainer.steps",
        "trainer.resume",
        "trainer.checkpoint_every",
        "trainer.keep_last",
        "trainer.best_metric",
        "trainer.best_mode",
        "trainer.eval_every",
        "trainer.eval_benchmarks",
        "trainer.eval_benchmark_samples",
        "trainer.eval_benchmark_problems",
        "trainer.threads",
        "trainer.device",
        "trainer.reuse_heap",
        "trainer.heap_trim",
        "trainer.micro_batch_size",
        "trainer.micro_batch_tokens",
        "trainer.logits_chunk_tokens",
        "trainer.packing",
        "trainer.gradient_checkpointing",
        "trainer.skip_zero_advantage",
        "trainer.save_checkpoint",
        "trainer.max_nonfinite_steps",
        "trainer.max_verifier_failures",
        "rollout.backend",
        "rollout.max_staleness",
        "rollout.kv_cache_gb",
        "rollout.gpu_memory_utilization",
        "rollout.max_model_len",
        "rollout.enforce_eager",
        "rollout.sync_check",
        "rollout.sync_check_tol",
        "rollout.sync_check_follow",
        "rollout.sync_check_every",
        "trainer.loggers",
        "reward.verifier.workers",
        "reward.verifier.timeout_s",
    }
)


#: config groups whose changes a resume honours: those an RL run does not read (the preference
#: learning jobs'), and where it runs (a checkpoint holds the full state in one process's files,
#: so a run resumes on another cluster or number of learner ranks)
RESUME_SAFE_GROUPS = ("pairs.", "rm.", "dpo.", "cluster.")


def flat_config(cfg: RunConfig | dict[str, Any]) -> dict[str, Any]:
    """The resolved config as ``{"trainer.steps": 30, ...}`` (dotted field -> value; enums by name)."""
    tree = (
        cfg
        if isinstance(cfg, dict)
        else OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)
    )
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        else:
            flat[prefix] = node

    walk(tree, "")
    return flat


def resume_changes(
    saved: dict[str, Any], current: dict[str, Any]
) -> tuple[dict[str, tuple[Any, Any]], dict[str, tuple[Any, Any]]]:
    """Fields whose value differs between a checkpoint's config and the current one, both as
    `flat_config` gives them, split into (allowed on resume, refused): field -> (saved, current).
    A field the checkpoint lacks (added to the schema after it was written) counts as its default
    (what the run that wrote it used); another field present on one side only counts as changed
    (its value on the other side is ``"<absent>"``)."""
    schema = OmegaConf.structured(RunConfig)  # the fields' defaults (the class, not an instance: no checks)
    defaults = flat_config(OmegaConf.to_container(schema, resolve=True, enum_to_str=True))
    allowed, refused = {}, {}
    for name in sorted(saved.keys() | current.keys()):
        old, new = saved.get(name, defaults.get(name, "<absent>")), current.get(name, "<absent>")
        if old != new:
            safe = name in RESUME_SAFE_FIELDS or name.startswith(RESUME_SAFE_GROUPS)
            (allowed if safe else refused)[name] = (old, new)
    return allowed, refused


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used (missing, incomplete, or from a run it cannot continue)."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (a full disk, say); the message names the directory, the
    free space and the last intact checkpoint."""


def rng_state() -> dict[str, Any]:
    """The Python, NumPy and torch generator states (tensors, ints and tuples only, so the
    file loads with ``torch.load(weights_only=True)``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Checkpoint:
    """A complete checkpoint on disk.

    Attributes:
        path: its directory.
        step: RL steps done when it was written.
        state: ``state.json`` (prompt stream, results, metrics).
        config: the run config it was written with, as `flat_config` gives it.
    """

    path: Path
    step: int
    state: dict[str, Any]
    config: dict[str, Any]

    @classmethod
    def open(cls, path: Path) -> Checkpoint:
        """Read and check a checkpoint directory.

        Raises:
            CheckpointError: no manifest, or a file missing or of another size than the
                manifest says (the message names the file).
        """
        path = Path(path)
        manifest = path / MANIFEST
        if not manifest.is_file():
            raise CheckpointError(f"{path} is not a complete checkpoint (looked for {manifest})")
        info = json.loads(manifest.read_text())
        for name, size in info["files"].items():
            f = path / name
            if not f.is_file() or f.stat().st_size != size:
                found = f"{f.stat().st_size} bytes" if f.is_file() else "missing"
                raise CheckpointError(f"checkpoint {path} is damaged: {name} should be {size} bytes, is {found}")
        state = json.loads((path / "state.json").read_text())
        config = flat_config(OmegaConf.to_container(OmegaConf.load(path / "config.yaml")))
        return cls(path, int(info["step"]), state, config)

    def restore(self, learner: LearnerAPI, prompts: PromptStream) -> None:
        """Load the weights (policy, reference, critic), the learner's optimizer state and the
        prompt stream's position into the run's objects.

        Raises:
            CheckpointError: the run has a reference model or critic that the checkpoint has not,
                or the reverse.
            ValueError: the training data differs from the checkpoint's (`PromptStream.load_state_dict`).
        """
        try:
            learner.load(self.path)
        except ValueError as err:
            raise CheckpointError(str(err)) from err
        prompts.load_state_dict(self.state["prompt_stream"])

    def restore_rng(self) -> None:
        """Set every generator to its state when the checkpoint was written."""
        set_rng_state(torch.load(self.path / "rng.pt", weights_only=True))


class CheckpointStore:
    """The checkpoints of one run, in ``root`` (``run_dir/checkpoints``).

    Args:
        root: the directory (created on the first save).
        keep_last: checkpoints kept after each save, newest first (>= 1).
        best_metric: a metric name; the checkpoint whose step had the best value of it is kept
            too. Empty: none.
        best_mode: whether the best value is the largest or the smallest.
    """

    def __init__(
        self, root: Path, keep_last: int = 2, best_metric: str = "", best_mode: BestMode = BestMode.max
    ) -> None:
        self.root, self.keep_last, self.best_metric, self.best_mode = Path(root), keep_last, best_metric, best_mode

    def checkpoints(self) -> list[Checkpoint]:
        """Complete checkpoints, oldest first; an incomplete or damaged one is named in a warning
        and left out."""
        found = []
        for path in sorted(self.root.glob(f"{_PREFIX}*")) if self.root.is_dir() else []:
            try:
                found.append(Checkpoint.open(path))
            except CheckpointError as err:
                log.warning("ignoring %s", err)
        return sorted(found, key=lambda c: c.step)

    def latest(self) -> Checkpoint | None:
        """The newest complete checkpoint, or None."""
        found = self.checkpoints()
        return found[-1] if found else None

    def best(self, found: list[Checkpoint] | None = None) -> Checkpoint | None:
        """The checkpoint with the best finite `best_metric` value, or None (no metric named, or
        no checkpoint has a value)."""
        scored = (
            [
                c
                for c in (self.checkpoints() if found is None else found)
                if _finite(c.state["metrics"].get(self.best_metric))
            ]
            if self.best_metric
            else []
        )
        if not scored:
            return None
        pick = max if self.best_mode is BestMode.max else min
        return pick(scored, key=lambda c: c.state["metrics"][self.best_metric])

    def clean_partial(self) -> None:
        """Delete ``.tmp-*`` directories left by writes that were killed midway."""
        for tmp in self.root.glob(f"{_TMP}*") if self.root.is_dir() else []:
            log.warning("removing %s (a checkpoint write that did not finish)", tmp)
            shutil.rmtree(tmp)

    def save(
        self,
        step: int,
        learner: LearnerAPI,
        prompts: PromptStream,
        cfg: RunConfig,
        results: dict[str, Any],
        metrics: dict[str, Any],
    ) -> Path:
        """Write the checkpoint of step `step` atomically, then prune to the last `keep_last`
        (plus the best). `results` is what the run has measured so far (JSON-serializable);
        `metrics` the step's metrics (lists and non-finite values are kept as JSON allows).

        Returns the checkpoint directory.

        Raises:
            CheckpointWriteError: a file could not be written (the partial write is removed; the
                earlier checkpoints are untouched).
        """
        start = time.perf_counter()
        self.root.mkdir(parents=True, exist_ok=True)
        self.clean_partial()
        name = f"{_PREFIX}{step:06d}"
        tmp, final = self.root / f"{_TMP}{name}", self.root / name
        tmp.mkdir()
        try:
            files = self._write(tmp, step, learner, prompts, cfg, results, metrics)
        except LearnerWorkerError:  # a learner rank failed, not the disk: said as it is
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        except Exception as err:
            shutil.rmtree(tmp, ignore_errors=True)
            free = shutil.disk_usage(self.root).free / 1e9
            latest = self.latest()
            kept = f"the last checkpoint, {latest.path}, is intact" if latest else "no earlier checkpoint exists"
            raise CheckpointWriteError(
                f"could not write the checkpoint of step {step} in {self.root} ({type(err).__name__}: {err}); "
                f"{free:.2f} GB free on that disk. The partial write was removed and {kept}. "
                "Free disk space (or lower trainer.keep_last, raise trainer.checkpoint_every) "
                "and resume with trainer.resume=auto."
            ) from err
        if final.exists():  # a checkpoint of this step from a run that resumed before it
            shutil.rmtree(final)
        tmp.rename(final)
        _fsync(self.root)
        self._prune()
        log.info("checkpoint %s (%.1f MB, %.1f s)", final, sum(files.values()) / 1e6, time.perf_counter() - start)
        return final

    def _write(
        self,
        tmp: Path,
        step: int,
        learner: LearnerAPI,
        prompts: PromptStream,
        cfg: RunConfig,
        results: dict[str, Any],
        metrics: dict[str, Any],
    ) -> dict[str, int]:
        """Write every file of the checkpoint into `tmp` and sync them to disk; returns {file name:
        size in bytes}."""
        learner.save(tmp)
        torch.save(rng_state(), tmp / "rng.pt")
        state = {"step": step, "prompt_stream": prompts.state_dict(), "results": results, "metrics": metrics}
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
        (tmp / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
        files = {f.name: f.stat().st_size for f in sorted(tmp.iterdir())}
        value = metrics.get(self.best_metric) if self.best_metric else None
        manifest = {
            "step": step,
            "files": files,
            "best_metric": self.best_metric or None,
            "best_value": value,
            "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        for f in tmp.iterdir():
            _fsync(f)
        _fsync(tmp)
        return files

    def _prune(self) -> None:
        found = self.checkpoints()
        keep = {c.path for c in found[-self.keep_last :]}
        best = self.best(found)
        if best is not None:
            keep.add(best.path)
        for c in found:
            if c.path not in keep:
                shutil.rmtree(c.path)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def find_resume_checkpoint(resume: str, run_dir: Path) -> Checkpoint | None:
    """The checkpoint ``trainer.resume`` asks for, or None to start from step 0.

    Args:
        resume: ``auto`` (the latest in ``run_dir/checkpoints``, None if there is none),
            ``never`` (None), or a checkpoint directory or run directory (its latest).
        run_dir: this run's directory.

    Raises:
        CheckpointError: ``never`` while ``run_dir`` holds checkpoints; a path that holds no
            complete checkpoint (the message says where it looked); a checkpoint older than the
            latest in ``run_dir`` (continuing it there would mix two continuations of one run).
    """
    store = CheckpointStore(run_dir / "checkpoints")
    own = store.latest()
    if resume == "auto":
        return own
    if resume == "never":
        if own is not None:
            raise CheckpointError(
                f"trainer.resume=never, but {store.root} holds checkpoints (latest: step {own.step}); "
                "continue that run with trainer.resume=auto, or start this one in a new hydra.run.dir"
            )
        return None
    path = Path(resume).expanduser().resolve()
    if (path / MANIFEST).is_file():
        ckpt = Checkpoint.open(path)
    else:
        ckpt = CheckpointStore(path / "checkpoints").latest() or CheckpointStore(path).latest()
        if ckpt is None:
            raise CheckpointError(
                f"trainer.resume={resume!r}: no checkpoint there (looked for {path / MANIFEST}, "
                f"{path / 'checkpoints' / (_PREFIX + '*') / MANIFEST} and {path / (_PREFIX + '*') / MANIFEST})"
            )
    if own is not None and own.step > ckpt.step:
        raise CheckpointError(
            f"trainer.resume={resume!r} is step {ckpt.step}, but this run dir already has step {own.step} "
            f"({own.path}); to branch from step {ckpt.step}, use a new hydra.run.dir"
        )
    return ckpt
