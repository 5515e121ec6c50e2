"""One RL step, top to bottom; every phase is one timed call:

    generate    the engine samples G completions for each of B prompts
    reward      the weighted reward terms, then the length terms (`reasoner.rewards`)
    filter      DAPO dynamic sampling: keep groups with mixed correctness, refill (loops back)
    logprobs    the learner's no-gradient pass: old / reference log-probs, critic values
    advantages  the registered estimator (`reasoner.algorithms.registry`)
    update      the learner's optimizer steps
    sync        the new weights into the engine, and the log-prob check (`reasoner.rollout.sync`)

The step talks to the learner only through `reasoner.learner.LearnerAPI`, and returns a
`StepResult` whose metric names are the phases' (``time/<phase>``) and the records'.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

import torch

from reasoner.algorithms.registry import AdvantageInput
from reasoner.algorithms.registry import get as get_algorithm
from reasoner.config import AlgorithmConfig, KLPlacement, RolloutConfig
from reasoner.data.stream import PromptStream
from reasoner.learner import COUNTS, LearnerAPI, UpdateStats
from reasoner.prompts import Template, prompt_ids
from reasoner.rewards import Reward, add_length_terms, policy_lengths
from reasoner.rollout.base import RolloutEngine, asleep
from reasoner.rollout.sync import SyncProbe, check_sync, sync_weights
from reasoner.types import Completion, PromptBatch, RolloutBatch, Rows, ScoredBatch, TrainBatch

PHASES = ("generate", "reward", "filter", "logprobs", "advantages", "update", "sync")


class Timer:
    """Wall-clock seconds per phase of `PHASES` (repeated phases add up); the step's metrics
    ``time/<phase>`` are these names.

    Raises (when called):
        ValueError: a name that is not a phase.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if name not in PHASES:
            raise ValueError(f"unknown step phase {name!r}; phases: {', '.join(PHASES)}")
        begin = time.perf_counter()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - begin


@dataclass
class StepResult:
    """What one RL step did.

    Attributes:
        step: the step number (1-based).
        scored: everything generated and scored in the step (every dynamic-sampling round).
        kept: indices (into ``scored``'s prompts) of the groups trained on.
        rounds: generation rounds run.
        length_metrics: the mean of each length term added (``reward/...``).
        stats: the update's figures (`UpdateStats.skipped` when nothing was trained on).
        sync_drift: the sync check's log-prob drift (nats/token); NaN when not checked.
        verifier_failed: every verdict of the step was a verifier error, so nothing was
            trained on (the rewards are not the model's).
        seconds: wall seconds per phase (`PHASES`); ``step`` for the whole step (with rollouts
            ahead of the learner: from the wait for its batch to its sync); ``learner_idle``, the
            learner's wait for the step's batch; ``engine_idle``, the rollout side's wait
            before it began the batch (`Sampled.engine_idle`; synchronous: the learner's phases).
        staleness: policy versions between the batch's sampler and the weights it is trained
            from (0 synchronous; at most ``rollout.max_staleness``).
    """

    step: int
    scored: ScoredBatch
    kept: list[int]
    rounds: int
    length_metrics: dict[str, float]
    stats: UpdateStats
    sync_drift: float
    seconds: dict[str, float] = field(default_factory=dict)
    verifier_failed: bool = False
    staleness: int = 0

    def metrics(self) -> dict[str, Any]:
        """Flat metrics: ``reward/``, ``response/``, ``groups/`` over every completion of the step;
        ``policy/`` over the groups trained on (NaN when none); ``sync/``; ``time/<phase>``;
        ``data/problem_ids`` (the ids of the problems drawn, in order: the only non-number)."""
        s, stats = self.scored, self.stats
        completions = s.rollouts.completions
        lengths = policy_lengths(s).float().reshape(-1)
        verdicts = [v for row in s.verdicts for v in row]
        correct = s.correct if s.correct is not None else torch.full(s.rewards.shape, float("nan"))
        policy = {k: float(v) for k, v in vars(stats).items() if k not in COUNTS}
        return {
            "reward/mean": float(s.rewards.mean()),
            "reward/accuracy": float(correct.float().mean()),
            **{f"reward/{name}": float(v.mean()) for name, v in s.terms.items() if name != "correct"},
            "reward/verify_timeouts": float(sum(v.reason == "timeout" for v in verdicts)),
            "reward/verify_errors": float(sum(v.reason.startswith("error") for v in verdicts)),
            "reward/verifier_failed": float(self.verifier_failed),
            **self.length_metrics,
            "response/sampled": float(lengths.numel()),
            "response/len_mean": float(lengths.mean()),
            "response/len_max": float(lengths.max()),
            "response/truncated_frac": sum(c.truncated for g in completions for c in g) / lengths.numel(),
            "groups/zero_var_frac": float((s.rewards.std(dim=1) == 0).float().mean()),
            "groups/trained": float(len(self.kept)),
            "groups/sampling_rounds": float(self.rounds),
            **{f"policy/{k}": v for k, v in policy.items()},
            "policy/optimizer_steps": float(stats.optimizer_steps),
            "policy/skipped_updates": float(stats.skipped_steps),
            "policy/empty_steps": float(stats.empty_steps),
            "policy/zero_adv_sequences": float(stats.zero_adv_sequences),
            "sync/logprob_diff": self.sync_drift,
            "rollout/staleness": float(self.staleness),
            **{f"time/{k}": v for k, v in self.seconds.items()},
            "perf/tokens_per_s": float(lengths.sum()) / self.seconds["step"],
            "data/problem_ids": [p.id for p in s.rollouts.prompts.problems],
            **episode_metrics([c for g in completions for c in g]),
        }


