"""An RL run: set-up, cold start, the loop of RL steps with after-step hooks, the summary.

Run directory (Hydra's output dir): ``.hydra/`` (resolved config), ``metrics.jsonl``,
``tensorboard/``, ``checkpoints/`` (resumable, `reasoner.checkpoint`), ``checkpoint/`` (the
final policy: safetensors + tokenizer, loadable by vLLM and transformers), ``summary.json``.
Held-out accuracy is measured three times: base model, after the cold start, after RL.
"""

from __future__ import annotations

import json
import logging
import math
import shlex
import sys
import time
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import torch
from safetensors.torch import save_model
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from eval.metrics import diff_interval, paired_diff_interval
from eval.runner import PeriodicEval
from reasoner.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    find_resume_checkpoint,
    flat_config,
    resume_changes,
)
from reasoner.config import RunConfig, save_config
from reasoner.data import GENERATED, load_problems
from reasoner.data.stream import PromptStream
from reasoner.distributed.cluster import RayCluster, cluster_session
from reasoner.distributed.sharded import LearnerWorkerError
from reasoner.distributed.worker import LearnerSpec
from reasoner.interrupt import StopRequest, TrainingInterrupted
from reasoner.jobs.common import (
    RunContext,
    cold_start,
    open_run,
    peak_rss_gb,
    release_free_heap,
    sft_rows,
    step_trimmer,
)
from reasoner.jobs.heldout import EvalResult, load_heldout
from reasoner.learner import Learner, LearnerAPI, NonFiniteUpdateError, companions
from reasoner.logprobs import sequence_logprobs
from reasoner.metrics_log import Logger, check_loggers, compact_line, make_loggers
from reasoner.models import load_policy, resolve_model_path
from reasoner.rewards import Reward, build_reward
from reasoner.rl_step import Sampled, rl_step, sample_step
from reasoner.rollout import RolloutEngineError
from reasoner.rollout.ahead import RolloutsAhead
from reasoner.rollout.sync import SyncCheckCadence, SyncProbe, check_sync, make_probe, sync_drift, sync_weights
from reasoner.types import Problem
from verifiers.registry import build_verifier

log = logging.getLogger("reasoner")


@dataclass
class RLRun:
    """Everything a run holds between its stages (`setup` builds it)."""

    cfg: RunConfig
    run_dir: Path
    ctx: RunContext
    stop: StopRequest
    start_step: int
    ckpt: Checkpoint | None
    train: list
    results: dict
    probe: SyncProbe | None
    reward: Reward
    began: float
    cluster: RayCluster | None = None
    learner: LearnerAPI | None = None
    prompts: PromptStream | None = None
    saved: Path | None = None
    saved_step: int | None = None
    metrics: dict = field(default_factory=dict)
    #: the engine's turn for an evaluation (`RolloutsAhead.engine_turn` with rollouts ahead)
    engine_turn: Callable[[], AbstractContextManager] = nullcontext


class AfterStep(Protocol):
    """A hook run after every RL step, in order; it may add metrics (evaluations) or act on them
    (logging, checkpoints, guards)."""

    def __call__(self, run: RLRun, step: int, metrics: dict[str, Any]) -> None: ...


