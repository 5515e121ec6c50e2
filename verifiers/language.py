"""Language consistency of a completion: the share of its words written in the target script.

DeepSeek-R1 (arXiv:2501.12948, §2.3.2) adds a language-consistency reward, "the proportion of
target language words in the CoT", against the language mixing of R1-Zero. Here a word is a
maximal run of letters; it counts as the target language when its letters are all of the
target Unicode script (``LATIN`` for English prompts, by the script word that opens each
letter's Unicode name). Digits, symbols and LaTeX commands' punctuation do not count; a text
without letters scores 1.0.
"""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"[^\W\d_]+")


def language_consistency(text: str, script: str = "LATIN") -> float:
    """Fraction of the words of `text` written entirely in `script` (1.0 when it has none)."""
    words = _WORD.findall(text)
    if not words:
        return 1.0
    prefix = script.upper() + " "
    ok = sum(all(unicodedata.name(c, "").startswith(prefix) for c in w) for w in words)
    return ok / len(words)