def episode_metrics(completions: list[Completion]) -> dict[str, float]:
    """``episode/`` metrics of multi-turn rollouts (`reasoner.types.Episode`), means per episode:
    turns, tool calls, the share that called a tool, failed calls (``tool_errors``, with
    ``tool_timeouts`` among them), seconds in tools, tokens of tool messages (not trained on) and
    of the model; calls per tool (``episode/calls/<tool>``); the share ended by each cause
    (``episode/ended/<answer|max_turns|budget>``). Empty for single-turn rollouts."""
    eps = [c.episode for c in completions if c.episode is not None]
    if not eps:
        return {}
    n = len(eps)
    calls = [call for e in eps for call in e.calls]
    out = {
        "episode/turns": sum(e.turns for e in eps) / n,
        "episode/tool_calls": len(calls) / n,
        "episode/tool_use_frac": sum(bool(e.calls) for e in eps) / n,
        "episode/tool_errors": sum(c.error is not None for c in calls) / n,
        "episode/tool_timeouts": sum(c.error == "timeout" for c in calls) / n,
        "episode/tool_seconds": sum(c.seconds for c in calls) / n,
        "episode/tool_tokens": sum(len(c.token_ids) - c.policy_tokens for c in completions if c.episode) / n,
        "episode/model_tokens": sum(c.policy_tokens for c in completions if c.episode) / n,
    }
    for tool in sorted({c.tool for c in calls}):
        out[f"episode/calls/{tool or 'unreadable'}"] = sum(c.tool == tool for c in calls) / n
    for cause in ("answer", "max_turns", "budget"):
        out[f"episode/ended/{cause}"] = sum(e.ended == cause for e in eps) / n
    return out


def render_prompts(tokenizer: Any, problems: list, template: Template, tools: str = "") -> PromptBatch:
    """The problems' chat-templated prompts, as token ids and as text (`reasoner.prompts.prompt_ids`;
    `tools`: the environment's instructions)."""
    ids = [prompt_ids(tokenizer, p.problem, template, tools) for p in problems]
    return PromptBatch(problems, ids, [tokenizer.decode(x) for x in ids])


def generate(engine: RolloutEngine, prompts: PromptBatch, group_size: int, r: RolloutConfig) -> RolloutBatch:
    """G = `group_size` completions of each prompt at the rollout temperature, top-p and budget."""
    return RolloutBatch(prompts, engine.generate(prompts.prompt_ids, group_size, r.temperature, r.top_p, r.max_tokens))


def informative_groups(scored: ScoredBatch) -> list[int]:
    """Indices of the groups dynamic sampling keeps (DAPO §3.3): mixed correctness
    (0 < correct < G), or, without a correctness term, rewards that are not all equal."""
    if scored.correct is not None:
        n, g = scored.correct.sum(dim=1), scored.correct.shape[1]
        return [i for i in range(len(n)) if 0 < n[i] < g]
    return [i for i in range(scored.rewards.shape[0]) if scored.rewards[i].std() > 0]


def to_train_batch(scored: ScoredBatch) -> TrainBatch:
    """Flatten (B, G) groups into N = B*G sequences (group-major) with their rewards and loss masks."""
    seqs, plens, sampler, truncated, masks = [], [], [], [], []
    for prompt, group in zip(scored.rollouts.prompts.prompt_ids, scored.rollouts.completions):
        for c in group:
            seqs.append(prompt + c.token_ids)
            plens.append(len(prompt))
            sampler.append(c.logprobs)
            truncated.append(c.truncated)
            masks.append(c.loss_mask)
    rewards = scored.rewards.reshape(-1)
    return TrainBatch(seqs, plens, rewards, scored.rewards.shape[1], sampler, truncated, masks)


def _pad_rows(rows: Rows) -> torch.Tensor:
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)