def run(cfg: RunConfig, run_dir: Path, overrides: list[str] = ()) -> dict:
    """Run the whole job described by `cfg`, writing outputs under `run_dir`; return the summary.
    The run's record (``.hydra/config.yaml`` and the command-line `overrides`) is written once the
    checks of the set-up have passed.

    Continues from a checkpoint when ``trainer.resume`` finds one (`reasoner.checkpoint`): the
    weights, optimizer, data position, RNG streams and results so far are restored, and the
    run goes on from the next step as if it had not stopped. SIGTERM / SIGINT stop it at the next
    step boundary with a checkpoint (a second signal ends it at once).

    Raises:
        TrainingInterrupted: a signal stopped the run (after writing a checkpoint).
        NonFiniteUpdateError: ``trainer.max_nonfinite_steps`` consecutive steps had a
            non-finite loss or gradient (their updates were skipped; a checkpoint is written).
        RolloutEngineError: the rollout engine failed; no checkpoint is written after it.
        LearnerWorkerError: a learner rank of ``cluster=ray`` died or failed (a collective timed
            out included); the message names the rank and the last intact checkpoint.
        VerifierFailed: ``trainer.max_verifier_failures`` consecutive steps had only verifier
            errors (none was trained on).
        CheckpointError: ``trainer.resume`` names no usable checkpoint, or the config changed in a
            way a resume cannot honour (the message names the fields).
        RunFinished: `run_dir` holds a finished run of ``trainer.steps`` steps (nothing is redone).
        ValueError: no RL prompt is left after the held-out set took its rows (says which).
    """
    # Ray installs its own SIGTERM handler when it starts: StopRequest's must be set after it
    with cluster_session(cfg.cluster) as cluster, StopRequest() as stop:
        state = setup(cfg, run_dir, stop, overrides, cluster)
        policy = load_policy(state.ctx.model_path, cfg.trainer.device)
        if state.ckpt is None:
            start_policy(state, policy)
        build_learner(state, policy)
        del policy  # the learner owns it from here
        loop(state)
        return summarize(state)


def check_resume_config(ckpt: Checkpoint, cfg: RunConfig) -> None:
    """Log the config changes a resume allows; refuse the others, naming each field.

    Raises:
        CheckpointError: a field outside `RESUME_SAFE_FIELDS` changed.
    """
    allowed, refused = resume_changes(ckpt.config, flat_config(cfg))
    if refused:
        listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in refused.items())
        raise CheckpointError(
            f"cannot resume from {ckpt.path}: the config changed in fields a resumed run cannot honour: {listed}. "
            "Restore them to continue this run, or train with the new values in a new run directory "
            '(another hydra.run.dir). Which fields may change on a resume: README, "Resuming".'
        )
    for k, (old, new) in allowed.items():
        log.info("resume: %s changed from %r to %r", k, old, new)


def sft_exclusions(cfg: RunConfig, heldout: list[Problem], train: list[Problem]) -> list[str]:
    """Problem texts the cold start leaves out: the held-out set's, and the RL prompts' unless
    the cold start and RL share one source (``sft.source == data.train``: the cold start then
    trains on the solutions of the RL prompts themselves, as one file of your own would need)."""
    shared = cfg.sft.source == cfg.data.train
    return [p.problem for p in heldout] + ([] if shared else [p.problem for p in train])


class RunFinished(Exception):
    """The run directory holds a finished run (its last checkpoint is at ``trainer.steps`` and its
    summary.json is written): running its command again has nothing to do."""


def finished_run(ckpt: Checkpoint | None, run_dir: Path, steps: int) -> Path | None:
    """`run_dir`'s summary.json when the run there is finished: `ckpt` is its own checkpoint
    (not another run's), at `steps` or later, and the summary is written; else None."""
    summary = run_dir / "summary.json"
    own = ckpt is not None and ckpt.path.parent.parent.resolve() == run_dir.resolve()
    return summary if own and ckpt.step >= steps and summary.is_file() else None


