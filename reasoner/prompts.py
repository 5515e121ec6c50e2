"""Prompt rendering, shared by SFT, RL, rejection sampling and evaluation: the templates, the
chat messages of a problem, its prompt token ids, and the cold-start target text."""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

from reasoner.types import Problem


class Template(str, Enum):
    plain = "plain"  # the model's chat template, user turn only
    r1 = "r1"  # R1-Zero style system prompt: <think> ... </think> then the boxed answer
    code = "code"  # user turn asks for a complete Python program in a ```python block


INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
CODE_INSTRUCTION = (
    "Write a complete, self-contained Python solution (with the imports it needs) in a single ```python code block."
)
R1_SYSTEM = (
    "You are a careful problem solver. First think through the problem inside <think> and "
    "</think> tags, then state the final answer as \\boxed{answer}."
)


def messages(problem: str, template: Template, tools: str = "") -> list[dict[str, str]]:
    """Chat messages for a problem under a prompt template; `tools` (the environment's
    instructions, `reasoner.envs`) is a system message, after the r1 one's text."""
    if template == Template.r1:
        system = f"{R1_SYSTEM}\n\n{tools}" if tools else R1_SYSTEM
        return [{"role": "system", "content": system}, {"role": "user", "content": problem}]
    head = [{"role": "system", "content": tools}] if tools else []
    if template == Template.code:
        return [*head, {"role": "user", "content": f"{problem}\n{CODE_INSTRUCTION}"}]
    return [*head, {"role": "user", "content": f"{problem}\n{INSTRUCTION}"}]


_CALCULATOR = re.compile(r"<<[^<>]*>>")
_GSM8K_FINAL = re.compile(r"\n?#### .*$", re.S)


def clean_solution(text: str) -> str:
    """A dataset's worked solution as reasoning text: GSM8K's calculator annotations
    (``<<48/2=24>>``) and final ``#### 72`` line removed, ``\\boxed{x}`` unwrapped to ``x`` (the
    target states the boxed answer once, at the end)."""
    text = _GSM8K_FINAL.sub("", _CALCULATOR.sub("", text))
    out, i = [], 0
    while (j := text.find("\\boxed{", i)) >= 0:
        depth, k = 1, j + len("\\boxed{")
        while k < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[k], 0)
            k += 1
        if depth:  # unbalanced: leave the rest as it is
            break
        out += [text[i:j], text[j + len("\\boxed{") : k - 1]]
        i = k
    return ("".join(out) + text[i:]).strip()


def target_text(problem: Problem, template: Template) -> str:
    """The cold-start SFT target: the worked solution (`clean_solution`) in the target format,
    ending in a box: for ``r1``, ``<think>`` reasoning ``</think>`` then the boxed answer (the
    format DeepSeek-R1's cold-start data uses, arXiv:2501.12948 §2.3.1). A row marked
    ``target: verbatim`` (a rejection-sampled completion) is its own target, unchanged.

    Raises:
        ValueError: the problem has no solution.
    """
    if not problem.solution:
        raise ValueError(f"problem {problem.id!r} has no worked solution for SFT")
    if problem.meta.get("target") == "verbatim":
        return problem.solution
    if template == Template.code:
        return f"```python\n{problem.solution.rstrip()}\n```"
    final = f"The final answer is \\boxed{{{problem.answer}}}."
    reasoning = clean_solution(problem.solution)
    if template == Template.r1:
        return f"<think>\n{reasoning}\n</think>\n{final}"
    return f"{reasoning}\n{final}"


def prompt_ids(tokenizer: Any, problem: str, template: Template, tools: str = "") -> list[int]:
    """Token ids of the chat-templated prompt (`messages`), ending with the assistant turn's header."""
    ids = tokenizer.apply_chat_template(messages(problem, template, tools), add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)
