"""Is a predicted answer equivalent to the gold answer?

Three tiers, cheapest first (each stated so a user can reason about the reward):

1. **string match**: equal after `verifiers.math.normalize.normalize`;
2. **numeric match**: both sides are numbers (no free symbols). Two exact rationals must be equal
   exactly (so 30-digit integers that differ in the last digit differ). Otherwise both are
   evaluated to 30 significant digits and must agree within ``REL_TOL = 1e-6`` relative when
   either side was written with a decimal point (it was rounded), else within ``1e-20``;
3. **symbolic match** (free symbols): both sides are evaluated at three fixed points and must
   agree within ``PROBE_TOL = 1e-9`` relative (a cheap rejection), then ``sympy.expand`` or
   ``sympy.simplify`` must reduce ``a - b`` to 0. When either side has a decimal point, agreement
   within ``REL_TOL`` at the points is the test (a "numeric match": simplify cannot prove
   ``0.3333333 x = x / 3``).

Structures compare part by part with the same tiers: tuples and matrices in order, finite sets
in any order (``"2, 3"`` is the set of solutions), intervals by endpoints and openness, unions
interval by interval. ``x = 3`` matches ``3`` (an assignment to a single symbol gives its value);
two equations match when ``lhs - rhs`` of one is a non-zero constant multiple of the other's; a
one-variable inequality is compared as the set it defines (``x \\leq 2`` = ``(-\\infty, 2]``).
An answer with a percent sign matches both as written and divided by 100 (``25\\%`` matches
``25`` and ``\\frac14``); a predicted ``1,22`` also reads as the decimal 1.22 (`_readings` says when).
Text answers match only the same words. ``\\pm`` gives a two-element
set, so ``\\pm 2`` does not match ``2``.

There is no time limit in here: callers run `equivalent` inside `verifiers.pool.TimeoutPool`.
"""

from __future__ import annotations

import re

import sympy
from sympy.logic.boolalg import Boolean

from verifiers.math.normalize import normalize
from verifiers.math.parse import MAX_ANSWER_CHARS, Text, parse

REL_TOL = 1e-6
EXACT_REL_TOL = 1e-20
PROBE_TOL = 1e-9
_DIGITS = 30
_DECIMAL_COMMA = re.compile(r"^(-?\d+),(\d+)$")
_PROBES = (sympy.Rational(7, 10), sympy.Rational(13, 7), sympy.Rational(-5, 3))


def _close(a: sympy.Expr, b: sympy.Expr, tol: float) -> bool:
    va, vb = a.evalf(_DIGITS), b.evalf(_DIGITS)  # sympy floats: no overflow past 1e308
    return bool(abs(va - vb) <= tol * sympy.Max(abs(va), abs(vb)))


def _numbers(a: sympy.Expr, b: sympy.Expr, tol: float) -> bool:
    if a.is_Rational and b.is_Rational:
        return a == b
    if not (a.is_finite and b.is_finite):
        return a == b
    return _close(a, b, tol)


def _agree_at_probes(a: sympy.Expr, b: sympy.Expr, tol: float) -> bool:
    """Do `a` and `b` agree within `tol` (relative, floor 1) at the fixed probe points?

    A point where either side is not a finite number (a pole, an unknown function) proves nothing.
    """
    symbols = sorted(a.free_symbols | b.free_symbols, key=str)
    for k, point in enumerate(_PROBES):
        subs = {s: point + j for j, s in enumerate(symbols, start=k)}
        va, vb = a.evalf(_DIGITS, subs=subs), b.evalf(_DIGITS, subs=subs)
        if all(v.is_number and v.is_finite for v in (va, vb)):
            if abs(va - vb) > tol * sympy.Max(1, abs(va), abs(vb)):
                return False
    return True


def _exprs(a: sympy.Expr, b: sympy.Expr) -> str | None:
    if a.has(sympy.zoo, sympy.nan) or b.has(sympy.zoo, sympy.nan):  # "12:00" parses as 12/0
        return None
    inexact = a.has(sympy.Float) or b.has(sympy.Float)
    if not a.free_symbols and not b.free_symbols:
        return "numeric match" if a == b or _numbers(a, b, REL_TOL if inexact else EXACT_REL_TOL) else None
    if a == b:
        return "symbolic match"
    if not _agree_at_probes(a, b, REL_TOL if inexact else PROBE_TOL):
        return None
    if inexact:  # simplify cannot prove 0.3333333 x = x / 3; the probes are the test
        return "numeric match"
    diff = a - b
    return "symbolic match" if sympy.expand(diff) == 0 or sympy.simplify(diff) == 0 else None


def _as_set(rel: sympy.Basic) -> sympy.Basic:
    """A one-variable inequality (or chain of them) as the set of reals it defines."""
    if isinstance(rel, (sympy.Rel, sympy.And, sympy.Or)) and not isinstance(rel, sympy.Eq):
        if len(rel.free_symbols) == 1:
            return rel.as_set()
    return rel


def _value_of(eq: sympy.Basic) -> sympy.Basic:
    """``x = 3`` -> ``3``: an assignment to a single symbol stands for its value."""
    if isinstance(eq, sympy.Eq) and isinstance(eq.lhs, sympy.Symbol):
        return eq.rhs
    return eq


def _equations(a: sympy.Eq, b: sympy.Eq) -> str | None:
    if isinstance(a.lhs, sympy.Symbol) and a.lhs == b.lhs:
        return same(a.rhs, b.rhs)
    da, db = a.lhs - a.rhs, b.lhs - b.rhs
    if db == 0 or da == 0:
        return "symbolic match" if da == db else None
    ratio = sympy.simplify(da / db)
    return "symbolic match" if ratio.is_number and ratio != 0 and ratio.is_finite else None