def load_rl_prompts(cfg: RunConfig, heldout: list[Problem], ckpt: Checkpoint | None) -> list[Problem]:
    """The RL prompts of ``data.train``, without the held-out problems.

    Procedural data has one problem per prompt of the planned steps; a resumed run regenerates
    the set it started with (``trainer.steps`` may have changed since).

    Raises:
        FileNotFoundError, reasoner.data.BadRowError: see `reasoner.data.load_problems`.
        ValueError: no prompt is left once the held-out set's problems are taken out (the message
            says how many rows the held-out set took and how to leave some for training).
    """
    tr, d = cfg.trainer, cfg.data
    n_train = None
    if d.train in GENERATED:
        n_train = ckpt.state["prompt_stream"]["size"] if ckpt else max(tr.steps * tr.prompts_per_step, 1)
    seen = [p.problem for p in heldout]
    load = partial(
        load_problems,
        d.train,
        split=d.train_split,
        n=n_train,
        seed=tr.seed + 2 + d.train_seed,
        levels=list(d.arithmetic_levels),
        on_bad_row=d.on_bad_row.value,
    )
    train = load(exclude=seen)
    if not train:
        rows = len(load())
        raise ValueError(
            f"data.train={d.train}: no RL prompt is left: all {rows} of its problems are in the held-out set "
            f"(data.heldout={d.heldout}, the first data.heldout_n={d.heldout_n} of its shuffle, {len(heldout)} "
            f"problems), and held-out problems are never trained on. Give data.heldout a file of its own, or set "
            f'data.heldout_n below {rows} so the rest of the file is left for training (README, "Your own data").'
        )
    return train


def describe_data(cfg: RunConfig, n_train: int, n_heldout: int) -> None:
    """Log every data source the run uses; warn when ``data.train`` is the user's own but the
    held-out set or the cold start still come from the default arithmetic generator."""
    d, s = cfg.data, cfg.sft
    cold = f"cold start from sft.source={s.source}" if s.enabled else "no cold start (sft.enabled=false)"
    log.info(
        "data: %d RL prompts (data.train=%s), %d held-out (data.heldout=%s), %s",
        n_train,
        d.train,
        n_heldout,
        d.heldout,
        cold,
    )
    defaults = [f"data.heldout={d.heldout}"] if d.heldout == "arithmetic" else []
    defaults += [f"sft.source={s.source}"] if s.enabled and s.source == "arithmetic" else []
    if d.train != "arithmetic" and defaults:
        log.warning(
            "data.train is your own (%s) but %s still the default arithmetic generator: set %s to your data too "
            'if that is not what you want (README, "Your own data")',
            d.train,
            " and ".join(defaults) + (" are" if len(defaults) > 1 else " is"),
            " / ".join(x.split("=")[0] for x in defaults),
        )


