"""Supervised fine-tuning (cold start, rejection-sampling SFT): chat template, loss on
completion tokens only.

Each example is the chat-templated prompt followed by the target (`reasoner.prompts.target_text`:
the worked solution in the target format, or a rejection-sampled completion verbatim) and the
end-of-turn token. The loss is the token-mean negative log-likelihood of the target tokens of a
batch (prompt tokens are masked out), accumulated over micro-batches, so it does not depend on
the micro-batch size. With ``sft.group_by_length``, batches are length-grouped
(`length_grouped_batches`): padding stays small without packing sequences into one row.
Optional gradient checkpointing. AdamW with linear warm-up (first 5% of steps) and linear decay to zero.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from reasoner.algorithms.aggregate import token_mean
from reasoner.config import SFTConfig
from reasoner.logprobs import autocast, completion_logprobs, pad_batch
from reasoner.prompts import Template, prompt_ids, target_text
from reasoner.types import Problem


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
    problems: Sequence[Problem], tokenizer: Any, template: Template, max_tokens: int
) -> tuple[list[list[int]], list[int], int]:
    """Tokenize (prompt, target) pairs. Returns (sequences, prompt_lens, dropped_count)."""
    seqs, plens, dropped = [], [], 0
    for p in problems:
        prompt = prompt_ids(tokenizer, p.problem, template)
        target = tokenizer(target_text(p, template) + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        if len(prompt) + len(target) > max_tokens:
            dropped += 1
            continue
        seqs.append(prompt + list(target))
        plens.append(len(prompt))
    return seqs, plens, dropped


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
) -> SFTStats:
    """Fine-tune `model` in place on the worked solutions of `problems`; `after_step` is called
    after every optimizer step (the jobs hand freed heap memory back there).

    Raises:
        ValueError: no example fits in ``cfg.max_tokens`` or a problem lacks a solution.
    """
    start = time.perf_counter()
    seqs, plens, dropped = build_examples(problems, tokenizer, template, cfg.max_tokens)
    if not seqs:
        raise ValueError(f"no SFT example fits in sft.max_tokens={cfg.max_tokens}")
    rng = random.Random(seed)
    batches = []
    for _ in range(cfg.epochs):
        if cfg.group_by_length:
            batches += length_grouped_batches([len(q) for q in seqs], cfg.batch_size, rng)
        else:
            order = list(range(len(seqs)))
            rng.shuffle(order)
            batches += [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0, fused=True)
    warmup = max(1, len(batches) // 20)
    schedule = lambda s: min((s + 1) / warmup, max(0.0, (len(batches) - s) / max(1, len(batches) - warmup)))  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.train()
    losses, tokens = [], 0
    for batch in batches:
        n_tokens = sum(len(seqs[i]) - plens[i] for i in batch)
        total = 0.0
        for j in range(0, len(batch), cfg.micro_batch_size):
            idx = batch[j : j + cfg.micro_batch_size]
            padded = pad_batch([seqs[i] for i in idx], [plens[i] for i in idx], tokenizer.pad_token_id)
            with autocast(bf16_autocast):
                logp, _ = completion_logprobs(model, padded)
            loss = token_mean(-logp, padded.target_mask.float(), n_tokens)
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(total)
        tokens += n_tokens
        if after_step is not None:
            after_step()
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_disable()
    tail = losses[-10:]
    return SFTStats(len(batches), len(seqs), dropped, sum(tail) / len(tail), tokens, time.perf_counter() - start)
