"""Final-answer extraction from a (long chain-of-thought) completion.

Rules, in order: the last ``\\boxed{...}`` / ``\\fbox{...}`` (balanced, nested braces), then the
configured fallbacks, each tried in the order given:

- ``"phrase"``: the last ``<answer>X</answer>``, else the last "final answer is X" / "the answer
  is X" / "Answer: X", else the last GSM8K-style ``#### X``;
- ``"last_number"``: the last number in the text.

Every scan is linear in the text length and every captured phrase is at most `MAX_PHRASE` chars,
so a 100 kB completion costs milliseconds here (the time limit itself lives in the worker pool).
"""

from __future__ import annotations

import re
from typing import Sequence

MAX_PHRASE = 300

_BOX = re.compile(r"\\(?:boxed|fbox)\s*")
_BRACES = re.compile(r"[{}]")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
# (where the answer starts, what it is): the answer is read after the *last* start only.
_PHRASES = (
    (re.compile(r"<answer>"), re.compile(r"(.{0,%d}?)</answer>" % MAX_PHRASE, re.S)),
    (
        re.compile(r"(?:final answer|the answer) is", re.I),
        re.compile(r"\s*:?\s*(.{1,%d}?)\s*(?:\.\s|\.?$|\n)" % MAX_PHRASE, re.M),
    ),
    (re.compile(r"^\s*\**answer\**\s*:", re.I | re.M), re.compile(r"\s*(.{1,%d}?)\s*$" % MAX_PHRASE, re.M)),
    (re.compile(r"####"), re.compile(r"\s*([^\n]{1,%d})" % MAX_PHRASE)),
)
FALLBACKS = ("phrase", "last_number")


def _closing_brace(text: str, start: int, end: int) -> int | None:
    """Index of the ``}`` that closes the ``{`` at `start`, looking no further than `end`."""
    depth = 0
    for brace in _BRACES.finditer(text, start, end):
        depth += 1 if brace.group() == "{" else -1
        if depth == 0:
            return brace.start()
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last closed ``\\boxed{}`` or ``\\fbox{}`` in `text` (nested braces kept), or None.

    An unclosed last box falls back to the box before it. ``\\boxed 5`` (no braces) gives ``"5"``.
    Linear time: a box that starts before an unclosed box cannot close after it, so each box is
    scanned only up to the start of the unclosed box after it.
    """
    end = len(text)
    for box in reversed(list(_BOX.finditer(text))):
        i = box.end()
        if i < len(text) and text[i] == "{":
            j = _closing_brace(text, i, end)
            if j is not None:
                return text[i + 1 : j].strip()
            end = box.start()
            continue
        token = re.match(r"[^\s$]+", text[i : i + MAX_PHRASE])
        if token:
            return token.group(0)
    return None


def _phrase(text: str) -> str | None:
    for start, answer in _PHRASES:
        last = None
        for last in start.finditer(text):
            pass
        found = answer.match(text, last.end()) if last else None
        if found:
            return found.group(1).strip().strip("$").strip()
    return None


def extract_answer(text: str, fallbacks: Sequence[str] = ()) -> str | None:
    """The final answer in `text`: the last box, else the first fallback that finds one.

    Args:
        text: the completion.
        fallbacks: any of ``"phrase"`` and ``"last_number"``, tried in the order given.

    Raises:
        ValueError: an unknown fallback name (the message lists the known ones).
    """
    unknown = [name for name in fallbacks if name not in FALLBACKS]
    if unknown:
        raise ValueError(f"unknown answer fallback {unknown[0]!r}; known: {FALLBACKS}")
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    for name in fallbacks:
        if name == "phrase":
            found = _phrase(text)
        else:
            numbers = _NUMBER.findall(text)
            found = numbers[-1] if numbers else None
        if found:
            return found
    return None
