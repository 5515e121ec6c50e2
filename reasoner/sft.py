"""Supervised fine-tuning (cold start, rejection-sampling SFT): chat template, loss on
completion tokens only.

Each example is the chat-templated prompt followed by the target (`reasoner.prompts.target_text`:
the worked solution in the target format, or a rejection-sampled completion verbatim) and the
end-of-turn token. The loss is the token-mean negative log-likelihood of the target tokens of a
batch (prompt tokens are masked out), accumulated over micro-batches, so it does not depend on
the micro-batch size. With ``sft.group_by_length``, batches are length-grouped
(`length_grouped_batches`): padding stays small without packing sequences into one row.
Optional gradient checkpointing. The optimizer loop is `reasoner.fit.fit`.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from reasoner.algorithms.aggregate import token_mean
from reasoner.config import SFTConfig
from reasoner.envs.base import Environment
from reasoner.envs.render import ToolMessages
from reasoner.fit import epoch_batches, fit
from reasoner.logprobs import autocast, completion_logprobs, pad_batch
from reasoner.prompts import Template, prompt_ids, target_text
from reasoner.types import Problem

log = logging.getLogger("reasoner")


@dataclass
class SFTStats:
    """Optimizer steps, examples used, examples dropped as longer than ``max_tokens``, mean loss
    of the last 10 steps (nats/token), target tokens trained on, and wall seconds."""

    steps: int
    examples: int
    dropped_too_long: int
    final_loss: float
    tokens: int
    seconds: float


def build_examples(
    problems: Sequence[Problem],
    tokenizer: Any,
    template: Template,
    max_tokens: int,
    tools: tuple[Environment, ToolMessages] | None = None,
) -> tuple[list[list[int]], list[int], int, list[list[int]]]:
    """Tokenize (prompt, target) pairs.

    With `tools` (the run's environment and its tool-message renderer), the prompt lists the
    tools, and a problem with a tool-call demonstration (``meta["turns"]``: the model's turns, each
    but the last ending in a call) is an episode: each model turn's tokens, then the tool message
    of running its call in the environment (`reasoner.envs.render.ToolMessages`: loss-mask 0, not
    trained on), and the end-of-turn token after the last turn: the token layout RL samples, with
    what the tools really answer. The calls of every demonstration's k-th turn run as one batch.

    A demonstration the environment cannot replay (a turn but the last calls none of its tools, or
    a call fails: an error or a timeout) is not trained on as an episode: its problem's text
    solution is used instead, and the count is logged.

    Returns:
        (sequences, prompt_lens, dropped_count, loss masks over each target).
    """
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    env, messages = tools if tools is not None else (None, None)
    targets: list[tuple[list[int], list[int]]] = []
    demos = []  # (index into targets, the model's turns, the episode state)
    for i, p in enumerate(problems):
        turns = p.meta.get("turns") if env is not None else None
        if turns:
            demos.append((i, turns, env.reset()))
            targets.append(([], []))
        else:
            ids = encode(target_text(p, template) + tokenizer.eos_token)
            targets.append((ids, [1] * len(ids)))
    failed: set[int] = set()
    for k in range(max((len(t) for _, t, _ in demos), default=0)):
        live = [(i, turns, state) for i, turns, state in demos if k < len(turns) and i not in failed]
        for i, turns, _ in live:
            ids = encode(turns[k])
            targets[i][0].extend(ids)
            targets[i][1].extend([1] * len(ids))
        calling = [(i, turns, state) for i, turns, state in live if k < len(turns) - 1]
        steps = env.step([state for _, _, state in calling], [turns[k] for _, turns, _ in calling]) if calling else []
        for (i, _, _), step in zip(calling, steps):
            if step.observation is None or step.info.get("error"):
                failed.add(i)
                continue
            ids = messages.ids(step.observation)
            targets[i][0].extend(ids)
            targets[i][1].extend([0] * len(ids))
    for i, _, _ in demos:
        if i in failed:
            ids = encode(target_text(problems[i], template) + tokenizer.eos_token)
            targets[i] = (ids, [1] * len(ids))
        else:
            targets[i][0].append(tokenizer.eos_token_id)
            targets[i][1].append(1)
    if failed:
        log.warning(
            "cold start: %d of %d tool demonstrations could not be replayed (no call, or the tool failed): "
            "their text solutions are used",
            len(failed),
            len(demos),
        )
    seqs, plens, masks, dropped = [], [], [], 0
    instructions = env.instructions if env is not None else ""
    for p, (target, mask) in zip(problems, targets):
        prompt = prompt_ids(tokenizer, p.problem, template, instructions)
        if len(prompt) + len(target) > max_tokens:
            dropped += 1
            continue
        seqs.append(prompt + target)
        plens.append(len(prompt))
        masks.append(mask)
    return seqs, plens, dropped, masks


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, rng: random.Random, megabatch: int = 16
) -> list[list[int]]:
    """One epoch of batches of example indices whose lengths are close.

    The indices are shuffled, cut into mega-batches of ``megabatch * batch_size``, each sorted
    by length (longest first) and cut into batches; the batch order is shuffled again. Every
    index appears once; a batch pads to about its own longest example instead of the epoch's.
    (The idea of transformers' ``group_by_length`` sampler.)
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    span = megabatch * batch_size
    batches = []
    for m in range(0, len(order), span):
        chunk = sorted(order[m : m + span], key=lambda i: lengths[i], reverse=True)
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def run_sft(
    model: torch.nn.Module,
    tokenizer: Any,
    problems: Sequence[Problem],
    template: Template,
    cfg: SFTConfig,
    bf16_autocast: bool = True,
    seed: int = 0,
    after_step: Callable[[], None] | None = None,
    tools: tuple[Environment, ToolMessages] | None = None,
) -> SFTStats:
    """Fine-tune `model` in place on the worked solutions of `problems`; `after_step` is called
    after every optimizer step (the jobs hand freed heap memory back there); `tools`: as
    `build_examples`'s (tool-call demonstrations, tool messages not trained on).

    Raises:
        ValueError: no example fits in ``cfg.max_tokens`` or a problem lacks a solution.
    """
    start = time.perf_counter()
    seqs, plens, dropped, masks = build_examples(problems, tokenizer, template, cfg.max_tokens, tools)
    if not seqs:
        raise ValueError(f"no SFT example fits in sft.max_tokens={cfg.max_tokens}")
    rng = random.Random(seed)
    if cfg.group_by_length:
        lengths = [len(q) for q in seqs]
        batches = [b for _ in range(cfg.epochs) for b in length_grouped_batches(lengths, cfg.batch_size, rng)]
    else:
        batches = epoch_batches(len(seqs), cfg.batch_size, cfg.epochs, rng)
    targets = [sum(m) for m in masks]

    def micro_loss(batch: Sequence[int], idx: Sequence[int]) -> torch.Tensor:
        padded = pad_batch(
            [seqs[i] for i in idx], [plens[i] for i in idx], tokenizer.pad_token_id, [masks[i] for i in idx]
        )
        with autocast(bf16_autocast):
            logp, _ = completion_logprobs(model, padded)
        return token_mean(-logp, padded.target_mask.float(), sum(targets[i] for i in batch))

    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    losses = fit(model, batches, cfg.micro_batch_size, micro_loss, cfg.lr, after_step=after_step)
    tokens = sum(targets[i] for b in batches for i in b)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_disable()
    tail = losses[-10:]
    return SFTStats(len(batches), len(seqs), dropped, sum(tail) / len(tail), tokens, time.perf_counter() - start)