def setup(
    cfg: RunConfig, run_dir: Path, stop: StopRequest, overrides: list[str] = (), cluster: RayCluster | None = None
) -> RLRun:
    """Find a checkpoint to resume and check the config against it, load the held-out set, the RL
    prompts and the cold start's source, build the verifier, resolve the model path and check the
    loggers (all before any model loads, so bad input fails in seconds), then write the run's
    record, open the run (`open_run`; its engines on `cluster` with ``cluster=ray``), build the
    reward and the sync probe; evaluate the base model on a new run.

    Raises:
        RunFinished, CheckpointError, ValueError: see `run`.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    began, tr = time.perf_counter(), cfg.trainer
    ckpt = find_resume_checkpoint(tr.resume, run_dir)
    if ckpt is not None:
        check_resume_config(ckpt, cfg)
    summary = finished_run(ckpt, run_dir, tr.steps)
    if summary is not None:
        raise RunFinished(
            f"{run_dir} holds a finished run of {ckpt.step} steps ({summary}); nothing was redone. To train it "
            f"further, raise trainer.steps above {ckpt.step}; to start again, use a new hydra.run.dir"
        )
    start = 0 if ckpt is None else ckpt.step
    results = ckpt.state["results"] if ckpt else {"evals": {}, "sft": None}
    heldout = load_heldout(cfg)
    train = load_rl_prompts(cfg, heldout, ckpt)
    if ckpt is None and cfg.sft.enabled:  # the cold start's source, checked before any model loads
        sft_rows(cfg, sft_exclusions(cfg, heldout, train))
    describe_data(cfg, len(train), len(heldout))
    verifier = build_verifier(cfg.reward.verifier)
    model_path = resolve_model_path(cfg.model.path)
    check_loggers(list(tr.loggers))
    save_config(cfg, run_dir, overrides)
    # a resumed vLLM engine cannot continue the old engine's sampling stream (README: "Resuming"):
    # seeding it with seed + step makes a resume from a given checkpoint repeatable
    evals = {k: EvalResult.from_dict(v) for k, v in results["evals"].items()}
    ctx = open_run(cfg, tr.seed + start, evals, heldout, verifier, model_path, cluster)
    r = cfg.rollout
    probe = make_probe(ctx.tokenizer, cfg.data.template, ctx.heldout[0], r.sync_check_follow) if r.sync_check else None
    reward = build_reward(cfg.reward, cfg.data.template, ctx.verifier)
    state = RLRun(cfg, run_dir, ctx, stop, start, ckpt, train, results, probe, reward, began, cluster)
    if ckpt is None and tr.eval_base:
        ctx.heldout_eval("base")
    return state


def start_policy(state: RLRun, policy: torch.nn.Module) -> None:
    """A new run: measure the sync probe's floor on the base `policy`, then the cold start (when
    ``sft.enabled``) and its held-out evaluation. Writes the cold-started weights to the engine."""
    cfg, ctx = state.cfg, state.ctx
    logprobs = partial(sequence_logprobs, policy)  # the sync check's learner side before the learner exists
    if state.probe is not None:
        state.probe = replace(state.probe, baseline=sync_drift(ctx.engine, logprobs, state.probe))
    if state.stop.signum is not None:
        raise TrainingInterrupted(state.stop.signum, 0, None)
    if cfg.sft.enabled:
        stats, cleaning = cold_start(cfg, ctx, policy, sft_exclusions(cfg, ctx.heldout, state.train))
        state.results["sft"] = {**vars(stats), "data": cleaning}
        if state.probe is not None:
            check_sync(ctx.engine, logprobs, state.probe, cfg.rollout.sync_check_tol)
        ctx.heldout_eval("after_sft")


def build_learner(state: RLRun, policy: torch.nn.Module) -> None:
    """The learner around `policy` (a reference copy when β > 0, a critic when the estimator
    needs one; with ``cluster=ray``, the sharded learner's ranks start from `policy`'s weights),
    the prompt stream, and on resume everything the checkpoint restores."""
    cfg, ctx, tr = state.cfg, state.ctx, state.cfg.trainer
    a, pad = cfg.algorithm, ctx.tokenizer.pad_token_id
    learner: LearnerAPI
    if state.cluster is None:
        ref, critic = companions(policy, a)
        learner = Learner(policy, a, tr, pad, cfg.rollout.temperature, cfg.length_budget, ref, critic)
    else:  # a new run's ranks read the (cold-started) policy from a file; a resumed run's, the checkpoint
        start = state.run_dir / "learner_start.safetensors"
        if state.ckpt is None:
            save_model(policy, str(start))
        spec = LearnerSpec(
            ctx.model_path,
            a,
            tr,
            pad,
            cfg.rollout.temperature,
            cfg.length_budget,
            cfg.cluster.collective_timeout_s,
            None if state.ckpt is not None else str(start),
            cfg.cluster.learner.keep_unsharded,
            cfg.rollout.sleep_during_update and cfg.cluster.colocate,
        )
        try:
            learner = state.cluster.learner(spec)
        finally:
            start.unlink(missing_ok=True)
    state.learner, state.prompts = learner, PromptStream(state.train, tr.seed)
    if state.ckpt is not None:
        state.ckpt.restore(learner, state.prompts)
        sync_weights(ctx.engine, learner)
        if state.probe is not None:  # the floor of this engine with the restored weights on both sides
            state.probe = replace(state.probe, baseline=sync_drift(ctx.engine, learner.sequence_logprobs, state.probe))
        log.info("resumed from %s: step %d of %d", state.ckpt.path, state.start_step, tr.steps)
        state.saved, state.saved_step = state.ckpt.path, state.start_step
        state.metrics = state.ckpt.state["metrics"]
    if state.probe is not None:
        r = cfg.rollout
        log.info(
            "sync check: probe drift before training %.4f nats/token (allowed increase %g), checked at the first "
            "sync and at steps that are multiples of %d",
            state.probe.baseline,
            r.sync_check_tol,
            r.sync_check_every,
        )


# ------------------------------------------------------------------ the loop and its hooks


def heldout_hook(run: RLRun, step: int, metrics: dict[str, Any]) -> None:
    """Every ``trainer.eval_every`` steps (not the last, which the final evaluation covers):
    held-out accuracy and format compliance into the step's metrics."""
    every, last = run.cfg.trainer.eval_every, run.cfg.trainer.steps
    if every and step % every == 0 and step < last:
        with run.engine_turn():
            mid = run.ctx.heldout_eval(f"step_{step}")
        run.ctx.heldout_eval.evals.pop(f"step_{step}")
        metrics["eval/heldout_accuracy"] = mid.accuracy.value
        metrics["eval/heldout_well_formed"] = mid.well_formed


