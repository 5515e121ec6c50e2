"""Is a predicted answer equivalent to the gold answer?

Three tiers, cheapest first (each stated so a user can reason about the reward):

1. string match after normalization (LaTeX spacing, ``\\left``/``\\right``, ``\\dfrac``, ``$``,
   ``\\text{}`` wrappers, degree signs, a trailing period, thousands separators in numbers);
2. numeric match: both sides parse to finite numbers and ``|a - b| <= REL_TOL * max(1, |b|)``;
3. symbolic match: both sides parsed by ``latex2sympy2_extended`` (a maintained LaTeX parser)
   and ``sympy.simplify(a - b) == 0``; tuples / sets / intervals compare element by element.

There is no time limit in here: callers run `equivalent` inside `verifiers.pool.TimeoutPool`.
"""

from __future__ import annotations

import re

import sympy

REL_TOL = 1e-6

_REMOVE = ("\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\displaystyle", "$", "^\\circ", "^{\\circ}", "\\%", "%")


def normalize(answer: str) -> str:
    """Canonical string form of an answer (no parsing; never raises)."""
    s = answer.strip()
    s = re.sub(r"\\text\{\s*([^{}]*?)\s*\}", r"\1", s)
    s = re.sub(r"\\mbox\{\s*([^{}]*?)\s*\}", r"\1", s)
    for token in _REMOVE:
        s = s.replace(token, "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("\\le ", "\\leq ").replace("\\ge ", "\\geq ")
    s = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", s)
    s = re.sub(r"\s+", "", s)
    return s.rstrip(".")


def _to_sympy(answer: str) -> sympy.Basic:
    from latex2sympy2_extended import latex2sympy

    s = normalize(answer)
    if re.fullmatch(r"-?\d+(\.\d+)?(/\d+)?", s):
        return sympy.Rational(s) if "." not in s else sympy.Float(s)
    return latex2sympy(s)


def _same(a: sympy.Basic, b: sympy.Basic) -> str | None:
    if isinstance(a, (tuple, list, sympy.Tuple)) or isinstance(b, (tuple, list, sympy.Tuple)):
        if not (isinstance(a, (tuple, list, sympy.Tuple)) and isinstance(b, (tuple, list, sympy.Tuple))):
            return None
        if len(a) != len(b):
            return None
        parts = [_same(x, y) for x, y in zip(a, b)]
        return "symbolic match" if all(parts) else None
    if isinstance(a, sympy.Set) or isinstance(b, sympy.Set):
        return "symbolic match" if a == b else None
    if isinstance(a, sympy.Eq) and isinstance(b, sympy.Eq):
        a, b = a.lhs - a.rhs, b.lhs - b.rhs
    if isinstance(a, sympy.Eq):  # "x = 3" vs "3"
        a = a.rhs
    if isinstance(b, sympy.Eq):
        b = b.rhs
    if not (isinstance(a, sympy.Expr) and isinstance(b, sympy.Expr)):
        return "symbolic match" if a == b else None
    if a.is_number and b.is_number:
        try:
            fa, fb = complex(a.evalf()), complex(b.evalf())
        except (TypeError, ValueError, OverflowError):
            fa = fb = None
        if fa is not None and fb is not None:
            if abs(fa - fb) <= REL_TOL * max(1.0, abs(fb)):
                return "numeric match"
            return None
    return "symbolic match" if sympy.simplify(a - b) == 0 else None


def equivalent(pred: str, gold: str) -> tuple[bool, str, tuple[str, str] | None]:
    """Compare `pred` with `gold`.

    Returns:
        (correct, reason, parsed) where reason is ``"string match"``, ``"numeric match"``,
        ``"symbolic match"``, ``"mismatch"`` or ``"unparsed: ..."``, and parsed holds the
        sympy forms (as strings) when both sides parsed.
    """
    if normalize(pred) == normalize(gold):
        return True, "string match", None
    try:
        a, b = _to_sympy(pred), _to_sympy(gold)
    except Exception as exc:  # the parser raises many types on bad LaTeX
        return False, f"unparsed: {type(exc).__name__}", None
    parsed = (str(a), str(b))
    reason = _same(a, b)
    return (reason is not None), (reason or "mismatch"), parsed
