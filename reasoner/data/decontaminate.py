"""Deduplication and the evaluation-overlap filter for training data.

A training problem overlaps an evaluation set when, after `normalize` (case, whitespace,
punctuation and LaTeX spacing commands folded away):
- its text equals an evaluation problem's (exact duplicate), or
- it shares a word n-gram (n = ``ngram``, 8 by default) with one (near duplicate: a rephrased
  or re-numbered copy keeps long runs of words). This is the test open-r1's decontamination
  script runs (8-grams), after the n-gram overlap checks of the GPT-3 paper (arXiv:2005.14165,
  App. C, 13-grams). Texts shorter than n words are compared exactly only.

`OverlapFilter` indexes the evaluation texts once; `decontaminate` drops overlapping and
duplicate training problems and reports which, by id and reason.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from reasoner.types import Problem

log = logging.getLogger("reasoner")

_LATEX_SPACING = re.compile(r"\\[,;:! ]|\\q?quad\b|\$")
_NON_WORD = re.compile(r"[^\w+\-*/=^()]+")


def normalize(text: str) -> str:
    """Lowercased NFKC text with LaTeX spacing and ``$`` removed and every run of other
    punctuation or whitespace turned into one space."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _LATEX_SPACING.sub(" ", text)
    return " ".join(_NON_WORD.sub(" ", text).split())


def ngrams(normalized: str, n: int) -> set[tuple[str, ...]]:
    """Word n-grams of a `normalize`d text (empty when it has fewer than n words)."""
    words = normalized.split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


@dataclass
class OverlapFilter:
    """An index of evaluation problem texts.

    Args:
        eval_texts: ``(set name, problem text)`` pairs.
        ngram: word n-gram length for near duplicates (>= 1).

    Raises:
        ValueError: ``ngram < 1``.
    """

    eval_texts: Iterable[tuple[str, str]]
    ngram: int = 8
    _exact: dict[str, str] = field(default_factory=dict, init=False)
    _grams: dict[tuple[str, ...], str] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {self.ngram}")
        for name, text in self.eval_texts:
            norm = normalize(text)
            self._exact.setdefault(norm, name)
            for gram in ngrams(norm, self.ngram):
                self._grams.setdefault(gram, name)

    def overlap(self, text: str) -> str | None:
        """Why `text` overlaps an evaluation problem (``"exact match with math500"``,
        ``"8-gram 'a b c ...' in aime24"``), or None."""
        norm = normalize(text)
        if norm in self._exact:
            return f"exact match with {self._exact[norm]}"
        for gram in ngrams(norm, self.ngram):
            if gram in self._grams:
                return f"{self.ngram}-gram {' '.join(gram)!r} in {self._grams[gram]}"
        return None


@dataclass
class Decontaminated:
    """Problems kept, and those dropped: ``(id, reason)`` for duplicates of an earlier training
    problem and for overlaps with an evaluation set."""

    kept: list[Problem]
    duplicates: list[tuple[str, str]]
    overlaps: list[tuple[str, str]]

    def report(self) -> dict:
        """Counts and the first 20 dropped ids with reasons (JSON-ready)."""
        return {
            "kept": len(self.kept),
            "duplicates": len(self.duplicates),
            "overlaps": len(self.overlaps),
            "first_duplicates": self.duplicates[:20],
            "first_overlaps": self.overlaps[:20],
        }


def decontaminate(
    problems: Sequence[Problem], overlap_filter: OverlapFilter | None, key: str = "problem"
) -> Decontaminated:
    """Drop repeated problems (same `normalize`d text, or same text + target when ``key`` is
    ``"problem+solution"``; the first is kept) and problems that overlap an evaluation set."""
    seen: dict[str, str] = {}
    kept, dups, overlaps = [], [], []
    for p in problems:
        k = normalize(p.problem) + ("\x00" + normalize(p.solution or "") if key == "problem+solution" else "")
        if k in seen:
            dups.append((p.id, f"duplicate of {seen[k]}"))
            continue
        seen[k] = p.id
        why = overlap_filter.overlap(p.problem) if overlap_filter is not None else None
        if why:
            overlaps.append((p.id, why))
            continue
        kept.append(p)
    return Decontaminated(kept, dups, overlaps)


def training_pool(
    problems: Sequence[Problem],
    overlap_filter: OverlapFilter | None,
    limit: int | None,
    field: str,
    key: str = "problem",
) -> tuple[list[Problem], dict]:
    """The training problems a job may use: `problems` deduplicated (`decontaminate` with
    `key`), without those `overlap_filter` flags (the evaluation sets and the held-out set, as the
    job built it), the first `limit` of the rest. Returns (problems, `Decontaminated.report`);
    drops are logged.

    Raises:
        ValueError: nothing is left; the message names the config `field` that chose the source.
    """
    cleaned = decontaminate(problems, overlap_filter, key=key)
    report = cleaned.report()
    if cleaned.duplicates or cleaned.overlaps:
        log.warning(
            "%s: dropped %d duplicate(s) and %d problem(s) overlapping evaluation sets (first: %s)",
            field,
            len(cleaned.duplicates),
            len(cleaned.overlaps),
            (cleaned.overlaps or cleaned.duplicates)[:3],
        )
    if not cleaned.kept:
        raise ValueError(f"{field}: no example left after deduplication and decontamination ({report})")
    return cleaned.kept[:limit], report
