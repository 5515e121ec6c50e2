"""Turn a normalized answer string into a value that `verifiers.math.equivalence` can compare.

- ``\\text{..}`` answers (see `verifiers.math.normalize`) become `Text`;
- plain numbers (``-12``, ``0.5``, ``3/4``, ``1.2e-3``, ``\\frac{3}{4}``) are read directly into
  sympy numbers, a fast path that skips the LaTeX parser;
- structures are split here at their top-level separators, and each element is parsed on its
  own: ``a, b`` and ``\\{a, b\\}`` are finite sets, ``(a, b, c)`` and ``[a, b, c]`` tuples,
  ``[a, b)``-style brackets intervals, ``(a, b)`` a pair (compared as an open interval where the
  other side is a set), ``A \\cup B`` unions, ``\\begin{pmatrix}..\\end{pmatrix}`` matrices and
  ``x \\in S`` the set S; ``\\begin{array}{cc}..\\end{array}`` and a matrix in brackets
  (``\\left[\\begin{array}..\\right]``, math-verify's matrix tests) are matrices too. The ANTLR
  parser needs about 20 ms for any input with a comma (full-context prediction); elements take
  about 1 ms;
- relations (`_relation`): a label before ``=`` is dropped on either side (a tuple of names
  ``(m,n) = (4,1)``, a ratio of names ``AB:CD = 3:5``, a segment or angle ``AB``, ``\\angle ABC``,
  an evaluated function ``f(2) = 5``, a ``\\text{..}`` word): the answer is what follows. One name
  before ``=`` keeps the equation (``y = 2x + 3`` is a line; `verifiers.math.equivalence` reads
  ``x = 3`` as 3 against a number). A chain ``x = 5 + 5 + 1 = 11`` keeps its first and last parts,
  and an equation with no unknown on either side (``3 + 4 = 7``) is its right side. ``A \\approx B`` is A,
  or B when A is a name or label (``x \\approx 7.78``). These are the gold formats the issue tracker
  reported (``$(m,n)=(4,1)$``, ``$AB:CD=3:5$``) and math-verify's relation tests;
- everything else goes through ``latex2sympy2_extended`` (a maintained ANTLR LaTeX-to-sympy
  parser), first with ANTLR's fast SLL prediction and, if that reports a syntax error, again with
  its default full LL prediction: ANTLR's documented two-stage strategy (an SLL parse that succeeds
  is the LL parse; ``PredictionMode.SLL`` in the ANTLR runtime). SLL parses ``\\frac{\\cos x}{\\sin x}``
  in 0.6 ms instead of 14 ms. The symbol ``i`` is read as the imaginary unit, sums and products of
  explicit matrices are carried out (math-verify's matrix tests), Python lists become
  finite sets and matrices become immutable.

Before anything is evaluated, `log10_size` bounds how many digits the value could need; a value
past ``10**MAX_DIGITS`` is refused (sympy would try to build ``10^{10^{10}}`` exactly). Results are
cached per process: in GRPO every gold answer is scored G times.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

import sympy
from antlr4.atn.PredictionMode import PredictionMode
from latex2sympy2_extended import latex2sympy
from latex2sympy2_extended.latex2sympy2 import _Latex2Sympy
from latex2sympy2_extended.math_normalization import NormalizationConfig, normalize_latex

MAX_ANSWER_CHARS = 500
MAX_DIGITS = 100_000

_INTEGER_OR_DECIMAL = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$", re.I)
_FRACTION = re.compile(r"^([-+]?)(?:(\d+)/(\d+)|\\frac\{(\d+)\}\{(\d+)\}|\\frac(\d)(\d))$")
_I = sympy.Symbol("i")
_MATRIX = re.compile(r"^[(\[]?\\begin\{([pbB]?matrix|array)\}(?:\{[lcr|]*\})?(.*)\\end\{\1\}[)\]]?$", re.S)
_NAME = re.compile(r"^(?:[a-zA-Z]|\\(?:alpha|beta|gamma|theta|lambda|mu|phi|omega))(?:_\{?\w+\}?)?'*$")
_ID = r"(?:[a-zA-Z]|\\[a-zA-Z]+)(?:_\{?\w+\}?)?'*"
_LABEL = re.compile(
    rf"^(?:\((?:{_ID},)+{_ID}\)"  # (m,n)
    rf"|(?:{_ID})+(?::(?:{_ID})+)+"  # a:b, AB:CD, V_1:V_2
    r"|[A-Z]{2,4}|\\overline\{[A-Z]+\}|\|[A-Za-z]{1,4}\||m?\\angle ?[A-Z]{1,3}"  # AB, \overline{AB}, |AB|, \angle ABC
    r"|\\frac\{[A-Za-z]{1,4}\}\{[A-Za-z]{1,4}\}"  # \frac{NO}{BO}
    r"|[a-zA-Z]\([^()=]*\)"  # f(2), P(A)
    r"|\\text\{[^{}]*\}|[A-Za-z]{3,}|\\[a-zA-Z]+)$"  # \text{area}, area, a lone command
)
# The parser's own fixes for shorthands such as \sqrt2 and \frac12 (the rest is done by normalize).
_SHORTHANDS = NormalizationConfig(basic_latex=False, malformed_operators=True, boxed="none")


@dataclass(frozen=True)
class Text:
    """An answer that is words, not math (``"no solution"``); equal only to the same words."""

    words: str

    def __str__(self) -> str:
        return self.words


def _number(s: str) -> sympy.Basic | None:
    if _INTEGER_OR_DECIMAL.match(s):
        if re.search(r"[.e]", s, re.I):
            return sympy.Float(s, max(15, len(s)))
        return sympy.Integer(s)
    m = _FRACTION.match(s)
    if m:
        num, den = (int(g) for g in m.groups()[1:] if g is not None)
        if den:
            return sympy.Rational(-num if m.group(1) == "-" else num, den)
    return None


def log10_size(value: sympy.Basic) -> float:
    """An upper bound on ``|log10 |value||`` for numeric sympy trees (free symbols count as 1).

    Rules: a rational counts its digits; ``|log10 b^x| = |x| size(b)`` for a rational x, and
    ``<= size(b) 10^size(x)`` otherwise; ``log10 n! <= n log10 n``; a product adds, a sum takes
    the largest term plus one; other functions take their largest argument plus one.
    """
    if isinstance(value, sympy.Rational):
        return 0.30103 * (abs(value.p).bit_length() + value.q.bit_length())
    if isinstance(value, sympy.Float):
        sign, mantissa, exponent, bits = value._mpf_
        return 0.30103 * abs(exponent + bits)
    if isinstance(value, sympy.Pow):
        base, exponent = value.args
        if exponent.is_Rational and log10_size(exponent) < 300:
            return log10_size(base) * abs(float(exponent))
        return log10_size(base) * 10 ** min(log10_size(exponent), 300.0)
    if isinstance(value, sympy.factorial):
        n = 10 ** min(log10_size(value.args[0]), 300.0)
        return n * (math.log10(n) + 1)
    sizes = [log10_size(a) for a in value.args if isinstance(a, sympy.Basic)]
    if isinstance(value, sympy.Mul):
        return sum(sizes)
    return max(sizes, default=0.0) + 1


def _split(s: str, sep: str) -> list[str]:
    """`s` cut at each `sep` outside any bracket."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(s):
        if depth == 0 and s.startswith(sep, i):
            parts.append(s[start:i])
            i = start = i + len(sep)
            continue
        depth += (s[i] in "([{") - (s[i] in ")]}")
        i += 1
    return parts + [s[start:]]


