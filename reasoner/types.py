"""Typed records that cross stage boundaries in one RL step.

Shape notation used across reasoner:
    B: prompts in the step; G: completions per prompt (the group); N = B*G: sequences;
    P: prompt tokens; T: completion tokens; L = P + T; V: vocabulary size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    """B problems and their chat-templated prompt token ids (B lists of P_i ints)."""

    problems: list[Problem]
    prompt_ids: list[list[int]]


@dataclass
class Completion:
    """One sampled completion.

    Attributes:
        token_ids: T_i completion token ids (EOS included when the model stopped).
        text: decoded completion (special tokens skipped).
        logprobs: T_i sampler log-probabilities of the sampled tokens (nats), or empty.
        finish_reason: ``"stop"`` (EOS / stop string) or ``"length"`` (hit max_tokens).
    """

    token_ids: list[int]
    text: str
    logprobs: list[float]
    finish_reason: str

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
        rewards: (B, G) float32 shaped rewards (correctness + format terms).
        correct: (B, G) bool.
    """

    rollouts: RolloutBatch
    verdicts: list[list[VerifyResult]]
    rewards: torch.Tensor
    correct: torch.Tensor

    def take(self, groups: list[int]) -> ScoredBatch:
        """The sub-batch of the given prompt indices (their whole groups)."""
        r = self.rollouts
        prompts = PromptBatch([r.prompts.problems[i] for i in groups], [r.prompts.prompt_ids[i] for i in groups])
        rollouts = RolloutBatch(prompts, [r.completions[i] for i in groups])
        return ScoredBatch(rollouts, [self.verdicts[i] for i in groups], self.rewards[groups], self.correct[groups])

    @staticmethod
    def cat(batches: list[ScoredBatch]) -> ScoredBatch:
        """Concatenate batches along the prompt axis (same G)."""
        prompts = PromptBatch(
            [p for b in batches for p in b.rollouts.prompts.problems],
            [p for b in batches for p in b.rollouts.prompts.prompt_ids],
        )
        rollouts = RolloutBatch(prompts, [g for b in batches for g in b.rollouts.completions])
        return ScoredBatch(
            rollouts,
            [v for b in batches for v in b.verdicts],
            torch.cat([b.rewards for b in batches]),
            torch.cat([b.correct for b in batches]),
        )


@dataclass
class TrainBatch:
    """N = B*G sequences ready for the learner (unpadded; the learner pads per micro-batch),
    group-major: sequence b*G + g is completion g of prompt b.

    Attributes:
        sequences: N lists of L_i token ids (prompt then completion).
        prompt_lens: N prompt lengths P_i, in tokens.
        rewards: (N,) float32 shaped outcome rewards (advantages are computed by the learner).
        group_size: G.
        sampler_logprobs: N lists of T_i sampler log-probs (mismatch metric and truncated IS),
            maybe empty.
        truncated: N flags, True where the completion hit the token budget.
    """

    sequences: list[list[int]]
    prompt_lens: list[int]
    rewards: torch.Tensor
    group_size: int
    sampler_logprobs: list[list[float]]
    truncated: list[bool]

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def completion_lengths(self) -> list[int]:
        return [len(s) - p for s, p in zip(self.sequences, self.prompt_lens)]
