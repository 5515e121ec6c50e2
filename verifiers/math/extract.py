"""Final-answer extraction from a (long chain-of-thought) completion.

Rules, in order: the last ``\\boxed{...}`` / ``\\fbox{...}`` (balanced, nested braces), then the
configured fallbacks: ``"phrase"`` ("final answer is X", "#### X", ``<answer>X</answer>``) and
``"last_number"`` (the last number in the text).
"""

from __future__ import annotations

import re
from typing import Sequence

_BOX = re.compile(r"\\(?:boxed|fbox)\s*")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_PHRASES = (
    re.compile(r"<answer>(.*?)</answer>", re.S),
    re.compile(r"final answer is[:\s]*\$?([^\n$]+?)\$?\s*(?:\.|$|\n)", re.I),
    re.compile(r"####\s*([^\n]+)"),
)
FALLBACKS = ("phrase", "last_number")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{}`` or ``\\fbox{}`` in `text` (nested braces kept), or None.

    An unclosed box returns None. ``\\boxed 5`` (no braces) returns ``"5"``.
    """
    for match in reversed(list(_BOX.finditer(text))):
        i = match.end()
        if i < len(text) and text[i] == "{":
            depth = 0
            for j in range(i, len(text)):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1 : j].strip()
            return None
        token = re.match(r"[^\s$]+", text[i:])
        if token:
            return token.group(0)
    return None


def extract_answer(text: str, fallbacks: Sequence[str] = ()) -> str | None:
    """The final answer in `text`: the last box, else the first fallback that finds one.

    Args:
        text: the completion.
        fallbacks: any of ``"phrase"`` and ``"last_number"``, tried in the order given.

    Raises:
        ValueError: an unknown fallback name (the message lists the known ones).
    """
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    for name in fallbacks:
        if name == "phrase":
            for pattern in _PHRASES:
                found = pattern.findall(text)
                if found:
                    return found[-1].strip()
        elif name == "last_number":
            found = _NUMBER.findall(text)
            if found:
                return found[-1]
        else:
            raise ValueError(f"unknown answer fallback {name!r}; known: {FALLBACKS}")
    return None
