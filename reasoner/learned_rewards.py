"""Reward terms that are models: a learned reward model (`RewardModelTerm`) and an LLM judge
(`JudgeTerm`). Each is a `reasoner.rewards.RewardTerm`, configured in ``reward.terms``:

    reward.terms='[{_target_: reasoner.learned_rewards.RewardModelTerm, weight: 1.0, path: outputs/rm/model}]'
    reward.correct_weight=0      # the verifier still grades every sample: reward/accuracy is logged

Both run in the trainer's process, on its device (the CPU here), without gradient, in batches.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from reasoner.data.preferences import prompt_text, sequence_ids
from reasoner.reward_model import load_reward_model, read_template, score_batches
from reasoner.rewards import TermScores
from reasoner.types import Completion, Problem

log = logging.getLogger(__name__)

NORMALIZE = ("none", "group", "running")


class RewardModelTerm:
    """Scores from a Bradley-Terry reward model (`reasoner.reward_model`, an exported HF directory
    with its tokenizer): the model reads the chat-templated prompt, the completion and the
    end-of-turn token (`reasoner.data.preferences.sequence_ids`, as in its training). The prompt is
    rendered with the reward model's own tokenizer and the template it was trained with (its
    ``reward_model.json``, written by ``reasoner-rm``), whatever the policy's; a reward model
    without that card gets the policy's chat-templated prompt text.

    Normalization of the raw scores r:
        none:    r (GRPO divides each group's advantages by its std, so a scale does not matter
                 there; it does with other estimators, a KL in the reward or other weighted terms)
        group:   (r - mean_g) / (std_g + 1e-6) within each group (consecutive samples of one prompt)
        running: (r - μ) / (σ + 1e-6) with μ, σ the running moments of every score seen so far,
                 this batch's included (Chan et al.'s parallel update), as OpenRLHF's
                 ``normalize_reward``; so the term's scale is comparable to a verifier's.

    Args:
        path: the reward model's directory.
        normalize: one of ``none``, ``group``, ``running``.
        batch_size: sequences per forward pass.
        bf16: bf16 autocast (where it is fast, `reasoner.logprobs.autocast`).
        name: the term's name (its metric: ``reward/<name>``, the normalized value).
    Raises:
        ValueError: an unknown `normalize`.
        OSError: `path` holds no model transformers can load.
        ValueError: `path` holds a causal LM, not a trained reward model (`load_reward_model`).
    """

    def __init__(
        self, path: str, normalize: str = "none", batch_size: int = 16, bf16: bool = True, name: str = "rm"
    ) -> None:
        if normalize not in NORMALIZE:
            raise ValueError(f"RewardModelTerm normalize={normalize!r}; known: {', '.join(NORMALIZE)}")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = load_reward_model(path, self.tokenizer.pad_token_id)
        self.template = read_template(path)
        self.normalize, self.batch_size, self.bf16, self.name = normalize, batch_size, bf16, name
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def raw_scores(
        self, problems: Sequence[Problem], prompts: Sequence[str], completions: Sequence[Completion]
    ) -> torch.Tensor:
        """(N,) float32 raw reward-model scores of the samples (the arguments of a `RewardTerm` call)."""
        if self.template is not None:
            prompts = [prompt_text(self.tokenizer, p.problem, self.template) for p in problems]
        seqs = [sequence_ids(self.tokenizer, p, c.text)[0] for p, c in zip(prompts, completions)]
        return score_batches(self.model, seqs, self.tokenizer.pad_token_id, self.batch_size, self.bf16)

    def __call__(
        self, problems: Sequence[Problem], prompts: Sequence[str], completions: Sequence[Completion]
    ) -> TermScores:
        r = self.raw_scores(problems, prompts, completions)
        if self.normalize == "group":
            return TermScores(group_normalize(r, prompts))
        if self.normalize == "running":
            self.count, self.mean, self.m2 = merge_moments(self.count, self.mean, self.m2, r.double())
            std = math.sqrt(self.m2 / self.count) if self.count > 1 else 1.0
            return TermScores(((r - self.mean) / (std + 1e-6)).float())
        return TermScores(r)


def group_normalize(r: torch.Tensor, keys: Sequence[str]) -> torch.Tensor:
    """(r - mean) / (std + 1e-6) within each run of consecutive equal `keys` (a group); population
    std; a group of one gets 0. Shapes: r (N,), N keys."""
    out = torch.zeros_like(r)
    start = 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            g = r[start:i]
            out[start:i] = (g - g.mean()) / (g.std(unbiased=False) + 1e-6)
            start = i
    return out


def merge_moments(count: int, mean: float, m2: float, x: torch.Tensor) -> tuple[int, float, float]:
    """Running (count, mean, M2 = Σ (x - mean)²) after adding the values `x` (Chan, Golub and
    LeVeque 1979, the pairwise update); the variance is M2 / count."""
    n = x.numel()
    if n == 0:
        return count, mean, m2
    b_mean = float(x.mean())
    b_m2 = float(((x - b_mean) ** 2).sum())
    total = count + n
    delta = b_mean - mean
    return total, mean + delta * n / total, m2 + b_m2 + delta**2 * count * n / total


DEFAULT_JUDGE_PROMPT = (
    "Here is a math problem and a proposed solution.\n\nProblem: {problem}\n\nProposed solution: {completion}\n\n"
    "Is the proposed solution's final answer correct? Answer with one word: yes or no."
)


class JudgeTerm:
    """An LLM judge (a generative reward): a causal LM is asked, through its chat template, a
    question built from `prompt` (``{problem}``, ``{completion}`` and ``{answer}``, the reference,
    are filled in), answers greedily in at most `max_new_tokens` tokens, and the first ``yes`` /
    ``no`` (case-insensitive, whole word) of its answer is the verdict: 1.0 for yes, 0.0 for no
    or no verdict. ``unparsed`` counts answers with no verdict (each batch logs how many).

    The judge is only as good as its model: the embedded SmolLM2-135M's verdicts on arithmetic
    are weak (README, "Preference learning"); the term is the interface for a strong judge.

    Args:
        path: the judge model (an HF directory).
        prompt: the question's template.
        max_new_tokens: the answer's budget, in tokens.
        batch_size: questions per `generate` call.
        name: the term's name.
    """

    def __init__(
        self,
        path: str,
        prompt: str = DEFAULT_JUDGE_PROMPT,
        max_new_tokens: int = 8,
        batch_size: int = 16,
        name: str = "judge",
    ) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        self.prompt, self.max_new_tokens, self.batch_size, self.name = prompt, max_new_tokens, batch_size, name
        self.unparsed = 0

    def answers(self, questions: Sequence[str]) -> list[str]:
        """The judge's greedy answers to `questions` (user messages), decoded."""
        out = []
        for i in range(0, len(questions), self.batch_size):
            texts = [
                self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False
                )
                for q in questions[i : i + self.batch_size]
            ]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                gen = self.model.generate(
                    **enc,
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            out += self.tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        return out

    def __call__(
        self, problems: Sequence[Problem], prompts: Sequence[str], completions: Sequence[Completion]
    ) -> TermScores:
        questions = [
            self.prompt.format(problem=p.problem, completion=c.text, answer=p.answer)
            for p, c in zip(problems, completions)
        ]
        verdicts = [parse_verdict(a) for a in self.answers(questions)]
        missing = sum(v is None for v in verdicts)
        if missing:
            self.unparsed += missing
            log.info("judge %s: %d of %d answers had no yes/no verdict (scored 0)", self.name, missing, len(verdicts))
        return TermScores(torch.tensor([1.0 if v else 0.0 for v in verdicts], dtype=torch.float32))


def parse_verdict(answer: str) -> bool | None:
    """True / False for the first whole-word ``yes`` / ``no`` of `answer` (any case), else None."""
    m = re.search(r"\b(yes|no)\b", answer, flags=re.IGNORECASE)
    return None if m is None else m.group(1).lower() == "yes"
