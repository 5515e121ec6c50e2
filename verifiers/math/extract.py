"""Final-answer extraction from a (long chain-of-thought) completion, and from a gold answer.

Rules for a completion, in order: the last run of ``\\boxed{...}`` / ``\\fbox{...}`` (balanced,
nested braces), then the configured fallbacks, each tried in the order given (when ``"phrase"`` is
one of them and an answer phrase comes after the last box, the phrase wins: it restates the
answer last, as in math-verify, which ranks "final answer is" above boxes):

- ``"phrase"``: the last ``<answer>X</answer>``, else the last "final answer is X" / "the answer
  is X" or the same in French, Spanish, German, Italian, Portuguese, Russian, Chinese or Japanese,
  else the last "Answer: X" (in those languages), else the last GSM8K-style ``#### X``;
- ``"latex"``: the last LaTeX math span (``$..$``, ``$$..$$``, ``\\(..\\)``, ``\\[..\\]``; inline
  math that runs across a line break is malformed and gives nothing, as in math-verify's tests),
  or the whole text when it is one short bare expression (``\\frac{10}{9}``);
- ``"last_number"``: the last number standing alone in the text: not part of a word or an
  identifier (``QX7Z``, ``x2``, ``H2O``), and not inside a LaTeX span unless the span is that one
  number (``$\\frac{3+\\sqrt{7}}{4}$`` holds no number to take; ``$42$`` is 42); a unit or ordinal
  may follow it (``5cm``, ``3rd``, ``1,000.99m²``: math-verify's number tests). A LaTeX span that
  comes after the last such number is the answer instead (the answer written last, in math: "the
  area is $\\frac{14}{3}$"), so a digit is never taken out of the final expression.

``"last_number"`` thus finds whichever of the last LaTeX span and the last standalone number comes
later (a final sentence "so there are 12 sequences" after earlier math gives 12); ``"latex"``
alone finds the last span.

A *run* of boxes is several boxes separated only by commas, "and" / "or", spaces or math
delimiters (``\\boxed{2}, \\boxed{5}``, ``$\\boxed{-2}$ and $\\boxed{1}$``): the answers are joined
with commas, so the run reads as the set of its answers (a list of candidates is a set, and a set
never matches a single gold answer). Boxes separated by words are separate: only the last counts.
This is math-verify's reading of several boxes (its ``LatexExtractionConfig`` joins boxes
separated by ",", "and", "or"; its tests ``$\\boxed{1}\\boxed{2}$`` = ``1,2`` and "\\boxed{-2} and
\\boxed{1}" = ``1,-2``).

`gold_answer` applies the box rule to a gold answer that is a worked solution (the MATH dataset's
``solution`` field, a gold written as ``\\[ \\boxed{7} \\]``); a long gold without a box gives
its answer phrase ("The final answer is $28\\%$"), and any other gold is used as is.

Every scan is linear in the text length and every captured phrase is at most `MAX_PHRASE` chars,
so a 100 kB completion costs milliseconds here (the time limit itself lives in the worker pool).
"""

from __future__ import annotations

import re
from typing import Sequence

MAX_PHRASE = 300
MAX_RUN = 10  # boxes in one run; a longer run is cut to its last MAX_RUN boxes

_BOX = re.compile(r"\\(?:boxed|fbox)\s*")
_BRACES = re.compile(r"[{}]")
# What may stand between two boxes of one run (checked on at most MAX_PHRASE chars).
_RUN_GAP = re.compile(
    r"^(?:\s|[,;.&$]|\\[()\[\]]|\\quad|\\qquad|\\[,;! ]|\band\b|\bor\b"
    r"|\\text\{[^{}]{0,40}\band\b[^{}]{0,40}\}|\\text\{\s*(?:or|,)?\s*\})*$",
    re.I,
)
_IS = r"(?:final answer|answer|r[ée]ponse(?: finale)?|respuesta(?: final)?|(?:endg[üu]ltige )?antwort"
_IS += r"|risposta(?: finale)?|resposta(?: final)?)\s*(?:ist|is|est|es|lautet|[èé])\b"
_COLON = r"(?:\*\*)?(?:final answer|answer|r[ée]ponse|respuesta|antwort|risposta|resposta|ответ)(?:\*\*)?\s*[:：]"
_COLON += r"(?:\*\*)?"
# (where the answer starts, what it is): the answer is read after the *last* start only.
_PHRASES = (
    (re.compile(r"<answer>"), re.compile(r"(.{0,%d}?)</answer>" % MAX_PHRASE, re.S)),
    (
        re.compile(r"%s|最终答案是|答案是|答えは" % _IS, re.I),
        re.compile(r"\s*[:：]?\s*(.{1,%d}?)\s*(?:[.。]\s|[.。]?$|\n)" % MAX_PHRASE, re.M),
    ),
    (
        re.compile(r"(?:^|(?<=\s))%s|最终答案\s*[:：]|答案\s*[:：]|答え\s*[:：]" % _COLON, re.I | re.M),
        re.compile(r"\s*(.{1,%d}?)\s*(?:[.。]\s|[.。]?$|\n)" % MAX_PHRASE, re.M),
    ),
    (re.compile(r"####"), re.compile(r"\s*([^\n]{1,%d})" % MAX_PHRASE)),
)
# LaTeX math delimiters, and a line break (it closes an open inline span).
_DELIMITER = re.compile(r"(?<!\\)(?:\$\$|\$|\\\[|\\\]|\\\(|\\\))|\n")
_CLOSES = {"$$": "$$", "$": "$", "\\[": "\\]", "\\(": "\\)"}
_NUMBER = r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+"
# A number standing alone: nothing glued before it (a Latin letter, digit, backslash, brace, sub/superscript,
# slash), and after it at most a unit or ordinal of two or more letters (5cm, 3rd) or a squared unit (m²).
# Other scripts do not separate words with spaces ("有33颗", "**3页**"): their letters around a number are words.
_ALONE_NUMBER = re.compile(r"(?<![a-zA-Z\d_.\\{}^/])(?:%s)(?![\d_{}^/]|\.\d|[a-zA-Z](?![a-zA-Z]|[²³]))" % _NUMBER)
_QUOTES = " \t\"'`“”«»*\\"  # may stand before the math that opens a phrase
_LEADING_NUMBER = re.compile(r"^\s*(%s)\s+(?!(?:and|or)\b)[^\W\d_]{2}" % _NUMBER)
_ONLY_NUMBER = re.compile(r"^\s*(?:%s)\s*$" % _NUMBER)
FALLBACKS = ("phrase", "latex", "last_number")
FREE_FORM = FALLBACKS