def kl_reward_rows(batch: TrainBatch, algo: AlgorithmConfig) -> Rows | None:
    """Per-token KL estimates (``algorithm.kl.estimator``) of the old policy against the
    reference, when the KL is a per-token reward (``algorithm.kl.placement=reward``, β > 0) and
    the batch has both log-probs; else None."""
    if algo.kl.beta == 0 or algo.kl.placement is not KLPlacement.reward or batch.ref_logp is None:
        return None
    kl = get_algorithm("kl", algo.kl.estimator).fn
    return [kl(o, r) for o, r in zip(batch.old_logp, batch.ref_logp)]


def estimate_advantages(batch: TrainBatch, algo: AlgorithmConfig, kl_coef: float) -> TrainBatch:
    """The batch with ``advantages`` (and ``returns``, for a critic) from the registered
    estimator ``algorithm.estimator``, over each sequence's policy tokens.

    Args:
        batch: a scored batch (`LearnerAPI.score`): values filled when the estimator needs them,
            old and reference log-probs when the KL is a per-token reward (`kl_reward_rows`).
        algo: the algorithm config (the estimator reads its hyperparameters).
        kl_coef: β now (`LearnerAPI.kl_coef`).
    """
    kl = kl_reward_rows(batch, algo)
    lengths = torch.tensor(batch.policy_lengths)
    mask = torch.arange(max(int(lengths.max()), 1)) < lengths[:, None]  # (N, T)
    width = mask.shape[1]

    def padded(rows: Rows | None) -> torch.Tensor | None:
        if rows is None:
            return None
        x = _pad_rows(rows)
        return torch.nn.functional.pad(x, (0, width - x.shape[1]))

    x = AdvantageInput(batch.rewards, batch.group_size, mask, padded(batch.values), padded(kl), kl_coef)
    adv, returns = get_algorithm("advantage", algo.estimator).fn(x, algo)

    def split(t: torch.Tensor) -> Rows:
        return [t[i, : int(n)].float() for i, n in enumerate(lengths)]

    return replace(batch, advantages=split(adv), returns=None if returns is None else split(returns))


def sample_groups(
    step: int,
    prompts: PromptStream,
    b: int,
    tokenizer: Any,
    template: Template,
    engine: RolloutEngine,
    reward: Reward,
    algo: AlgorithmConfig,
    rollout: RolloutConfig,
    t: Timer,
    length_budget: int | None = None,
) -> tuple[ScoredBatch, list[int], int, dict[str, float]]:
    """The generate, reward and filter phases of step `step`, timed in `t`, for B = `b` prompts.
    The length terms measure against `length_budget` (``RunConfig.length_budget``; None:
    ``rollout.max_tokens``).

    Without dynamic sampling one round is generated and every group kept. With it (DAPO §3.3),
    only informative groups are kept (`informative_groups`), and another B prompts are drawn
    while fewer than B are kept, for at most ``algorithm.sampling.max_rounds`` rounds (then the
    batch is trained on as it is, maybe smaller, maybe empty). The length terms are added last,
    to every round.

    Returns:
        (everything generated and scored, indices of the groups kept (at most B), rounds run,
        the mean of each length term).
    """
    rounds: list[ScoredBatch] = []
    kept: list[int] = []
    while True:
        with t("generate"):
            tools = getattr(engine, "instructions", "")  # an `reasoner.envs.episodes.EpisodeEngine`'s
            batch_prompts = render_prompts(tokenizer, prompts.next_batch(b), template, tools)
            rollouts = generate(engine, batch_prompts, algo.sampling.group_size, rollout)
        with t("reward"):
            rounds.append(reward(rollouts))
        with t("filter"):
            offset = b * (len(rounds) - 1)
            kept += [offset + i for i in (informative_groups(rounds[-1]) if algo.sampling.dynamic else range(b))]
        if not algo.sampling.dynamic or len(kept) >= b or len(rounds) == algo.sampling.max_rounds:
            break
    with t("reward"):
        scored = ScoredBatch.cat(rounds) if len(rounds) > 1 else rounds[0]
        budget = rollout.max_tokens if length_budget is None else length_budget
        scored, length_metrics = add_length_terms(scored, algo.shaping, budget, step)
    return scored, kept[:b], len(rounds), length_metrics


@dataclass
class Sampled:
    """The rollout side's part of one RL step (`sample_step`): what the learner trains on.

    Attributes:
        step: the step it is for (1-based).
        scored, kept, rounds, length_metrics: as `sample_groups` returns them.
        seconds: wall seconds of its phases (generate, reward, filter).
        version: the policy version the engine sampled it with (the number of updates its weights
            had; every group of the batch comes from this one version).
        engine_idle: seconds the rollout side waited before it began this batch: for new weights
            (the staleness bound) and for the engine (a sync or an evaluation in progress).
    """

    step: int
    scored: ScoredBatch
    kept: list[int]
    rounds: int
    length_metrics: dict[str, float]
    seconds: dict[str, float]
    version: int
    engine_idle: float = 0.0