def _balanced(s: str) -> bool:
    depth = 0
    for ch in s:
        depth += (ch in "([{") - (ch in ")]}")
        if depth < 0:
            return False
    return depth == 0


def _elements(s: str) -> list[sympy.Basic]:
    """Parsed comma-separated elements; a ``\\pm`` element contributes both of its values."""
    values = []
    for part in _split(s, ","):
        value = _value(part)
        values.extend(value.args if isinstance(value, sympy.FiniteSet) else [value])
    return values


def _structure(s: str) -> sympy.Basic | None:
    """The value of a structured answer (see the module docstring), or None if `s` is not one."""
    member = re.match(r"^[a-zA-Z]\\in(?![a-zA-Z])", s)
    if member:
        return _value(s[member.end() :])
    matrix = _MATRIX.match(s)
    if matrix and "\\begin" not in matrix.group(2):
        rows = [[_value(x) for x in row.split("&")] for row in matrix.group(2).split("\\\\") if row.strip()]
        return sympy.ImmutableMatrix(rows)
    union = _split(s, "\\cup")
    if len(union) > 1:
        return sympy.Union(*(_as_set(_value(part)) for part in union))
    if s.startswith("\\{") and s.endswith("\\}") and _balanced(s[2:-2]):
        return sympy.FiniteSet(*_elements(s[2:-2]))
    if len(s) > 1 and s[0] in "([" and s[-1] in ")]" and _balanced(s[1:-1]) and len(_split(s[1:-1], ",")) > 1:
        items = [_value(x) for x in _split(s[1:-1], ",")]
        if len(items) == 2 and s[0] + s[-1] != "()":
            return sympy.Interval(items[0], items[1], s[0] == "(", s[-1] == ")")
        return sympy.Tuple(*items)
    if len(_split(s, ",")) > 1:
        return sympy.FiniteSet(*_elements(s))
    return None