def _closing_brace(text: str, start: int, end: int) -> int | None:
    """Index of the ``}`` that closes the ``{`` at `start`, looking no further than `end`."""
    depth = 0
    for brace in _BRACES.finditer(text, start, end):
        depth += 1 if brace.group() == "{" else -1
        if depth == 0:
            return brace.start()
    return None


def _box_spans(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, content)`` of the last run of closed boxes in `text`, in text order.

    Linear time: a box that starts before a later box cannot close after that box starts (it
    would contain it), so each box is scanned only up to the start of the box after it.
    """
    run: list[tuple[int, int, str]] = []
    end = len(text)
    for box in reversed(list(_BOX.finditer(text))):
        i = box.end()
        if i < len(text) and text[i] == "{":
            j = _closing_brace(text, i, end)
            span = None if j is None else (box.start(), j + 1, text[i + 1 : j].strip())
        else:
            token = re.match(r"[^\s$]+", text[i : i + MAX_PHRASE])
            span = (box.start(), i + token.end(), token.group(0)) if token else None
        end = box.start()
        if span is None:
            if run:
                break
            continue  # an unclosed last box falls back to the box before it
        if run and not (run[0][0] - span[1] <= MAX_PHRASE and _RUN_GAP.match(text[span[1] : run[0][0]])):
            break
        run.insert(0, span)
        if len(run) == MAX_RUN:
            break
    return run


def last_boxed(text: str) -> str | None:
    """The answer in the last run of boxes in `text`, or None if it has no closed box.

    One box gives its content (nested braces kept; ``\\boxed 5`` without braces gives ``"5"``);
    a run of several gives their contents joined by ``", "``. An unclosed last box falls back to
    the box before it.
    """
    run = _box_spans(text)
    return ", ".join(content for _, _, content in run) if run else None


def _math_spans(text: str) -> list[tuple[int, int, str | None]]:
    """``(start, end, content)`` of every closed LaTeX math span, in one left-to-right pass.

    Inline math (``$..$``, ``\\(..\\)``) does not run across a line break; one that does is
    malformed: it is returned with content None (no answer is read from it, and its numbers are
    not standalone), as math-verify's tests want for "Answer $ \\n 9 \\n $".
    """
    spans, open_at, closer, broken = [], None, None, False
    for m in _DELIMITER.finditer(text):
        token = m.group()
        if open_at is None:
            if token in _CLOSES:
                open_at, closer, content_start, broken = m.start(), _CLOSES[token], m.end(), False
        elif token == closer:
            spans.append((open_at, m.end(), None if broken else text[content_start : m.start()].strip()))
            open_at = None
        elif token == "\n" and closer in ("$", "\\)"):
            broken = True
    return spans


def _leading_spans(phrase: str) -> list[tuple[int, int, str]]:
    """The math spans that open `phrase` and the ones joined to them by "and" / "or" / commas."""
    spans = [span for span in _math_spans(phrase) if span[2] is not None]
    if not spans or phrase[: spans[0][0]].strip(_QUOTES):
        return []
    run = [spans[0]]
    for span in spans[1:]:
        if not _RUN_GAP.match(phrase[run[-1][1] : span[0]]):
            break
        run.append(span)
    return run


def _in_phrase(phrase: str) -> str:
    """The answer inside a phrase captured after an anchor.

    A phrase that opens with math gives that math (several spans joined by "and" / "or" / commas
    give them all, comma-separated); one that opens with a number followed by words gives the
    number ("42 because ..."); otherwise the text after its last " is " is read the same way
    ("Answer: the largest $n$ is 34", math-verify's test of the "Final Answer" format).
    """
    tail = re.split(r"\s(?:is|est|es|ist|è)\s", phrase)[-1]
    for attempt in (phrase, tail):
        run = _leading_spans(attempt)
        if run:
            return ", ".join(content for _, _, content in run)
        number = _LEADING_NUMBER.match(attempt)
        if number:
            return number.group(1)
        if re.match(r"\s*[-+.\d\\(\[{]", attempt):
            return attempt.strip()
    last = _last_math_or_number(tail)  # "Jane started growing Sphere 3 hours ago"
    return phrase.strip().strip("$").strip() if last is None else last[1]


def _phrase_at(text: str) -> tuple[int, str] | None:
    """(where its anchor starts, answer) of the first kind of phrase found, read after its last anchor."""
    for start, answer in _PHRASES:
        last = None
        for last in start.finditer(text):
            pass
        found = answer.match(text, last.end()) if last else None
        if found and found.group(1).strip():
            phrase = found.group(1).strip()
            if phrase.startswith(("\\[", "$$")):  # display math may run past the end of the line
                phrase = text[found.start(1) : found.start(1) + MAX_PHRASE].strip()
            elif phrase.startswith(("$", "\\(")) and not _leading_spans(phrase):
                return None  # inline math left open at the end of the line: malformed
            return last.start(), _in_phrase(phrase)
    return None


def _phrase(text: str) -> str | None:
    found = _phrase_at(text)
    return None if found is None else found[1]


def _last_latex(text: str) -> tuple[int, str] | None:
    """(end, content) of the last LaTeX math span; a short text that is one bare LaTeX expression
    (ASCII, no word of two letters outside a command: ``\\frac{10}{9}``, ``1 000``) is that expression."""
    spans = [(end, content) for _, end, content in _math_spans(text) if content]  # not None, not empty
    if spans:
        return spans[-1]
    bare = text.strip()
    if bare.isascii() and len(bare) <= MAX_PHRASE and not re.search(r"(?<![\\a-zA-Z])[a-zA-Z]{2}|[?!]", bare):
        return len(text), bare
    return None


def _last_number(text: str) -> tuple[int, str] | None:
    """(end, number) of the last number standing alone outside LaTeX math (a span that is only a
    number counts)."""
    found, last = None, 0
    for start, end, content in _math_spans(text):
        for m in _ALONE_NUMBER.finditer(text, last, start):
            found = (m.end(), m.group())
        if content is not None and _ONLY_NUMBER.match(content):
            found = (end, content.strip())
        last = end
    for m in _ALONE_NUMBER.finditer(text, last):
        found = (m.end(), m.group())
    return found


def _last_math_or_number(text: str) -> tuple[int, str] | None:
    """Whichever of the last math span and the last standalone number ends later."""
    found = [x for x in (_last_latex(text), _last_number(text)) if x is not None]
    return max(found) if found else None


def _fallback(name: str, text: str, names: Sequence[str]) -> str | None:
    if name == "phrase":
        return _phrase(text)
    found = _last_latex(text) if name == "latex" and "last_number" not in names else _last_math_or_number(text)
    return None if found is None else found[1]


def extract_answer(text: str, fallbacks: Sequence[str] = ()) -> str | None:
    """The final answer in `text`: the last run of boxes, else the first fallback that finds one.

    Args:
        text: the completion.
        fallbacks: any of ``"phrase"``, ``"latex"`` and ``"last_number"``, tried in the order given
            (`FREE_FORM` is all three, in that order).

    Raises:
        ValueError: an unknown fallback name (the message lists the known ones).
    """
    unknown = [name for name in fallbacks if name not in FALLBACKS]
    if unknown:
        raise ValueError(f"unknown answer fallback {unknown[0]!r}; known: {FALLBACKS}")
    run = _box_spans(text)
    if run and "phrase" in fallbacks:
        phrase = _phrase_at(text)
        if phrase is not None and phrase[0] >= run[-1][1]:
            return phrase[1]  # "Final answer: ..." restated after the last box
    if run:
        return ", ".join(content for _, _, content in run)
    for name in fallbacks:
        found = _fallback(name, text, fallbacks)
        if found:
            return found
    return None


def gold_answer(gold: str) -> str:
    """The answer in a gold string: its last run of boxes if it has one (a worked solution), else
    the answer of a "final answer is" / "Answer:" phrase if it has one, else the whole string
    (delimiters and labels are left to `verifiers.math.normalize` and the parser)."""
    found = last_boxed(gold) if "box" in gold else None
    if found is None and len(gold) > 40:  # a short gold is the answer itself
        found = _phrase(gold)
    return gold.strip() if found is None else found