class BenchmarkHook:
    """Every ``trainer.eval_every`` steps: the ``trainer.eval_benchmarks`` metrics (`PeriodicEval`)."""

    def __init__(self, cfg: RunConfig, ctx: RunContext) -> None:
        tr = cfg.trainer
        self.every = tr.eval_every
        self.evaluator = PeriodicEval(
            tr.eval_benchmarks,
            tr.eval_benchmark_problems,
            tr.eval_benchmark_samples,
            tr.eval_max_tokens,
            ctx.tokenizer,
            cfg.rollout.max_model_len,
        )
        self.active = bool(tr.eval_benchmarks)

    def __call__(self, run: RLRun, step: int, metrics: dict[str, Any]) -> None:
        if self.active and step % self.every == 0:
            with run.engine_turn():
                began = time.perf_counter()  # after the wait for the engine's batch in progress
                metrics.update(self.evaluator(run.ctx.engine))
            metrics["time/benchmark_eval"] = time.perf_counter() - began


class LogHook:
    """The step's metrics to every configured sink (``trainer.loggers``) and one line to the
    ``reasoner`` logger (the console and the run's train.log)."""

    def __init__(self, loggers: list[Logger]) -> None:
        self.loggers = loggers

    def __call__(self, run: RLRun, step: int, metrics: dict[str, Any]) -> None:
        for sink in self.loggers:
            sink.log(step, metrics)
        log.info(compact_line(step, metrics))


class VerifierFailed(RuntimeError):
    """The verifier failed on every sample of ``trainer.max_verifier_failures`` consecutive steps."""


class VerifierGuard:
    """Counts consecutive steps whose every verdict was a verifier error (not trained on, see
    `reasoner.rl_step.rl_step`) and stops the run after ``trainer.max_verifier_failures``.

    Raises (when called):
        VerifierFailed: naming the last intact checkpoint and how to resume.
    """

    def __init__(self) -> None:
        self.failures = 0

    def __call__(self, run: RLRun, step: int, metrics: dict[str, Any]) -> None:
        self.failures = self.failures + 1 if metrics["reward/verifier_failed"] else 0
        limit = run.cfg.trainer.max_verifier_failures
        if self.failures:
            log.warning("step %d: every verdict was a verifier error; the step was not trained on", step)
        if self.failures >= limit:
            last = (
                f"the last checkpoint, {run.saved} (step {run.saved_step}), is intact: fix the verifier and "
                "resume with trainer.resume=auto"
                if run.saved
                else "no checkpoint was written yet"
            )
            raise VerifierFailed(
                f"steps {step - self.failures + 1}-{step}: the verifier failed on every sample "
                f"(trainer.max_verifier_failures={limit}; its errors are in the log above). Nothing was trained "
                f"on in those steps; {last}"
            )


