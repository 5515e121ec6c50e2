"""Typed records that cross stage boundaries in one RL step.

Shape notation used across reasoner:
    B: prompts in the step; G: completions per prompt (the group); N = B*G: sequences;
    P: prompt tokens; T: completion tokens; L = P + T; V: vocabulary size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch

from verifiers.base import VerifyResult


@dataclass(frozen=True)
class Problem:
    """One dataset row: a problem with its reference answer (and optional worked solution).

    ``answer`` is whatever the reward's verifier compares against: the gold answer for math,
    the tests (``{"tests": ..., "entry_point": ...}`` JSON, see `reasoner.data`) for code.
    ``meta`` holds optional row fields (level, subject, source; entry_point for code).
    """

    id: str
    problem: str
    answer: str
    solution: str | None = None
    meta: dict = field(default_factory=dict)


@dataclass
class PromptBatch:
    """B problems, their chat-templated prompt token ids (B lists of P_i ints) and the same
    prompts as text (what reward terms see)."""

    problems: list[Problem]
    prompt_ids: list[list[int]]
    texts: list[str] = field(default_factory=list)


@dataclass
class ToolCallRecord:
    """One tool call of an episode: the tool (``""``: none could be read), its error class (None,
    or `reasoner.envs.base.ToolOutput.error`), and wall seconds."""

    tool: str
    error: str | None
    seconds: float


@dataclass
class Episode:
    """How a multi-turn rollout went (`reasoner.envs.episodes`).

    Attributes:
        turns: model turns.
        calls: the tool calls run, in order.
        ended: ``answer`` (a turn without a tool call), ``max_turns`` (a call in the last turn,
            not run), ``budget`` (``env.max_episode_tokens``, the context or a turn's cap ran out).
    The whole episode as text, tool messages included, is the decoding of its completion's
    ``token_ids`` with special tokens kept.
    """

    turns: int
    calls: list[ToolCallRecord]
    ended: str


@dataclass
class Completion:
    """One sampled completion.

    Attributes:
        token_ids: T_i completion token ids (EOS included when the model stopped).
        text: decoded completion (special tokens skipped); of an episode, the model's own turns
            only (what the reward reads: a tool's output cannot hold the answer).
        logprobs: sampler log-probabilities (nats) of the tokens the policy generated, one per
            1 in `loss_mask`, or empty.
        finish_reason: ``"stop"`` (EOS / stop string) or ``"length"`` (hit max_tokens).
        loss_mask: T_i flags, 1 for a token the policy sampled, 0 for one it did not (a tool's
            output inside a multi-turn episode): only 1s are trained on, scored for the KL and
            counted as response length. All ones when not given.
        episode: how a multi-turn episode went (`Episode`); None for a single completion.

    Raises:
        ValueError: `loss_mask` and `token_ids` differ in length.
    """

    token_ids: list[int]
    text: str
    logprobs: list[float]
    finish_reason: str
    loss_mask: list[int] | None = None
    episode: Episode | None = None

    def __post_init__(self) -> None:
        if self.loss_mask is None:
            self.loss_mask = [1] * len(self.token_ids)
        elif len(self.loss_mask) != len(self.token_ids):
            raise ValueError(f"loss_mask has {len(self.loss_mask)} flags for {len(self.token_ids)} tokens")

    @property
    def policy_tokens(self) -> int:
        """Tokens the policy generated (the 1s of `loss_mask`)."""
        return sum(self.loss_mask)

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@dataclass
class RolloutBatch:
    """B prompts with G completions each: ``completions[b][g]``."""

    prompts: PromptBatch
    completions: list[list[Completion]]


@dataclass
class ScoredBatch:
    """A rollout batch with its verdicts and rewards.

    Attributes:
        rollouts: the sampled batch.
        verdicts: ``verdicts[b][g]``, the correctness verifier's result.
        rewards: (B, G) float32 rewards (the weighted terms, then the length terms).
        correct: (B, G) bool, from the correctness term; None when no term judges correctness
            (dynamic sampling then keeps groups whose rewards vary).
        terms: each term's unweighted (B, G) values, by term name (for the metrics).
    """

    rollouts: RolloutBatch
    verdicts: list[list[VerifyResult]]
    rewards: torch.Tensor
    correct: torch.Tensor | None
    terms: dict[str, torch.Tensor] = field(default_factory=dict)

    def take(self, groups: list[int]) -> ScoredBatch:
        """The sub-batch of the given prompt indices (their whole groups)."""
        r = self.rollouts
        p = r.prompts
        texts = [p.texts[i] for i in groups] if p.texts else []
        prompts = PromptBatch([p.problems[i] for i in groups], [p.prompt_ids[i] for i in groups], texts)
        rollouts = RolloutBatch(prompts, [r.completions[i] for i in groups])
        correct = None if self.correct is None else self.correct[groups]
        terms = {k: v[groups] for k, v in self.terms.items()}
        return ScoredBatch(rollouts, [self.verdicts[i] for i in groups], self.rewards[groups], correct, terms)

    @staticmethod
    def cat(batches: list[ScoredBatch]) -> ScoredBatch:
        """Concatenate batches along the prompt axis (same G)."""
        prompts = PromptBatch(
            [p for b in batches for p in b.rollouts.prompts.problems],
            [p for b in batches for p in b.rollouts.prompts.prompt_ids],
            [t for b in batches for t in b.rollouts.prompts.texts],
        )
        rollouts = RolloutBatch(prompts, [g for b in batches for g in b.rollouts.completions])
        return ScoredBatch(
            rollouts,
            [v for b in batches for v in b.verdicts],
            torch.cat([b.rewards for b in batches]),
            None if batches[0].correct is None else torch.cat([b.correct for b in batches]),
            {k: torch.cat([b.terms[k] for b in batches]) for k in batches[0].terms},
        )


Rows = list[torch.Tensor]  # one 1-D float tensor per sequence, over its policy tokens


@dataclass
class TrainBatch:
    """N = B*G sequences ready for the learner (unpadded; the learner pads per micro-batch),
    group-major: sequence b*G + g is completion g of prompt b. Per-token quantities are `Rows`
    over each sequence's policy tokens (the 1s of its loss mask), in order.

    Attributes:
        sequences: N lists of L_i token ids (prompt then completion).
        prompt_lens: N prompt lengths P_i, in tokens.
        rewards: (N,) float32 outcome rewards.
        group_size: G.
        sampler_logprobs: N lists of the sampler's log-probs of the policy tokens (mismatch
            metric and truncated IS), maybe empty.
        truncated: N flags, True where the completion hit the token budget.
        loss_masks: N lists of T_i flags over the completion tokens (`Completion.loss_mask`).
        old_logp, ref_logp, values: filled by `Learner.score` when the algorithm needs them:
            the log-probs under the policy before the update and under the reference (nats),
            the critic's values.
        advantages, returns: filled by the advantage phase (returns: the critic's targets).
    """

    sequences: list[list[int]]
    prompt_lens: list[int]
    rewards: torch.Tensor
    group_size: int
    sampler_logprobs: list[list[float]]
    truncated: list[bool]
    loss_masks: list[list[int]] = field(default_factory=list)
    old_logp: Rows | None = None
    ref_logp: Rows | None = None
    values: Rows | None = None
    advantages: Rows | None = None
    returns: Rows | None = None

    def __post_init__(self) -> None:
        if not self.loss_masks:
            self.loss_masks = [[1] * n for n in self.completion_lengths]

    def __len__(self) -> int:
        return len(self.sequences)

    @cached_property
    def completion_lengths(self) -> list[int]:
        """T_i, completion tokens of each sequence (computed once: the learner indexes it per row)."""
        return [len(s) - p for s, p in zip(self.sequences, self.prompt_lens)]

    @cached_property
    def policy_lengths(self) -> list[int]:
        """Policy tokens of each sequence (the 1s of its loss mask): the tokens trained on
        (computed once)."""
        return [sum(m) for m in self.loss_masks]