def sample_step(
    step: int,
    version: int,
    prompts: PromptStream,
    tokenizer: Any,
    template: Template,
    engine: RolloutEngine,
    reward: Reward,
    algo: AlgorithmConfig,
    rollout: RolloutConfig,
    prompts_per_step: int,
    length_budget: int | None = None,
) -> Sampled:
    """The generate, reward and filter phases of step `step` (`sample_groups`), timed, with the
    engine holding policy version `version`."""
    t = Timer()
    args = (tokenizer, template, engine, reward, algo, rollout, t, length_budget)
    out = sample_groups(step, prompts, prompts_per_step, *args)
    return Sampled(step, *out, seconds=t.seconds, version=version)


def learn_step(
    sampled: Sampled,
    engine: RolloutEngine,
    learner: LearnerAPI,
    algo: AlgorithmConfig,
    rollout: RolloutConfig,
    probe: SyncProbe | None,
    engine_turn: Callable[[], AbstractContextManager] = nullcontext,
) -> StepResult:
    """The learner's part of step ``sampled.step``: score, advantages, update, then the sync of
    the new weights into the engine (and, when `probe` is given, its check) inside `engine_turn` (with rollouts ahead of
    the learner, `reasoner.rollout.ahead.RolloutsAhead.engine_turn`: between the engine's
    requests). The step's ``time/`` metrics are the sampled phases' and these.

    When no group is kept (`sample_groups`), or every verdict is a verifier error (a dead
    verifier scores every sample 0: those are not the model's rewards), the learner's phases and
    the sync are skipped and the policy figures are NaN. The sync is also skipped when the
    update took no optimizer step (every one skipped for a non-finite loss or gradient): the
    engine already has the weights. (A mini-batch whose advantages are all 0 still steps, on a
    zero gradient: `reasoner.learner.UpdateStats`.)

    Raises:
        reasoner.rollout.RolloutEngineError: the engine failed.
        reasoner.rollout.sync.WeightSyncError: the engine does not run the trained weights.
    """
    t = Timer()
    scored, kept = sampled.scored, sampled.kept
    stats, drift = UpdateStats.skipped(), float("nan")
    failed = all(v.reason.startswith("error") for row in scored.verdicts for v in row)
    if kept and not failed:
        batch = to_train_batch(scored.take(kept))
        with asleep(engine):  # rollout.sleep_during_update: the learner gets the engine's GPU memory
            with t("logprobs"):
                batch = learner.score(batch)
            with t("advantages"):
                batch = estimate_advantages(batch, algo, learner.kl_coef)
            with t("update"):
                stats = learner.update(batch)
    if stats.optimizer_steps:  # else the weights are the engine's already
        with t("sync"), engine_turn():
            sync_weights(engine, learner)
            if probe is not None:
                drift = check_sync(engine, learner.sequence_logprobs, probe, rollout.sync_check_tol)
    seconds = {**sampled.seconds, **t.seconds}
    return StepResult(
        sampled.step,
        scored,
        kept,
        sampled.rounds,
        sampled.length_metrics,
        stats,
        drift,
        seconds,
        failed,
        staleness=sampled.step - 1 - sampled.version,
    )


def rl_step(
    step: int,
    prompts: PromptStream,
    tokenizer: Any,
    template: Template,
    engine: RolloutEngine,
    reward: Reward,
    learner: LearnerAPI,
    algo: AlgorithmConfig,
    rollout: RolloutConfig,
    prompts_per_step: int,
    probe: SyncProbe | None,
    length_budget: int | None = None,
) -> StepResult:
    """Run RL step `step` (1-based) synchronously, phase by phase (module docstring): sample
    with the weights of the step before (`sample_step`), then learn (`learn_step`, which says
    what is skipped when); `length_budget`: as `sample_groups`'s. The learner waits while the
    engine samples and the engine while the learner learns (``time/learner_idle``,
    ``time/engine_idle``).

    Raises:
        reasoner.rollout.RolloutEngineError: the engine failed.
        reasoner.rollout.sync.WeightSyncError: the engine does not run the trained weights.
    """
    begin = time.perf_counter()
    args = (tokenizer, template, engine, reward, algo, rollout, prompts_per_step, length_budget)
    sampled = sample_step(step, step - 1, prompts, *args)
    result = learn_step(sampled, engine, learner, algo, rollout, probe)
    s = result.seconds
    s["learner_idle"] = sum(s.get(k, 0.0) for k in ("generate", "reward", "filter"))
    s["engine_idle"] = sum(s.get(k, 0.0) for k in ("logprobs", "advantages", "update"))
    s["step"] = time.perf_counter() - begin
    return result