class CheckpointHook:
    """Checkpoints on the ``trainer.checkpoint_every`` cadence, after the last step and on a
    stop request; counts consecutive steps with skipped (non-finite) updates and stops the run
    after ``trainer.max_nonfinite_steps`` of them, with a checkpoint.

    Raises (when called):
        NonFiniteUpdateError: too many non-finite steps in a row (names the checkpoint).
    """

    def __init__(self, store: CheckpointStore) -> None:
        self.store, self.nonfinite = store, 0

    def __call__(self, run: RLRun, step: int, metrics: dict[str, Any]) -> None:
        tr = run.cfg.trainer
        skipped = metrics["policy/skipped_updates"]
        self.nonfinite = self.nonfinite + 1 if skipped else 0
        if self.nonfinite:
            log.warning(
                "step %d: %d optimizer step(s) skipped for a non-finite loss or gradient (%d such step(s) in a row)",
                step,
                skipped,
                self.nonfinite,
            )
        due = tr.checkpoint_every and step % tr.checkpoint_every == 0
        if due or step == tr.steps or run.stop.signum is not None or self.nonfinite >= tr.max_nonfinite_steps:
            save(run, self.store, step)
        if self.nonfinite >= tr.max_nonfinite_steps:
            raise NonFiniteUpdateError(
                f"steps {step - self.nonfinite + 1}-{step} all had a non-finite loss or gradient "
                f"(trainer.max_nonfinite_steps={tr.max_nonfinite_steps}); their updates were skipped, so "
                f"checkpoint {run.saved} holds the weights and optimizer state from before them (and the data "
                "position after them). Look for a learning rate too high or non-finite rewards."
            )


def save(run: RLRun, store: CheckpointStore, step: int) -> None:
    """Write the checkpoint of `step` (weights and optimizer through the learner, the prompt
    stream, the results so far, the step's metrics) and remember it as the last intact one."""
    run.results["evals"] = {k: asdict(v) for k, v in run.ctx.heldout_eval.evals.items()}
    run.saved = store.save(step, run.learner, run.prompts, run.cfg, run.results, run.metrics)
    run.saved_step = step


