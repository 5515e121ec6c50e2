"""Canonical string form of a math answer (no parsing; never raises; linear time).

`normalize` applies these rewrites, in order (each is a convention of MATH / GSM8K answers):

1. a command escaped twice (``\\\\frac``, as answers pasted from JSON or Python source have it) is
   read once; a whole-answer ``\\boxed{..}`` is unwrapped; math delimiters (``$``, ``\\(``, ``\\)``, ``\\[``,
   ``\\]``), ``\\left`` / ``\\right``, spacing commands and ``\\displaystyle`` are dropped;
2. ``\\dfrac`` / ``\\tfrac`` / ``\\cfrac`` become ``\\frac``; ``\\le``, ``\\ge``, ``\\ne``, ``<=``,
   ``>=``, ``!=``, ``≤``, ``≥``, ``≠``, ``\\leqslant``, ``\\geqslant`` become ``\\leq`` / ``\\geq`` /
   ``\\neq``, ``\\lt`` / ``\\gt`` become ``<`` / ``>`` (math-verify's relation tests); every text
   command (``\\textnormal``, ``\\textrm``, ``\\mbox``, ``\\mathrm``, ...) becomes ``\\text``
   (math-verify's test ``125\\textnormal{ miles}``);
3. degree signs, percent signs and dollar, euro and pound signs are dropped (``30^\\circ`` = ``30``, ``50\\%`` =
   ``50``, ``\\$18`` = ``18``: the question fixes the unit, as in the MATH answer key);
4. units: a trailing ``\\text{..}`` / ``\\mbox{..}`` / ``\\mathrm{..}`` (with an optional power)
   after a number, or trailing plain words after a plain number (``18 dollars``), are dropped;
5. answers that *are* text (``\\text{no solution}``, ``Monday``) become ``\\text{<lower case>}``
   without a leading article (``an ellipse`` = ``ellipse``);
   a multiple-choice letter (``(B)``, ``\\textbf{(B)}``, ``B``) becomes the bare capital ``B``;
   other ``\\text{..}`` wrappers are unwrapped;
6. thousands separators (``1,000``, ``1{,}000``, ``10,\\!080``) are dropped when the whole answer is
   one number (``32, 349`` with a space is a list, as in math-verify's tests);
   a plain mixed number ``4 2/3`` becomes ``4\\frac{2}{3}``; a repeating decimal
   ``0.1\\overline{6}`` becomes the exact fraction ``\\frac{15}{90}``;
7. several answers joined by "and" / "or" (``4 \\text{ and } 9``, ``(5,2) or (2,5)``) are joined by
   commas instead, so they read as a set (math-verify's test ``12\\text{ and }13``);
8. whitespace is removed (kept only between a command and a letter: ``\\pi r``) and a trailing
   period is dropped.
"""

from __future__ import annotations

import re

