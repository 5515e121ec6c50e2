"""``reasoner-train``: cold-start SFT, then RL (GRPO by default; ``algorithm=`` picks another) with
vLLM rollouts and verified rewards.

    reasoner-train                       # the embedded default (SmolLM2-135M, arithmetic)
    reasoner-train rollout.backend=hf trainer.steps=5
    reasoner-train algorithm=dapo        # or dr_grpo, gspo, rloo, reinforce_pp, ppo
    reasoner-train model.path=/path/to/hf_model data.train=vendored:gsm8k_train data.heldout=vendored:gsm8k_test

Run directory (Hydra's output dir): ``.hydra/`` (resolved config), ``metrics.jsonl``,
``tensorboard/``, ``checkpoints/`` (resumable, `reasoner.checkpoint`), ``checkpoint/`` (the
final policy: safetensors + tokenizer, loadable by vLLM and transformers), ``summary.json``.
Held-out accuracy is measured three times: base model, after the cold start, after RL.

    reasoner-train hydra.run.dir=outputs/DATE/TIME      # continue that run (trainer.resume=auto)
"""

from __future__ import annotations

import copy
import json
import logging
import shlex
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm
from transformers import AutoModelForCausalLM

from eval.metrics import diff_interval, paired_diff_interval
from eval.runner import PeriodicEval
from reasoner.checkpoint import Checkpoint, CheckpointError, CheckpointStore, find_resume_checkpoint
from reasoner.config import (
    CONF_DIR,
    RESUME_SAFE_FIELDS,
    Estimator,
    RunConfig,
    flat_config,
    register_configs,
    resume_changes,
)
from reasoner.critic import ValueModel
from reasoner.data import load_problems, prompt_ids, target_text
from reasoner.evaluate import EvalResult
from reasoner.interrupt import StopRequest, TrainingInterrupted
from reasoner.job import HeldoutEval, export_policy, load_heldout, peak_rss_gb, release_free_heap, setup_process
from reasoner.learner import Learner, NonFiniteUpdateError
from reasoner.metrics_log import MetricsLogger, compact_line
from reasoner.models import load_tokenizer, resolve_model_path
from reasoner.rl_step import PromptSampler, SyncProbe, rl_step
from reasoner.rollout import RolloutEngineError, make_engine
from reasoner.rollout.base import check_sync, sync_drift, sync_weights
from reasoner.sft import load_sft_problems, run_sft
from verifiers.registry import build_verifier

log = logging.getLogger("reasoner")


def _probe(tokenizer, cfg: RunConfig, problem) -> SyncProbe:
    """A fixed prompt + completion (the held-out problem's target text) for the sync check."""
    prompt = prompt_ids(tokenizer, problem.problem, cfg.data.template)
    text = (
        target_text(problem, cfg.data.template)
        if problem.solution
        else f"The final answer is \\boxed{{{problem.answer}}}."
    )
    completion = tokenizer(text + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    return SyncProbe(prompt + list(completion), len(prompt))


def run(cfg: RunConfig, run_dir: Path) -> dict:
    """Run the whole job described by `cfg`, writing outputs under `run_dir`; return the summary.

    Continues from a checkpoint when ``trainer.resume`` finds one (`reasoner.checkpoint`): the
    weights, optimizer, data position, RNG streams and results so far are restored, and the
    run goes on from the next step as if it had not stopped. SIGTERM / SIGINT stop it at the next
    step boundary with a checkpoint (a second signal ends it at once).

    Raises:
        TrainingInterrupted: a signal stopped the run (after writing a checkpoint).
        NonFiniteUpdateError: ``trainer.max_nonfinite_steps`` consecutive steps had a
            non-finite loss or gradient (their updates were skipped; a checkpoint is written).
        RolloutEngineError: the rollout engine failed; no checkpoint is written after it.
        CheckpointError: ``trainer.resume`` names no usable checkpoint, or the config changed in a
            way a resume cannot honour (the message names the fields).
    """
    with StopRequest() as stop:
        return _run(cfg, run_dir, stop)


def _check_resume_config(ckpt: Checkpoint, cfg: RunConfig) -> None:
    """Log the config changes a resume allows; refuse the others, naming each field."""
    allowed, refused = resume_changes(ckpt.config, flat_config(cfg))
    if refused:
        listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in refused.items())
        raise CheckpointError(
            f"cannot resume from {ckpt.path}: the config changed in fields a resumed run cannot honour: {listed}. "
            f"Restore them, or start a new run (a new hydra.run.dir, or trainer.resume=never). "
            f"Fields that may change on resume: {', '.join(sorted(RESUME_SAFE_FIELDS))}"
        )
    for k, (old, new) in allowed.items():
        log.info("resume: %s changed from %r to %r", k, old, new)