def loop(run: RLRun) -> None:
    """RL steps from the one after the start to ``trainer.steps``, each followed by the hooks
    (held-out and benchmark evaluation, logging, checkpoints and the non-finite guard).

    Raises:
        TrainingInterrupted: a stop request (after a checkpoint of the last finished step).
        RolloutEngineError, LearnerWorkerError: the engine or a learner rank failed (the message
            names the last intact checkpoint).
        NonFiniteUpdateError: see `CheckpointHook`.
        VerifierFailed: see `VerifierGuard`.
    """
    cfg, tr, ctx = run.cfg, run.cfg.trainer, run.ctx
    store = CheckpointStore(run.run_dir / "checkpoints", tr.keep_last, tr.best_metric, tr.best_mode)
    store.clean_partial()
    ckpt = run.ckpt
    other_run = ckpt is not None and ckpt.path.parent.parent.resolve() != run.run_dir.resolve()
    history = ckpt.path.parent.parent / "metrics.jsonl" if other_run else None
    loggers = make_loggers(list(tr.loggers), run.run_dir, run.start_step, history, flat_config(cfg))
    benchmarks = BenchmarkHook(cfg, ctx)
    hooks: list[AfterStep] = [heldout_hook, benchmarks, LogHook(loggers), CheckpointHook(store), VerifierGuard()]
    if ckpt is not None:
        ckpt.restore_rng()  # last: everything above may draw random numbers
    done = run.start_step
    bar = tqdm(
        range(run.start_step + 1, tr.steps + 1),
        desc=cfg.algorithm.name,
        unit="step",
        dynamic_ncols=True,
        initial=run.start_step,
        total=tr.steps,
    )
    ahead = rollouts_ahead(run)
    trim = step_trimmer(tr.heap_trim)
    cadence = SyncCheckCadence(cfg.rollout.sync_check_every)
    if ahead is not None:  # the evaluations wait for the engine's request in progress, if any
        run.engine_turn = ahead.engine_turn
    # log lines (the step lines among them) go around the progress bar, not through it
    with logging_redirect_tqdm(loggers=[logging.getLogger()]), bar, closing_ahead(ahead):
        for step in bar:
            if run.stop.signum is not None:
                break
            try:
                due = cadence.due(step)
                probe = run.probe if due else None
                if ahead is None:
                    result = rl_step(step, *step_args(run, probe))
                else:  # the checkpoint of this step saves the stream as it was after this batch's draws
                    args = (ctx.engine, run.learner, cfg.algorithm, cfg.rollout, probe)
                    result, run.prompts = ahead.train_step(step, *args)
                run.metrics = result.metrics()
                cadence.done(due, checked=not math.isnan(result.sync_drift))
                staleness = run.results.setdefault("staleness", {})
                staleness[str(result.staleness)] = staleness.get(str(result.staleness), 0) + 1
                for hook in hooks[:2]:  # the evaluations use the engine too
                    hook(run, step, run.metrics)
            except (RolloutEngineError, LearnerWorkerError) as err:
                last = (
                    f"the last checkpoint, {run.saved} (step {run.saved_step}), is intact: resume from it with "
                    "trainer.resume=auto"
                    if run.saved
                    else "no checkpoint was written yet"
                )
                raise type(err)(f"{err}\nRL step {step} did not finish; {last}") from err
            for hook in hooks[2:]:
                hook(run, step, run.metrics)
            done = step
            trim()
    if run.stop.signum is not None:
        if run.saved_step != done:
            save(run, store, done)
        raise TrainingInterrupted(run.stop.signum, done, run.saved)
    for sink in loggers:
        sink.close()
    benchmarks.evaluator.close()


def step_args(run: RLRun, probe: SyncProbe | None) -> tuple:
    """`rl_step`'s arguments after the step number, from the run; `probe`: the sync check's
    probe (None: this step is not checked)."""
    cfg, ctx = run.cfg, run.ctx
    return (
        run.prompts,
        ctx.tokenizer,
        cfg.data.template,
        ctx.engine,
        run.reward,
        run.learner,
        cfg.algorithm,
        cfg.rollout,
        cfg.trainer.prompts_per_step,
        probe,
        cfg.length_budget,
    )


def rollouts_ahead(run: RLRun) -> RolloutsAhead | None:
    """With ``rollout.max_staleness`` = k > 0, the producer sampling the run's remaining steps
    ahead of the learner (`reasoner.rollout.ahead`), started; else None (the synchronous loop)."""
    cfg, ctx, tr = run.cfg, run.ctx, run.cfg.trainer
    k = cfg.rollout.max_staleness
    if not k:
        return None

    def sample(step: int, version: int, prompts: PromptStream) -> Sampled:
        args = (ctx.tokenizer, cfg.data.template, ctx.engine, run.reward, cfg.algorithm, cfg.rollout)
        return sample_step(step, version, prompts, *args, tr.prompts_per_step, cfg.length_budget)

    log.info("asynchronous RL: rollouts run up to %d policy version(s) ahead of the learner", k)
    return RolloutsAhead(sample, run.prompts, run.start_step + 1, tr.steps, run.start_step, k)


@contextmanager
def closing_ahead(ahead: RolloutsAhead | None) -> Iterator[None]:
    """Stop the producer when the loop ends, however it ends."""
    try:
        yield
    finally:
        if ahead is not None:
            ahead.close()


