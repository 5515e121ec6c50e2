"""The reward of a rollout batch: a weighted sum of terms, then the algorithm's length terms.

    reward_i = Σ_k w_k · term_k(problem_i, prompt_i, completion_i)
               + R_overlong(|y_i|)                        (DAPO Eq. 13, algorithm.shaping.overlong_buffer)
               + length_weight · len_reward_i             (Kimi k1.5 §2.3.3, after the warm-up)

Terms (`RewardTerm`): the correctness verifier's score (`VerifierTerm`: 1/0 for math, the fraction
of tests passed for code with ``scoring=fraction``), the format check (`FormatTerm`), and any term
configured in ``reward.terms`` (a learned reward model, an LLM judge). A term that judges
correctness reports it; dynamic sampling and the k1.5 length reward read it. |y_i| counts the
tokens the policy generated (`Completion.loss_mask`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Protocol, Sequence

import torch

from reasoner.algorithms.length import kimi_length_reward, soft_overlong_punishment
from reasoner.config import RewardConfig, ShapingConfig
from reasoner.prompts import Template
from reasoner.types import Completion, Problem, RolloutBatch, ScoredBatch
from verifiers.base import Verifier, VerifyResult
from verifiers.format import verify_format

log = logging.getLogger(__name__)


@dataclass
class TermScores:
    """One term's verdict on N samples.

    Attributes:
        values: (N,) float32, the term's unweighted value per sample.
        correct: (N,) bool when the term judges correctness (a verifier), else None.
        verdicts: the verifier's N results, when the term is one, else None.
    """

    values: torch.Tensor
    correct: torch.Tensor | None = None
    verdicts: list[VerifyResult] | None = None


class RewardTerm(Protocol):
    """A reward term: ``name`` (its metric is ``reward/<name>``) and a call on N samples, the i-th
    being (``problems[i]``, ``prompts[i]``: the chat-templated prompt text, ``completions[i]``),
    returning `TermScores`. Runs in the trainer's process; a slow term batches its own work."""

    name: str

    def __call__(
        self, problems: Sequence[Problem], prompts: Sequence[str], completions: Sequence[Completion]
    ) -> TermScores: ...


def verify_guarded(verifier: Verifier, pairs: Sequence[tuple[str, str]]) -> list[VerifyResult]:
    """``verifier.verify_batch(pairs)``, surviving a verifier that raises: the pairs are then
    verified one at a time, and each pair whose call raises gets
    ``VerifyResult(False, 0.0, None, "error: <type>: <message>")`` (score 0; the trainer counts
    these as ``reward/verify_errors``, with the verdicts a verifier itself reports as errors)."""
    try:
        return verifier.verify_batch(pairs)
    except Exception as err:
        log.warning(
            "verifier %s raised on a batch of %d (%s: %s); verifying one at a time",
            type(verifier).__name__,
            len(pairs),
            type(err).__name__,
            err,
        )
    results = []
    for pair in pairs:
        try:
            results += verifier.verify_batch([pair])
        except Exception as err:
            results.append(VerifyResult(False, 0.0, None, f"error: {type(err).__name__}: {err}"[:500]))
    return results


class VerifierTerm:
    """Correctness from a verifier (`verify_guarded`, in the verifier's worker pool): the value
    is `VerifyResult.score`, against the problem's reference answer."""

    name = "correct"

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier

    def __call__(
        self, problems: Sequence[Problem], prompts: Sequence[str], completions: Sequence[Completion]
    ) -> TermScores:
        verdicts = verify_guarded(self.verifier, [(c.text, p.answer) for p, c in zip(problems, completions)])
        values = torch.tensor([v.score for v in verdicts], dtype=torch.float32)
        return TermScores(values, torch.tensor([v.correct for v in verdicts], dtype=torch.bool), verdicts)


class FormatTerm:
    """1 when the completion has the template's shape (`verifiers.format.verify_format`: a final
    boxed answer; with ``r1`` a think block first), else 0."""

    name = "format"

    def __init__(self, template: Template) -> None:
        self.template = template

    def __call__(
        self, problems: Sequence[Problem], prompts: Sequence[str], completions: Sequence[Completion]
    ) -> TermScores:
        scores = [verify_format(c.text, self.template.value).score for c in completions]
        return TermScores(torch.tensor(scores, dtype=torch.float32))