def _pair_as_interval(x: sympy.Basic, other: sympy.Basic) -> sympy.Basic:
    """``(1, 2)`` is a pair or an open interval: read it as the interval when compared with a set."""
    if isinstance(x, sympy.Tuple) and len(x) == 2 and isinstance(other, (sympy.Interval, sympy.Union)):
        return sympy.Interval.open(*x)
    return x


def _finite_sets(a: sympy.FiniteSet, b: sympy.FiniteSet) -> str | None:
    if len(a) != len(b):
        return None
    rest = list(b.args)
    for x in a.args:
        match = next((y for y in rest if same(x, y)), None)
        if match is None:
            return None
        rest.remove(match)
    return "symbolic match"


def _sequences(a: sympy.Basic, b: sympy.Basic) -> str | None:
    if len(a.args) != len(b.args):
        return None
    reasons = [same(x, y) for x, y in zip(a.args, b.args)]
    return "symbolic match" if all(reasons) else None


def same(a: sympy.Basic | Text, b: sympy.Basic | Text) -> str | None:
    """Compare two parsed values; return the matching tier's reason, or None if they differ."""
    if isinstance(a, Text) or isinstance(b, Text):
        return "string match" if a == b else None
    if isinstance(a, sympy.Eq) and isinstance(b, sympy.Eq):
        return _equations(a, b)
    a, b = _as_set(_value_of(a)), _as_set(_value_of(b))
    if isinstance(a, sympy.FiniteSet) and len(a) == 1 and not isinstance(b, sympy.Set):
        a = a.args[0]
    if isinstance(b, sympy.FiniteSet) and len(b) == 1 and not isinstance(a, sympy.Set):
        b = b.args[0]
    if isinstance(a, sympy.Expr) and isinstance(b, sympy.Expr) and not (a.is_Matrix or b.is_Matrix):
        return _exprs(a, b)
    a, b = _pair_as_interval(a, b), _pair_as_interval(b, a)
    if isinstance(a, sympy.FiniteSet) and isinstance(b, sympy.FiniteSet):
        return _finite_sets(a, b)
    if isinstance(a, sympy.MatrixBase) and isinstance(b, sympy.MatrixBase):
        return _sequences(sympy.Tuple(*a), sympy.Tuple(*b)) if a.shape == b.shape else None
    if type(a) is type(b) and isinstance(a, (sympy.Tuple, sympy.Interval, sympy.Union, Boolean)):
        return _sequences(a, b)
    return "symbolic match" if a == b else None


def _readings(raw: str, normalized: str, value: sympy.Basic | Text, gold: bool) -> list[sympy.Basic | Text]:
    """The values an answer may mean.

    ``12.5\\%`` reads as 12.5 (the question asked for a percent) and as 0.125. A predicted
    ``1,22`` (no space after the comma) reads as the set {1, 22} and as the decimal 1.22 (a decimal
    comma: math-verify's number tests), unless three digits follow the comma (``32,349``, a
    thousands group). A gold ``-2,1`` is a set of roots far more often than a decimal: a gold gets
    the decimal reading only when no set is likely, after a lone zero (``0,111``) or four or more
    digits (``1000,99``).
    """
    if "%" in raw and isinstance(value, sympy.Expr):
        return [value, value / 100]
    comma = _DECIMAL_COMMA.match(normalized)
    if comma and re.search(r",\d", raw):
        whole, decimals = comma.group(1).lstrip("-"), comma.group(2)
        likely = whole == "0" or len(whole) > 3 if gold else len(decimals) != 3 or whole == "0" or len(whole) > 3
        if likely:
            return [value, sympy.Float(normalized.replace(",", "."), max(15, len(normalized)))]
    return [value]


def equivalent(pred: str, gold: str) -> tuple[bool, str, tuple[str, str] | None]:
    """Compare the answer `pred` with the gold answer `gold` (both LaTeX or plain strings).

    Returns:
        (correct, reason, parsed): reason is ``"string match"``, ``"numeric match"``,
        ``"symbolic match"``, ``"mismatch"``, ``"unparsed: <why>"`` (a side is malformed, too
        long or too large) or ``"error: <why>"`` (sympy failed while comparing); parsed holds
        both parsed forms (as strings) once both sides parsed.
    """
    too_long = [s for s in (pred, gold) if len(s) > MAX_ANSWER_CHARS]
    if too_long:
        return False, f"unparsed: answer of {len(too_long[0])} chars is longer than {MAX_ANSWER_CHARS}", None
    npred, ngold = normalize(pred), normalize(gold)
    if npred == ngold:
        return True, "string match", (npred, ngold)
    try:
        a, b = parse(npred), parse(ngold)
    except Exception as exc:  # the LaTeX parser raises many types on malformed input
        return False, f"unparsed: {type(exc).__name__}: {exc}"[:200], None
    parsed = (sympy.sstr(a, full_prec=False), sympy.sstr(b, full_prec=False))
    try:
        readings = [(x, y) for x in _readings(pred, npred, a, False) for y in _readings(gold, ngold, b, True)]
        reason = next(filter(None, (same(x, y) for x, y in readings)), None)
    except Exception as exc:  # sympy raises many types on values it cannot compare
        return False, f"error: {type(exc).__name__}: {exc}"[:200], parsed
    return reason is not None, reason or "mismatch", parsed