def _run(cfg: RunConfig, run_dir: Path, stop: StopRequest) -> dict:
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tr = cfg.trainer
    ckpt = find_resume_checkpoint(tr.resume, run_dir)
    if ckpt is not None:
        _check_resume_config(ckpt, cfg)
    start = 0 if ckpt is None else ckpt.step
    setup_process(tr)

    model_path = resolve_model_path(cfg.model.path)
    tokenizer = load_tokenizer(model_path)
    d = cfg.data
    levels = list(d.arithmetic_levels)
    heldout = load_heldout(cfg)
    seen = [p.problem for p in heldout]
    # procedural data: one problem per prompt of the planned steps; a resumed run regenerates the
    # set it started with (trainer.steps may have changed since)
    n_train = (
        (ckpt.state["sampler"]["size"] if ckpt else max(tr.steps * tr.prompts_per_step, 1))
        if d.train == "arithmetic"
        else None
    )
    train = load_problems(
        d.train,
        split=d.train_split,
        n=n_train,
        seed=tr.seed + 2 + d.train_seed,
        levels=levels,
        exclude=seen,
        on_bad_row=d.on_bad_row.value,
    )
    log.info("data: %d RL prompts (%s), %d held-out (%s)", len(train), d.train, len(heldout), d.heldout)

    benchmarks = PeriodicEval(
        tr.eval_benchmarks,
        tr.eval_benchmark_problems,
        tr.eval_benchmark_samples,
        tr.eval_max_tokens,
        tokenizer,
        cfg.rollout.max_model_len,
    )
    # a resumed vLLM engine cannot continue the old engine's sampling stream (README: "Resuming"):
    # seeding it with seed + step makes a resume from a given checkpoint repeatable
    engine = make_engine(cfg.rollout.backend, model_path, cfg.rollout, tr.seed + start)
    verifier = build_verifier(cfg.reward.verifier)
    results = ckpt.state["results"] if ckpt else {"evals": {}, "sft": None}
    heldout_eval = HeldoutEval(
        cfg, engine, tokenizer, heldout, verifier, {k: EvalResult.from_dict(v) for k, v in results["evals"].items()}
    )
    evals = heldout_eval.evals

    if ckpt is None and tr.eval_base:
        heldout_eval("base")
    policy = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    probe = _probe(tokenizer, cfg, heldout[0]) if cfg.rollout.sync_check else None
    if ckpt is None:
        if probe is not None:
            probe = replace(probe, baseline=sync_drift(engine, policy, probe.token_ids, probe.prompt_len))
        if stop.signum is not None:
            raise TrainingInterrupted(stop.signum, 0, None)
        if cfg.sft.enabled:
            sft_problems, cleaning = load_sft_problems(cfg, heldout, exclude=seen + [p.problem for p in train])
            sft_stats = run_sft(policy, tokenizer, sft_problems, d.template, cfg.sft, tr.bf16_autocast, tr.seed)
            log.info("cold start: %s", sft_stats)
            results["sft"] = {**vars(sft_stats), "data": cleaning}
            release_free_heap()
            sync_weights(engine, policy)
            if probe is not None:
                check_sync(
                    engine, policy, probe.token_ids, probe.prompt_len, cfg.rollout.sync_check_tol, probe.baseline
                )
            heldout_eval("after_sft")

    ref = None
    if cfg.algorithm.kl_beta > 0:
        ref = copy.deepcopy(policy).eval().requires_grad_(False)
    critic = ValueModel(policy) if cfg.algorithm.estimator is Estimator.gae else None
    learner = Learner(
        policy, cfg.algorithm, tr, tokenizer.pad_token_id, cfg.rollout.temperature, cfg.rollout.max_tokens, ref, critic
    )
    sampler = PromptSampler(train, tr.seed)
    if ckpt is not None:
        ckpt.restore(learner, sampler)
        sync_weights(engine, policy)
        if probe is not None:  # the floor of this engine with the restored weights on both sides
            probe = replace(probe, baseline=sync_drift(engine, policy, probe.token_ids, probe.prompt_len))
        log.info("resumed from %s: step %d of %d", ckpt.path, start, tr.steps)
    if probe is not None:
        log.info(
            "sync check: probe drift before training %.4f nats/token (allowed increase %g)",
            probe.baseline,
            cfg.rollout.sync_check_tol,
        )

    store = CheckpointStore(run_dir / "checkpoints", tr.keep_last, tr.best_metric, tr.best_mode)
    store.clean_partial()
    other_run = ckpt is not None and ckpt.path.parent.parent.resolve() != run_dir.resolve()
    logger = MetricsLogger(run_dir, start, history=ckpt.path.parent.parent / "metrics.jsonl" if other_run else None)
    if ckpt is not None:
        ckpt.restore_rng()  # last: everything above may draw random numbers
    saved, saved_step = (ckpt.path, start) if ckpt else (None, None)
    metrics: dict = ckpt.state["metrics"] if ckpt else {}
    done, nonfinite = start, 0

    def save(step: int) -> Path:
        results["evals"] = {k: asdict(v) for k, v in evals.items()}
        return store.save(step, learner, sampler, cfg, results, metrics)

    bar = tqdm(
        range(start + 1, tr.steps + 1),
        desc=cfg.algorithm.name,
        unit="step",
        dynamic_ncols=True,
        initial=start,
        total=tr.steps,
    )
    for step in bar:
        if stop.signum is not None:
            break
        try:
            metrics = rl_step(sampler, engine, verifier, learner, tokenizer, cfg, probe, step)
            if tr.eval_every and step % tr.eval_every == 0 and step < tr.steps:
                heldout_eval(f"step_{step}")
                mid = evals.pop(f"step_{step}")
                metrics["eval/heldout_accuracy"] = mid.accuracy.value
                metrics["eval/heldout_well_formed"] = mid.well_formed
            if tr.eval_benchmarks and step % tr.eval_every == 0:
                t0 = time.perf_counter()
                metrics.update(benchmarks(engine))
                metrics["time/benchmark_eval"] = time.perf_counter() - t0
        except RolloutEngineError as err:
            last = (
                f"the last checkpoint, {saved} (step {saved_step}), is intact: resume from it with trainer.resume=auto"
                if saved
                else "no checkpoint was written yet"
            )
            raise RolloutEngineError(f"{err}\nRL step {step} did not finish; {last}") from err
        logger.log(step, metrics)
        tqdm.write(compact_line(step, metrics))
        done = step
        nonfinite = nonfinite + 1 if metrics["policy/skipped_updates"] else 0
        if nonfinite:
            log.warning(
                "step %d: %d optimizer step(s) skipped for a non-finite loss or gradient (%d such step(s) in a row)",
                step,
                metrics["policy/skipped_updates"],
                nonfinite,
            )
        if (
            (tr.checkpoint_every and step % tr.checkpoint_every == 0)
            or step == tr.steps
            or stop.signum is not None
            or nonfinite >= tr.max_nonfinite_steps
        ):
            saved, saved_step = save(step), step
        if nonfinite >= tr.max_nonfinite_steps:
            raise NonFiniteUpdateError(
                f"steps {step - nonfinite + 1}-{step} all had a non-finite loss or gradient (trainer.max_nonfinite_steps={tr.max_nonfinite_steps}); "
                f"their updates were skipped, so checkpoint {saved} holds the weights and optimizer state from before them "
                "(and the data position after them). Look for a learning rate too high or non-finite rewards."
            )
        if not tr.reuse_heap:
            release_free_heap()
    if stop.signum is not None:
        if saved_step != done:
            saved = save(done)
        raise TrainingInterrupted(stop.signum, done, saved)
    logger.close()
    del learner  # the optimizer state (2x the fp32 weights) is not needed past the last step
    release_free_heap()
    heldout_eval("after_rl")

    if tr.save_checkpoint:
        export_policy(policy, tokenizer, run_dir / "checkpoint")
    verifier.close()
    benchmarks.close()

    summary: dict = {f"heldout_{k}": v.accuracy.value for k, v in evals.items()}
    summary["heldout_n"] = len(heldout)
    summary["heldout"] = {k: v.as_dict() for k, v in evals.items()}
    if "after_sft" in evals and "after_rl" in evals:
        before, after = evals["after_sft"], evals["after_rl"]
        summary["rl_gain"] = after.accuracy.value - before.accuracy.value
        summary["rl_gain_ci95_paired"] = list(paired_diff_interval(before.per_problem, after.per_problem))
        summary["rl_gain_ci95_unpaired"] = list(diff_interval(before.accuracy, after.accuracy))
    summary["sft"] = results["sft"]
    summary["sync_probe_baseline"] = None if probe is None else probe.baseline
    summary["steps"] = tr.steps
    summary["resumed_from_step"] = None if ckpt is None else start
    summary["last_checkpoint"] = None if saved is None else str(saved)
    summary["algorithm"] = cfg.algorithm.name
    summary["wall_seconds"] = time.perf_counter() - t0
    summary.update(peak_rss_gb())
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print_summary(summary)
    return summary