def summarize(run: RLRun) -> dict:
    """Export the final policy (``trainer.save_checkpoint``), free the learner, evaluate the
    held-out set after RL, write and print ``summary.json``; return it."""
    cfg, ctx = run.cfg, run.ctx
    if cfg.trainer.save_checkpoint:
        run.learner.export_pretrained(run.run_dir / "checkpoint", ctx.tokenizer)
    if run.cluster is not None:
        run.learner.close()  # the ranks' actors and their memory
    run.learner = None  # the optimizer state (2x the fp32 weights) is not needed past the last step
    release_free_heap()
    ctx.heldout_eval("after_rl")
    ctx.verifier.close()
    if ctx.environment is not None:
        ctx.environment.close()
    evals = ctx.heldout_eval.evals
    summary: dict = {f"heldout_{k}": v.accuracy.value for k, v in evals.items()}
    summary["heldout_n"] = len(ctx.heldout)
    summary["heldout"] = {k: v.as_dict() for k, v in evals.items()}
    if "after_sft" in evals and "after_rl" in evals:
        before, after = evals["after_sft"], evals["after_rl"]
        summary["rl_gain"] = after.accuracy.value - before.accuracy.value
        summary["rl_gain_ci95_paired"] = list(paired_diff_interval(before.per_problem, after.per_problem))
        summary["rl_gain_ci95_unpaired"] = list(diff_interval(before.accuracy, after.accuracy))
    summary["sft"] = run.results["sft"]
    summary["sync_probe_baseline"] = None if run.probe is None else run.probe.baseline
    summary["steps"] = cfg.trainer.steps
    summary["resumed_from_step"] = None if run.ckpt is None else run.start_step
    summary["max_staleness"] = cfg.rollout.max_staleness
    summary["staleness_histogram"] = run.results.get("staleness", {})  # steps by staleness, the run's whole
    summary["last_checkpoint"] = None if run.saved is None else str(run.saved)
    summary["algorithm"] = cfg.algorithm.name
    summary["wall_seconds"] = time.perf_counter() - run.began
    summary.update(peak_rss_gb())
    (run.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print_summary(summary)
    return summary


def print_summary(summary: dict) -> None:
    """Log the held-out figures with their 95% intervals, the RL gain, wall time and peak memory
    (the console and the run's train.log)."""
    lines = ["held-out accuracy (n=%d, greedy, Wilson 95%% interval)" % summary["heldout_n"]]
    for name, e in summary["heldout"].items():
        lines.append(
            f"  {name:<10} {100 * e['accuracy']:5.1f}%  [{100 * e['ci_low']:.1f}, {100 * e['ci_high']:.1f}]  "
            f"mean length {e['mean_len']:.1f} tokens"
        )
    if "rl_gain" in summary:
        plo, phi = summary["rl_gain_ci95_paired"]
        ulo, uhi = summary["rl_gain_ci95_unpaired"]
        lines.append(
            f"  RL gain ({summary['algorithm']}) over cold start: {100 * summary['rl_gain']:+.1f} points, "
            f"95% interval [{100 * plo:+.1f}, {100 * phi:+.1f}] paired (same problems), "
            f"[{100 * ulo:+.1f}, {100 * uhi:+.1f}] unpaired"
        )
    lines.append(f"  wall {summary['wall_seconds'] / 60:.1f} min, peak RSS {summary['peak_rss_gb']:.2f} GB")
    log.info("\n".join(lines))


def run_main(cfg: RunConfig, run_dir: Path, command: list[str], overrides: list[str] = ()) -> None:
    """`reasoner.jobs.rl.run`; when a signal stops it, print how to resume (`command`) and exit
    with status 128 + the signal number; a finished run is reported, not redone (exit 0)."""
    try:
        run(cfg, run_dir, overrides)
    except RunFinished as finished:
        print(finished, file=sys.stderr, flush=True)
    except TrainingInterrupted as stopped:
        print(f"{stopped}\nresume with: {' '.join(shlex.quote(a) for a in command)}", file=sys.stderr, flush=True)
        sys.exit(128 + stopped.signum)
