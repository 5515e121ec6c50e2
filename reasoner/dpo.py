"""Direct preference optimization (Rafailov et al. 2023) of a policy on preference pairs, offline.

The reference is the policy as it starts (frozen): its sequence log-probs of every pair's two
completions are computed once, before training, so no second model is held in memory. Sequence
log-probs are sums over the completion's tokens (the end-of-turn token included) of
`reasoner.logprobs.completion_logprobs`, the learner's own path: the two completions of a pair
run in one micro-batch and share their prompt's decoder pass (prompt sharing). The loss
(`reasoner.algorithms.preference.dpo_loss`) is summed over a batch's pairs and divided by their
number, in `reasoner.fit.fit`'s loop.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from reasoner.algorithms.preference import dpo_loss
from reasoner.config import DPOConfig
from reasoner.data.preferences import PairTokens
from reasoner.fit import epoch_batches, fit
from reasoner.logprobs import autocast, completion_logprobs, pad_batch


def pair_logprobs(
    model: torch.nn.Module, pairs: Sequence[PairTokens], pad_id: int, bf16: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence log-probs (nats) of the chosen and the rejected completions of `pairs` under
    `model`, in one micro-batch (chosen rows first), with the gradient if enabled.

    Returns:
        (chosen, rejected): (n,) float32 each.
    """
    rows = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    batch = pad_batch(rows, [p.prompt_len for p in pairs] * 2, pad_id)
    with autocast(bf16):
        logp, _ = completion_logprobs(model, batch)
    total = logp.sum(-1)
    return total[: len(pairs)], total[len(pairs) :]


def reference_logprobs(
    model: torch.nn.Module, pairs: Sequence[PairTokens], pad_id: int, micro_batch_size: int, bf16: bool
) -> torch.Tensor:
    """(n, 2) sequence log-probs of each pair's (chosen, rejected) under `model`, without gradient
    (the frozen reference; `model` is put in eval mode)."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(pairs), micro_batch_size):
            out.append(torch.stack(pair_logprobs(model, pairs[i : i + micro_batch_size], pad_id, bf16), dim=-1))
    return torch.cat(out)


@dataclass
class DPOStats:
    """Optimizer steps, pairs trained on, and over the last 10 steps: mean loss (per pair), the
    mean implicit rewards of chosen and rejected completions, the share of pairs whose chosen
    reward is the higher (reward accuracy); wall seconds."""

    steps: int
    pairs: int
    final_loss: float
    chosen_reward: float
    rejected_reward: float
    reward_accuracy: float
    seconds: float


def run_dpo(
    policy: torch.nn.Module,
    pairs: Sequence[PairTokens],
    cfg: DPOConfig,
    pad_id: int,
    bf16: bool = True,
    seed: int = 0,
    after_step: Callable[[], None] | None = None,
) -> DPOStats:
    """Train `policy` in place with DPO on `pairs`, against itself as it starts (module docstring).

    Raises:
        ValueError: no pairs.
    """
    if not pairs:
        raise ValueError("no preference pairs to train on with DPO (did dpo.max_tokens drop them all?)")
    start = time.perf_counter()
    ref = reference_logprobs(policy, pairs, pad_id, cfg.micro_batch_size, bf16)
    batches = epoch_batches(len(pairs), cfg.batch_size, cfg.epochs, random.Random(seed))
    seen: list[tuple[float, float]] = []

    def micro_loss(batch: Sequence[int], idx: Sequence[int]) -> torch.Tensor:
        chosen, rejected = pair_logprobs(policy, [pairs[i] for i in idx], pad_id, bf16)
        terms = dpo_loss(chosen, rejected, ref[idx, 0], ref[idx, 1], cfg.beta, cfg.label_smoothing, cfg.loss.value)
        seen.extend(zip(terms.chosen_reward.tolist(), terms.rejected_reward.tolist()))
        return terms.loss.sum() / len(batch)

    losses = fit(policy, batches, cfg.micro_batch_size, micro_loss, cfg.lr, after_step=after_step)
    tail = losses[-10:]
    last = seen[-sum(len(b) for b in batches[-10:]) :]
    return DPOStats(
        len(batches),
        len(pairs),
        sum(tail) / len(tail),
        sum(c for c, _ in last) / len(last),
        sum(r for _, r in last) / len(last),
        sum(c > r for c, r in last) / len(last),
        time.perf_counter() - start,
    )