def print_summary(summary: dict) -> None:
    """The three held-out figures with their 95% intervals."""
    print("\nheld-out accuracy (n=%d, greedy, Wilson 95%% interval)" % summary["heldout_n"])
    for name, e in summary["heldout"].items():
        print(
            f"  {name:<10} {100 * e['accuracy']:5.1f}%  [{100 * e['ci_low']:.1f}, {100 * e['ci_high']:.1f}]  mean length {e['mean_len']:.1f} tokens"
        )
    if "rl_gain" in summary:
        plo, phi = summary["rl_gain_ci95_paired"]
        ulo, uhi = summary["rl_gain_ci95_unpaired"]
        print(
            f"  RL gain ({summary['algorithm']}) over cold start: {100 * summary['rl_gain']:+.1f} points, 95% interval "
            f"[{100 * plo:+.1f}, {100 * phi:+.1f}] paired (same problems), [{100 * ulo:+.1f}, {100 * uhi:+.1f}] unpaired"
        )
    print(f"  wall {summary['wall_seconds'] / 60:.1f} min, peak RSS {summary['peak_rss_gb']:.2f} GB")


def to_run_config(cfg: DictConfig) -> RunConfig:
    """Merged Hydra config -> validated `RunConfig` (runs `__post_init__` checks)."""
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


