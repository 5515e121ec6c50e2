"""A learned reward model: a Bradley-Terry scalar head on a causal LM's backbone
(``AutoModelForSequenceClassification``, one label), trained on preference pairs, scored at the
last token, exported (`reasoner.models.export_pretrained`) as an HF directory that
``AutoModelForSequenceClassification`` loads as it is.

Scoring: the model reads the chat-templated prompt, the completion and the end-of-turn token
(`reasoner.data.preferences.sequence_ids`), right-padded; the score is its head at the sequence's
last token that is not the pad token (transformers' own pooling, so the exported model scores the
same in any HF consumer). With SmolLM2, whose pad token is its end-of-turn token, that is the
completion's last token, and the end-of-turn token itself never reaches the score; with a
tokenizer whose pad token differs from it, it is the end-of-turn token.

Training: loss -log σ(r_chosen - r_rejected - margin) (`reasoner.algorithms.preference.bradley_terry_loss`),
summed over a batch's pairs and divided by their number, in `reasoner.fit.fit`'s loop; the two
completions of a pair go through one forward pass.
"""

from __future__ import annotations

import json
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
from reasoner.prompts import Template


def load_reward_model(path: str | Path, pad_token_id: int | None, new_head: bool = False) -> torch.nn.Module:
    """An ``AutoModelForSequenceClassification`` with one label from `path` (fp32): a trained
    reward model, or with `new_head` a causal LM whose backbone gets a new scalar head
    (initialized by transformers, seeded by the caller's ``torch.manual_seed``). `pad_token_id`
    goes into its config (the pooling needs it).

    Raises:
        OSError: `path` is not a model directory transformers can load.
        ValueError: the tokenizer has no pad token, or `path` has no trained scalar head and
            `new_head` is off (a causal LM given where a reward model was expected: its head
            would be random).
    """
    if pad_token_id is None:
        raise ValueError(f"{path}: the tokenizer has no pad token, which the reward model's pooling needs")
    model, info = AutoModelForSequenceClassification.from_pretrained(
        str(path), num_labels=1, dtype=torch.float32, output_loading_info=True
    )
    if info["missing_keys"] and not new_head:
        raise ValueError(
            f"{path} is not a trained reward model: its weights lack {sorted(info['missing_keys'])[:3]} "
            "(a causal LM, whose scalar head would be random); train one with reasoner-rm and give its model/ directory"
        )
    model.config.pad_token_id = pad_token_id
    return model


#: what `write_card` writes next to an exported reward model
CARD = "reward_model.json"


def write_card(out: Path, template: Template, base: str) -> None:
    """Record, in ``out/reward_model.json``, the prompt template a reward model was trained with
    and the model it started from, so that a reward term renders prompts as in training."""
    (Path(out) / CARD).write_text(json.dumps({"template": template.value, "base": base}, indent=2))


def read_template(path: str | Path) -> Template | None:
    """The template `write_card` recorded for the reward model in `path`, or None (no card)."""
    card = Path(path) / CARD
    return Template(json.loads(card.read_text())["template"]) if card.is_file() else None


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
    return model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, 0].float()


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
    accuracy on the training pairs over the last 10 steps (a tie counts half), and wall seconds."""

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
        raise ValueError("no preference pairs to train the reward model on (did rm.max_tokens drop them all?)")
    start = time.perf_counter()
    batches = epoch_batches(len(pairs), cfg.batch_size, cfg.epochs, random.Random(seed))
    right: list[float] = []

    def micro_loss(batch: Sequence[int], idx: Sequence[int]) -> torch.Tensor:
        chosen_rejected = [pairs[i].chosen for i in idx] + [pairs[i].rejected for i in idx]
        with autocast(bf16):
            r = score(model, chosen_rejected, pad_id)
        chosen, rejected = r[: len(idx)], r[len(idx) :]
        right.extend(((chosen > rejected).float() + 0.5 * (chosen == rejected).float()).tolist())
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
