"""The offline training loop shared by SFT (`reasoner.sft`), reward-model training
(`reasoner.reward_model`) and DPO (`reasoner.dpo`): epochs of shuffled batches, gradient
accumulation over micro-batches, gradient clipping, AdamW with linear warm-up (the first 5% of
steps) and linear decay to zero."""

from __future__ import annotations

import random
from typing import Callable, Sequence

import torch


def epoch_batches(n: int, batch_size: int, epochs: int, rng: random.Random) -> list[list[int]]:
    """`epochs` passes over indices 0..n-1, each shuffled by `rng` and cut into batches of
    `batch_size` (the last one of a pass may be smaller)."""
    batches = []
    for _ in range(epochs):
        order = list(range(n))
        rng.shuffle(order)
        batches += [order[i : i + batch_size] for i in range(0, n, batch_size)]
    return batches


def warmup_then_decay(steps: int) -> Callable[[int], float]:
    """LR multiplier of step s (0-based) of `steps`: linear warm-up over the first
    max(1, ⌊steps / 20⌋) steps (5%), then linear decay to zero at `steps`."""
    warmup = max(1, steps // 20)
    return lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup)))


def fit(
    model: torch.nn.Module,
    batches: Sequence[Sequence[int]],
    micro_batch_size: int,
    micro_loss: Callable[[Sequence[int], Sequence[int]], torch.Tensor],
    lr: float,
    grad_clip: float = 1.0,
    after_step: Callable[[], None] | None = None,
) -> list[float]:
    """Train `model` (put in train mode) with one optimizer step per batch of example indices.

    `micro_loss(batch, micro)` returns the loss of the examples `micro` (a slice of `batch`,
    at most `micro_batch_size` of them), already divided by the batch's normalizer (its tokens or
    pairs), so the micro-batch losses sum to the batch loss and the gradient does not depend on
    `micro_batch_size`. `after_step` runs after every optimizer step.

    Returns:
        the loss of every optimizer step (the sum of its micro-batch losses).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_then_decay(len(batches)))
    model.train()
    losses = []
    for batch in batches:
        total = 0.0
        for j in range(0, len(batch), micro_batch_size):
            loss = micro_loss(batch, batch[j : j + micro_batch_size])
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(total)
        if after_step is not None:
            after_step()
    return losses