register_configs()


def run_main(cfg: RunConfig, run_dir: Path, command: list[str]) -> None:
    """`run`; when a signal stops it, print how to resume (`command`) and exit with status
    128 + the signal number."""
    try:
        run(cfg, run_dir)
    except TrainingInterrupted as stopped:
        print(f"{stopped}\nresume with: {' '.join(shlex.quote(a) for a in command)}", file=sys.stderr, flush=True)
        sys.exit(128 + stopped.signum)


@hydra.main(version_base=None, config_path=CONF_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    kept = [o for o in hc.overrides.task if not o.startswith(("hydra.run.dir=", "trainer.resume="))]
    run_cfg = to_run_config(cfg)
    if not run_cfg.recipe.stages:
        run_main(run_cfg, run_dir, ["reasoner-train", *kept, f"hydra.run.dir={run_dir}"])
        return
    from reasoner.recipe import RecipeError, run_recipe

    try:
        run_recipe(run_cfg, run_dir)
    except RecipeError as err:
        command = " ".join(shlex.quote(a) for a in ["reasoner-train", *kept, f"hydra.run.dir={run_dir}"])
        print(f"{err}\nresume with: {command}", file=sys.stderr, flush=True)
        sys.exit(err.returncode or 1)


def main() -> None:
    """Console entry point (vLLM spawns workers: this must run under ``__main__``)."""
    _hydra_main()


if __name__ == "__main__":
    main()