def _relation(s: str) -> sympy.Basic | None:
    """The value of an answer with a top-level ``=`` or ``\\approx`` (module docstring), or None."""
    approx = _split(s, "\\approx")
    if len(approx) > 1:
        head = approx[0]
        return _value(approx[-1] if _LABEL.match(head) or _NAME.match(head) else head)
    if s[:1] == "(" and s[-1:] == ")" and _balanced(s[1:-1]) and "=" in s:
        s = s[1:-1]  # "(35 + 70 = 105)"
    parts = _split(s, "=")
    if len(parts) < 2 or not all(parts):
        return None
    lhs, rhs = parts[0], parts[-1]
    if _LABEL.match(lhs):
        return _value(rhs)
    value = _value(rhs)
    if _NAME.match(lhs):
        return sympy.Eq(_latex(lhs), value) if isinstance(value, sympy.Expr) and not value.is_Matrix else value
    left = _value(lhs)
    if all(isinstance(x, sympy.Expr) and not x.free_symbols for x in (left, value)):
        return value  # a computation, "3 + 4 = 7"
    return sympy.Eq(left, value)


def _as_set(value: sympy.Basic) -> sympy.Basic:
    """A pair ``(a, b)`` inside a union is the open interval."""
    if isinstance(value, sympy.Tuple) and len(value) == 2:
        return sympy.Interval.open(*value)
    return value


def _value(s: str) -> sympy.Basic:
    value = _structure(s)
    if value is None:
        value = _relation(s)
    if value is None:
        value = _number(s)
    if value is None:
        value = _latex(s)
    return value


class _SLLConverter(_Latex2Sympy):
    """latex2sympy2_extended's converter with the parser switched to SLL prediction."""

    def create_parser(self, latex_str: str):  # noqa: ANN201 (the ANTLR parser type)
        parser = super().create_parser(latex_str)
        parser._interp.predictionMode = PredictionMode.SLL
        return parser


def _latex(s: str) -> sympy.Basic:
    s = normalize_latex(s, _SHORTHANDS)
    try:
        value = _SLLConverter().parse(s)
    except Exception:  # a syntax error under SLL: retry with full LL prediction
        value = latex2sympy(s, normalization_config=None)
    if isinstance(value, (list, tuple)):
        value = sympy.FiniteSet(*value)
    if isinstance(value, (sympy.MatAdd, sympy.MatMul)):  # "A + B", "A B" of explicit matrices (no powers)
        value = value.doit()
    if isinstance(value, sympy.MatrixBase):
        value = sympy.ImmutableMatrix(value)
    if isinstance(value, sympy.Basic) and _I in value.free_symbols:
        value = value.xreplace({_I: sympy.I})
    return value


@functools.lru_cache(maxsize=4096)
def parse(normalized: str) -> sympy.Basic | Text:
    """Parse a `verifiers.math.normalize.normalize` result.

    Raises:
        ValueError: the answer is longer than `MAX_ANSWER_CHARS`, or its value could need more
            than `MAX_DIGITS` digits.
        Exception: whatever the LaTeX parser raises on malformed input (many types).
    """
    if len(normalized) > MAX_ANSWER_CHARS:
        raise ValueError(f"answer of {len(normalized)} chars is longer than {MAX_ANSWER_CHARS}")
    if normalized.startswith("\\text{") and normalized.endswith("}"):
        return Text(normalized[6:-1])
    value = _value(normalized)
    if not isinstance(value, sympy.Basic):
        raise ValueError(f"parser gave a {type(value).__name__}, not a sympy object")
    if log10_size(value) > MAX_DIGITS:
        raise ValueError(f"value could need more than {MAX_DIGITS} digits")
    return value