_DELIMITERS = (
    *("\\$", "$", "\\(", "\\)", "\\[", "\\]", "\\displaystyle", "\\left", "\\right"),
    *("\\!", "\\,", "\\;", "\\:", "\\quad", "\\qquad", "~"),
    *("^\\circ", "^{\\circ}", "\\circ", "°", "\\degree", "\\%", "%", "€", "£", "\\euro"),
)
_RENAME = (
    (re.compile(r"\\[dtc]frac"), r"\\frac"),
    (re.compile(r"\\le(?:qslant)?(?![a-zA-Z])|<=|≤"), r"\\leq "),
    (re.compile(r"\\ge(?:qslant)?(?![a-zA-Z])|>=|≥"), r"\\geq "),
    (re.compile(r"\\ne(?![a-zA-Z])|!=|≠"), r"\\neq "),
    (re.compile(r"\\lt(?![a-zA-Z])"), "<"),
    (re.compile(r"\\gt(?![a-zA-Z])"), ">"),
    (
        re.compile(r"\\(?:text(?:normal|rm|sf|tt|up|bf|it)?|mbox|math(?:rm|sf|tt|bf|it)|operatorname)\s*\{\s*"),
        r"\\text{",
    ),
)
_CONNECTOR_TEXT = re.compile(r"\s*\\text\{\s*(?:and|or|,)\s*\}\s*")
_CONNECTOR_WORD = re.compile(r"(?<=[\w})\]])\s+(?:and|or)\s+(?=[-+\w\\({\[])|(?<=[)\]])\s*(?:and|or)\s*(?=[(\[])")
_DOUBLED_BACKSLASH = re.compile(r"(?<!\\)\\\\(?=[a-zA-Z])")  # "\\frac" escaped twice; "\\\\ " ends a matrix row
_THOUSANDS_MARK = re.compile(r",\\!\s*|\s*\{\s*,\s*\}\s*")  # 10,\!080 and 14{,}916
_TEXT = r"\\text\{[^{}]*\}"
_POWER = r"(?:\^\{?\d\}?)?"
_UNIT_TEXT = re.compile(r"(?<=[\d}).])\s*(?:%s\s*%s\s*)+$" % (_TEXT, _POWER))
_UNIT_WORDS = re.compile(r"^([-+]?[\d.,/]*\d)\s+[a-zA-Z]{2}[a-zA-Z .]*%s$" % _POWER)
_ONLY_TEXT = re.compile(r"^\s*(?:%s\s*)+$" % _TEXT)
_WORDS = re.compile(r"^[A-Za-z][A-Za-z ,.'-]*[A-Za-z.]$")
_ARTICLES = ("a", "an", "the")
_CHOICE = re.compile(r"^\(([A-Ea-e])\)$|^([A-E])$")
_THOUSANDS = re.compile(r"^-?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?$")
_MIXED = re.compile(r"^(-?\d+)\s+(\d+)/(\d+)$")
_REPEATING = re.compile(r"(?<!\d)(\d*)\.(\d*)\\overline\{(\d+)\}")
_SPACE_AFTER_COMMAND = re.compile(r"(\\[a-zA-Z]+)\s+(?=[a-zA-Z])")


def _unwrap_boxed(s: str) -> str:
    m = re.match(r"^\\(?:boxed|fbox)\s*\{(.*)\}$", s, re.S)
    return m.group(1) if m else s


def _repeating_to_fraction(m: re.Match[str]) -> str:
    """``a.b\\overline{c}`` = (abc - ab) / (10^|b| * (10^|c| - 1)), the school rule for repeating decimals."""
    whole, fixed, period = m.group(1) or "0", m.group(2), m.group(3)
    numerator = int(whole + fixed + period) - int(whole + fixed)
    denominator = 10 ** len(fixed) * (10 ** len(period) - 1)
    return "\\frac{%d}{%d}" % (numerator, denominator)


def _text_content(s: str) -> str:
    return " ".join("".join(re.findall(r"\\text\{([^{}]*)\}", s)).split())


def normalize(answer: str) -> str:
    """Canonical string form of `answer` (LaTeX or plain); equal forms mean equal answers."""
    s = _DOUBLED_BACKSLASH.sub(r"\\", answer.strip())
    s = _THOUSANDS_MARK.sub(",", _unwrap_boxed(s))
    s = re.sub(r"(?<!\\)\\ ", " ", s)  # "\ " is a space; "\\ " ends a matrix row
    for token in _DELIMITERS:
        s = s.replace(token, " ")
    for pattern, repl in _RENAME:
        s = pattern.sub(repl, s)
    s = s.strip()
    several = not _ONLY_TEXT.match(s) and re.search(r"[\d\\(]", s)
    if several:
        s = _CONNECTOR_TEXT.sub(" and ", s)
    if not _ONLY_TEXT.match(s):
        s = _UNIT_TEXT.sub("", s).strip()
        s = _UNIT_WORDS.sub(r"\1", s)
    if _ONLY_TEXT.match(s):
        s = _text_content(s)
    s = s.strip().rstrip(".").strip()
    choice = _CHOICE.match(s)
    if choice:
        return (choice.group(1) or choice.group(2)).upper()
    if _WORDS.match(s) and re.search(r"[A-Za-z]{3}", s):
        words = s.lower().rstrip(".").split()
        return "\\text{%s}" % " ".join(words[1:] if words[0] in _ARTICLES and len(words) > 1 else words)
    s = re.sub(_TEXT, lambda m: m.group(0)[6:-1], s)
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    s = _MIXED.sub(r"\1\\frac{\2}{\3}", s)
    s = _REPEATING.sub(_repeating_to_fraction, s)
    if several:
        s = _CONNECTOR_WORD.sub(",", s)
    s = _SPACE_AFTER_COMMAND.sub("\\1\x00", s)
    return re.sub(r"\s+", "", s).replace("\x00", " ")