class Reward:
    """The weighted terms of a run; calling it scores a rollout batch.

    Args:
        terms: (weight, term) pairs; at most one term may judge correctness.
    """

    def __init__(self, terms: Sequence[tuple[float, RewardTerm]]) -> None:
        self.terms = list(terms)

    def __call__(self, rollouts: RolloutBatch) -> ScoredBatch:
        """Score every completion with every term; (B, G) rewards, correctness and verdicts.

        Raises:
            ValueError: a term returned the wrong number of values, or two judge correctness.
        """
        b, g = len(rollouts.completions), len(rollouts.completions[0])
        prompts = rollouts.prompts
        problems = [p for p in prompts.problems for _ in range(g)]
        texts = [t for t in (prompts.texts or [""] * b) for _ in range(g)]
        completions = [c for group in rollouts.completions for c in group]
        rewards = torch.zeros(b * g)
        correct, verdicts, values = None, None, {}
        for weight, term in self.terms:
            scores = term(problems, texts, completions)
            if scores.values.shape != (b * g,):
                raise ValueError(f"reward term {term.name!r} returned {tuple(scores.values.shape)} values for {b * g}")
            if scores.correct is not None:
                if correct is not None:
                    raise ValueError(f"reward term {term.name!r} is a second correctness term")
                correct, verdicts = scores.correct.reshape(b, g), scores.verdicts
            rewards += weight * scores.values.float()
            values[term.name] = scores.values.float().reshape(b, g)
        unjudged = VerifyResult(False, 0.0, None, "not verified")
        rows = verdicts or [unjudged] * (b * g)
        grouped = [rows[i : i + g] for i in range(0, b * g, g)]
        return ScoredBatch(rollouts, grouped, rewards.reshape(b, g), correct, values)


def build_reward(cfg: RewardConfig, template: Template, verifier: Verifier) -> Reward:
    """The run's `Reward`: the verifier's correctness term (``reward.correct_weight``), the format
    term when ``reward.format_weight`` is set, then every ``reward.terms`` node (its ``weight``
    key, the rest its constructor's ``_target_`` and arguments).

    Raises:
        hydra.errors.InstantiationException: a term's ``_target_`` cannot be built (named).
    """
    terms: list[tuple[float, RewardTerm]] = [(cfg.correct_weight, VerifierTerm(verifier))]
    if cfg.format_weight:
        terms.append((cfg.format_weight, FormatTerm(template)))
    if cfg.terms:
        from hydra.utils import instantiate

        for node in cfg.terms:
            node = dict(node)
            weight = float(node.pop("weight"))
            terms.append((weight, instantiate(node)))
    return Reward(terms)


def policy_lengths(scored: ScoredBatch) -> torch.Tensor:
    """(B, G) tokens the policy generated per completion (`Completion.policy_tokens`)."""
    return torch.tensor([[c.policy_tokens for c in group] for group in scored.rollouts.completions])


def add_length_terms(
    scored: ScoredBatch, shaping: ShapingConfig, max_tokens: int, step: int
) -> tuple[ScoredBatch, dict[str, float]]:
    """Add DAPO's soft overlong punishment (L_max = `max_tokens`) and, from RL step
    ``length_warmup + 1`` on, the weighted Kimi k1.5 length reward (which needs a correctness
    term); each is off at 0. Returns the re-scored batch and the mean of each term added.

    Raises:
        ValueError: the k1.5 length reward is on and no term judges correctness.
    """
    lengths = policy_lengths(scored)
    rewards, metrics = scored.rewards, {}
    if shaping.overlong_buffer:
        penalty = soft_overlong_punishment(lengths, max_tokens, shaping.overlong_buffer)
        rewards = rewards + penalty
        metrics["reward/overlong_penalty"] = float(penalty.mean())
    if shaping.length_weight and step > shaping.length_warmup:
        if scored.correct is None:
            raise ValueError("algorithm.shaping.length_weight needs a reward term that judges correctness")
        bonus = kimi_length_reward(lengths, scored.correct)
        rewards = rewards + shaping.length_weight * bonus
        metrics["reward/length_reward"] = float(bonus.mean())
    return replace(scored, rewards=rewards), metrics
