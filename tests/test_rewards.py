"""Reward terms: each sees (problem, prompt text, completion); the reward is their weighted sum;
a term from the config (``reward.terms``) is built by its ``_target_``; without a correctness
term dynamic sampling keeps the groups whose rewards vary."""

import torch

from reasoner.config import RewardConfig
from reasoner.learner import UpdateStats
from reasoner.prompts import Template
from reasoner.rewards import Reward, TermScores, VerifierTerm, build_reward
from reasoner.rl_step import StepResult, informative_groups
from reasoner.types import Completion, Problem, PromptBatch, RolloutBatch
from verifiers.base import VerifyResult


class ExactVerifier:
    def verify_batch(self, pairs):
        return [VerifyResult(t == g, float(t == g), t, "scripted") for t, g in pairs]


class PromptEcho:
    """Scores 1 when the completion repeats a word of its prompt, and records what it saw."""

    name = "echo"

    def __init__(self, bonus: float = 1.0) -> None:
        self.bonus, self.seen = bonus, []

    def __call__(self, problems, prompts, completions):
        self.seen.append((list(problems), list(prompts), list(completions)))
        return TermScores(torch.tensor([self.bonus * (c.text in p.split()) for p, c in zip(prompts, completions)]))


def _rollouts():
    problems = [Problem("a", "two plus two", "4"), Problem("b", "one plus one", "2")]
    prompts = PromptBatch(problems, [[1, 2], [3, 4]], ["say two", "say one"])
    texts = [["4", "two"], ["one", "one"]]
    return RolloutBatch(prompts, [[Completion([5], t, [-1.0], "stop") for t in group] for group in texts])


def test_terms_see_the_prompt_and_add_up_by_weight():
    echo = PromptEcho()
    scored = Reward([(1.0, VerifierTerm(ExactVerifier())), (0.5, echo)])(_rollouts())
    problems, prompts, completions = echo.seen[0]
    assert [p.id for p in problems] == ["a", "a", "b", "b"] and prompts == ["say two"] * 2 + ["say one"] * 2
    assert [c.text for c in completions] == ["4", "two", "one", "one"]
    # correct: [1, 0 | 0, 0]; echo: [0, 1 | 1, 1]
    assert scored.rewards.tolist() == [[1.0, 0.5], [0.5, 0.5]]
    assert scored.correct.tolist() == [[True, False], [False, False]]
    assert scored.terms["echo"].tolist() == [[0.0, 1.0], [1.0, 1.0]]
    assert [v.reason for v in scored.verdicts[0]] == ["scripted", "scripted"]


def test_a_configured_term_is_built_by_its_target():
    node = {"_target_": f"{__name__}.PromptEcho", "weight": 0.25, "bonus": 2.0}
    reward = build_reward(RewardConfig(format_weight=0.1, terms=[node]), Template.plain, ExactVerifier())
    weights = [(w, type(t).__name__) for w, t in reward.terms]
    assert weights == [(1.0, "VerifierTerm"), (0.1, "FormatTerm"), (0.25, "PromptEcho")]
    assert reward.terms[2][1].bonus == 2.0


def test_without_a_correctness_term_groups_with_varied_rewards_are_kept():
    scored = Reward([(1.0, PromptEcho())])(_rollouts())
    assert scored.correct is None and informative_groups(scored) == [0]  # group b is all 1s
    result = StepResult(1, scored, [0], 1, {}, UpdateStats.skipped(), float("nan"), {"step": 1.0})
    metrics = result.metrics()
    assert metrics["reward/echo"] == 0.75 and metrics["reward/accuracy"] != metrics["reward/accuracy"]  # NaN
