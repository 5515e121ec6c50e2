"""Preference pairs: a prompt with a preferred (chosen) and a dispreferred (rejected) completion,
the data of reward-model training (`reasoner.reward_model`) and DPO (`reasoner.dpo`).

A row (JSON Lines, JSON, Parquet or a hub dataset, as `reasoner.data.sources`) has

- ``prompt``: the user's message (the problem), a non-empty string; the run's chat template
  (``data.template``) renders it, as for problems;
- ``chosen``, ``rejected``: the assistant's replies, non-empty strings that differ;
- ``margin`` (optional, a number >= 0): how much more ``chosen`` is preferred; the
  Bradley-Terry loss asks the reward gap to exceed it (Llama 2, Touvron et al. 2023, Eq. 2);
- ``id`` (optional, string or integer), ``answer`` (optional: the reference answer, so the
  verifier can grade the pair's completions) and ``meta`` (optional object).

Every row is validated on load like a problem row: a bad row raises `BadRowError` naming the
source, the row and the field, or is skipped with ``on_bad_row="skip"`` (one warning names them).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from reasoner.data.sources import BadRowError, _check_text, validated_rows
from reasoner.prompts import Template, messages


@dataclass(frozen=True)
class PreferencePair:
    """One preference pair (see the module docstring for the fields)."""

    id: str
    prompt: str
    chosen: str
    rejected: str
    margin: float = 0.0
    answer: str | None = None
    meta: dict = field(default_factory=dict)


def _validate_pair(row: Any, source: str, index: int, number: int) -> PreferencePair:
    where = f"{source}: row {number}"
    if not isinstance(row, dict):
        raise BadRowError(f"{where}: a row must be a JSON object, got {type(row).__name__}")
    _check_text(row, where)
    for name in ("prompt", "chosen", "rejected"):
        value = row.get(name)
        if value is None:
            raise BadRowError(f"{where}: missing field {name!r}")
        if not isinstance(value, str):
            raise BadRowError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
        if not value.strip():
            raise BadRowError(f"{where}: field {name!r} is empty")
    if row["chosen"] == row["rejected"]:
        raise BadRowError(f"{where}: fields 'chosen' and 'rejected' are the same text")
    margin = row.get("margin", 0.0)
    if margin is None:
        margin = 0.0
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < float("inf"):
        raise BadRowError(f"{where}: field 'margin' must be a finite number >= 0, got {margin!r}")
    if row.get("id") is not None and (isinstance(row["id"], bool) or not isinstance(row["id"], (str, int))):
        raise BadRowError(f"{where}: field 'id' must be a string or integer, got {type(row['id']).__name__}")
    answer = row.get("answer")
    if answer is not None and (isinstance(answer, bool) or not isinstance(answer, (str, int, float))):
        raise BadRowError(f"{where}: field 'answer' must be a string or number, got {type(answer).__name__}")
    meta = row.get("meta")
    meta = {} if meta is None else meta
    if not isinstance(meta, dict):
        raise BadRowError(f"{where}: field 'meta' must be an object, got {type(meta).__name__}")
    return PreferencePair(
        str(index if row.get("id") is None else row["id"]),
        row["prompt"],
        row["chosen"],
        row["rejected"],
        float(margin),
        None if answer is None else str(answer),
        meta,
    )


def load_pairs(source: str, *, split: str = "train", on_bad_row: str = "error") -> list[PreferencePair]:
    """Load and validate preference pairs, in file order.

    Raises:
        BadRowError: a bad row with ``on_bad_row="error"`` (names source, row and field).
        FileNotFoundError: the source cannot be found (says what was looked for).
        ValueError: no usable row.
    """
    return validated_rows(source, split, _validate_pair, on_bad_row)


def write_pairs(path: Path, pairs: Sequence[PreferencePair]) -> None:
    """Write `pairs` as JSON Lines that `load_pairs` reads back unchanged."""
    with Path(path).open("w") as f:
        f.writelines(json.dumps(asdict(p)) + "\n" for p in pairs)


def split_pairs(
    pairs: Sequence[PreferencePair], heldout_fraction: float, seed: int, field_name: str = "heldout_fraction"
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(train, held-out) with every pair of one prompt on the same side (pairs of a prompt share
    text, so splitting them would leak), about `heldout_fraction` of the prompts held out, seeded.

    Raises:
        ValueError: the split leaves either side empty (names `field_name`, the config field).
    """
    prompts = sorted({p.prompt for p in pairs})
    random.Random(seed).shuffle(prompts)
    held = set(prompts[: round(heldout_fraction * len(prompts))])
    train = [p for p in pairs if p.prompt not in held]
    heldout = [p for p in pairs if p.prompt in held]
    if not train or (heldout_fraction > 0 and not heldout):
        raise ValueError(
            f"{len(pairs)} pairs over {len(prompts)} prompts cannot be split with {field_name}={heldout_fraction}: "
            "one side would be empty"
        )
    return train, heldout


def prompt_text(tokenizer: Any, prompt: str, template: Template) -> str:
    """The chat-templated prompt as text, ending with the assistant turn's header (the text
    form of `reasoner.prompts.prompt_ids`; what reward terms receive as the prompt)."""
    return tokenizer.apply_chat_template(messages(prompt, template), add_generation_prompt=True, tokenize=False)


@dataclass
class PairTokens:
    """A pair as token ids: both completions share the prompt's P tokens.

    Attributes:
        chosen, rejected: prompt then completion (then the end-of-turn token) ids.
        prompt_len: P, in tokens.
        margin: the pair's margin.
    """

    chosen: list[int]
    rejected: list[int]
    prompt_len: int
    margin: float


def tokenize_pairs(
    tokenizer: Any, pairs: Sequence[PreferencePair], template: Template, max_tokens: int
) -> tuple[list[PairTokens], int]:
    """Token ids of each pair (`sequence_ids` of the chat-templated prompt and each completion),
    so a reward model sees the same tokens here as when it scores a rollout. Pairs with a
    sequence longer than `max_tokens` are dropped. Returns (the kept pairs' tokens, the count
    dropped)."""
    kept, dropped = [], 0
    for pair in pairs:
        head = prompt_text(tokenizer, pair.prompt, template)
        (chosen, plen), (rejected, _) = (sequence_ids(tokenizer, head, c) for c in (pair.chosen, pair.rejected))
        if max(len(chosen), len(rejected)) > max_tokens:
            dropped += 1
            continue
        kept.append(PairTokens(chosen, rejected, plen, pair.margin))
    return kept, dropped


def sequence_ids(tokenizer: Any, prompt: str, completion: str) -> tuple[list[int], int]:
    """(ids, P): the chat-templated `prompt`'s P token ids, then those of the `completion` and the
    end-of-turn token (unless the completion already ends with it), each text tokenized on its
    own (as the SFT targets are: `reasoner.sft.build_examples`)."""
    eos = tokenizer.eos_token or ""
    head = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    tail = tokenizer(completion + ("" if completion.endswith(eos) else eos), add_special_tokens=False)["input_ids"]
    return list(head) + list(tail), len(head)
