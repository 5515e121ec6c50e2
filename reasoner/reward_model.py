"""A learned reward model: a Bradley-Terry scalar head on a causal LM's backbone
(``AutoModelForSequenceClassification``, one label), trained on preference pairs, scored at the
last token, exported (`reasoner.models.export_pretrained`) as an HF directory that
``AutoModelForSequenceClassification`` loads as it is.

Scoring: the model reads the chat-templated prompt, the completion and the end-of-turn token
(`reasoner.data.preferences.sequence_ids`), right-padded; the score is its head at the sequence's
last token that is not the pad token (transformers' own pooling, so the exported model scores the
same in any HF consumer; with SmolLM2, whose pad token is its end-of-turn token, that is the
completion's last token).

Training: loss -log σ(r_chosen - r_rejected - margin) (`reasoner.algorithms.preference.bradley_terry_loss`),
summed over a batch's pairs and divided by their number, in `reasoner.fit.fit`'s loop; the two
completions of a pair go through one forward pass.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from transformers import AutoModelForSequenceClassification

from reasoner.algorithms.preference import bradley_terry_loss
from reasoner.config import RewardModelConfig
from reasoner.data.preferences import PairTokens
from reasoner.fit import epoch_batches, fit
from reasoner.logprobs import autocast


def load_reward_model(path: str | Path, pad_token_id: int) -> torch.nn.Module:
    """An ``AutoModelForSequenceClassification`` with one label from `path` (fp32): a trained
    reward model as it is, or a causal LM whose backbone gets a new scalar head (initialized by
    transformers, seeded by the caller's ``torch.manual_seed``). `pad_token_id` goes into its
    config (the pooling needs it).

    Raises:
        OSError: `path` is not a model directory transformers can load.
    """
    model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = pad_token_id
    return model


def score(model: torch.nn.Module, sequences: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """Scores of right-padded `sequences` in one forward pass (with the gradient if enabled).

    Returns:
        (n,) float32 scores.
    """
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.tensor(list(s))
        mask[i, : len(s)] = 1
    return model(input_ids=ids, attention_mask=mask).logits[:, 0].float()


def score_batches(
    model: torch.nn.Module, sequences: Sequence[Sequence[int]], pad_id: int, batch_size: int, bf16: bool
) -> torch.Tensor:
    """`score` without gradient, `batch_size` sequences per forward pass, in eval mode.

    Returns:
        (n,) float32 scores.
    """
    model.eval()
    out = []
    with torch.no_grad(), autocast(bf16):
        for i in range(0, len(sequences), batch_size):
            out.append(score(model, sequences[i : i + batch_size], pad_id))
    return torch.cat(out) if out else torch.zeros(0)


@dataclass
class RewardModelStats:
    """Optimizer steps, pairs trained on, mean loss of the last 10 steps (nats/pair), pairwise
    accuracy on the training pairs over the last 10 steps, and wall seconds."""

    steps: int
    pairs: int
    final_loss: float
    final_train_accuracy: float
    seconds: float


def train_reward_model(
    model: torch.nn.Module,
    pairs: Sequence[PairTokens],
    cfg: RewardModelConfig,
    pad_id: int,
    bf16: bool = True,
    seed: int = 0,
    after_step: Callable[[], None] | None = None,
) -> RewardModelStats:
    """Train `model` (`load_reward_model`) in place on `pairs` with the Bradley-Terry loss.

    Raises:
        ValueError: no pairs.
    """
    if not pairs:
        raise ValueError("no preference pairs to train the reward model on")
    start = time.perf_counter()
    batches = epoch_batches(len(pairs), cfg.batch_size, cfg.epochs, random.Random(seed))
    right: list[float] = []

    def micro_loss(batch: Sequence[int], idx: Sequence[int]) -> torch.Tensor:
        chosen_rejected = [pairs[i].chosen for i in idx] + [pairs[i].rejected for i in idx]
        with autocast(bf16):
            r = score(model, chosen_rejected, pad_id)
        chosen, rejected = r[: len(idx)], r[len(idx) :]
        right.extend((chosen > rejected).float().tolist())
        margin = torch.tensor([pairs[i].margin for i in idx])
        return bradley_terry_loss(chosen, rejected, margin).sum() / len(batch)

    losses = fit(model, batches, cfg.micro_batch_size, micro_loss, cfg.lr, after_step=after_step)
    tail = losses[-10:]
    last = right[-sum(len(b) for b in batches[-10:]) :]
    return RewardModelStats(
        len(batches), len(pairs), sum(tail) / len(tail), sum(last) / len(last), time.perf_counter() - start
    )


def pairwise_accuracy(
    model: torch.nn.Module, pairs: Sequence[PairTokens], pad_id: int, batch_size: int = 16, bf16: bool = True
) -> tuple[float, torch.Tensor]:
    """How many of `pairs` have their chosen completion scored above the rejected one (a tie
    counts half; divide by ``len(pairs)`` for the accuracy), and the (n,) score gaps
    r_chosen - r_rejected.

    Raises:
        ValueError: no pairs.
    """
    if not pairs:
        raise ValueError("no preference pairs to measure pairwise accuracy on")
    r = score_batches(model, [p.chosen for p in pairs] + [p.rejected for p in pairs], pad_id, batch_size, bf16)
    gap = r[: len(pairs)] - r[len(pairs) :]
    return float((gap > 0).sum()) + 0.5 * float((gap == 0).sum()), gap
