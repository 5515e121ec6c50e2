"""Unit tests of a code problem, parsed on the trusted side into what the harness runs.

Two styles:

- **assert** (HumanEval, MBPP): Python source run statement by statement against the
  program's functions. Every top-level ``assert`` and every bare expression statement (such
  as ``check(candidate)``) is one test unit; imports, ``def`` and assignments are setup.
  Names the tests use and do not define come from the program, except built-in names
  (``abs``, ``len``, ``sorted`` ...): the tests keep the real ones, so a program cannot
  redefine what the tests compare with. The exception is ``entry_point``, the function under
  test, which may shadow a built-in (MBPP's ``sum``). When the tests define ``check`` and never
  call it (HumanEval), ``check(<entry_point>)`` is appended.
- **stdio** (competitive programming): a JSON list of ``{"input": str, "output": str}``; each
  case is one unit. The program's stdout is compared here, outside the sandbox, line by line
  with trailing whitespace of each line and trailing blank lines ignored; the number of lines
  must match (a correct prefix is not a pass).

A problem's reference (``Problem.answer`` of code datasets, see `reasoner.data`) is either of
these, or the JSON object ``{"tests": <either>, "entry_point": "name"}`` (`reference`) so that
the entry point travels with the tests.
"""

from __future__ import annotations

import ast
import builtins
import json
from dataclasses import dataclass, field

STYLES = ("auto", "assert", "stdio")


@dataclass(frozen=True)
class Suite:
    """Parsed tests.

    Attributes:
        mode: ``"call"`` (assert style) or ``"stdio"``.
        spec: what the harness gets (statements and names, or stdin inputs); never the
            expected stdout.
        units: number of test units.
        expected: expected stdout per unit (stdio only).
    """

    mode: str
    spec: dict
    units: int
    expected: tuple[str, ...] = field(default=())


def reference(tests: str, entry_point: str | None = None) -> str:
    """The single-string reference of a code problem: `tests`, with `entry_point` if given."""
    return tests if entry_point is None else json.dumps({"tests": tests, "entry_point": entry_point})


def parse_suite(tests: str, entry_point: str | None = None, style: str = "auto") -> Suite:
    """Parse `tests` (see the module docstring).

    Args:
        tests: Python test source, a JSON list of stdin/stdout cases, or a `reference` object.
        entry_point: the function under test (overrides one in a `reference` object).
        style: ``"assert"``, ``"stdio"`` or ``"auto"`` (stdio when `tests` is a JSON list of
            objects with ``input`` and ``output``).

    Raises:
        ValueError: unknown style, invalid entry point, a syntax error in the tests, bad
            stdio cases, or no test unit at all; the message names the problem.
    """
    if style not in STYLES:
        raise ValueError(f"unknown test style {style!r}; known: {', '.join(STYLES)}")
    bundled = _json(tests) if tests.lstrip().startswith("{") else None
    if isinstance(bundled, dict) and isinstance(bundled.get("tests"), str):
        tests, entry_point = bundled["tests"], entry_point or bundled.get("entry_point")
    cases = _stdio_cases(tests) if style != "assert" else None
    if style == "stdio" and cases is None:
        raise ValueError('stdio tests must be a JSON list of {"input": str, "output": str} objects')
    if cases is not None:
        if not cases:
            raise ValueError("stdio tests have no case")
        return Suite("stdio", {"inputs": [c["input"] for c in cases]}, len(cases), tuple(c["output"] for c in cases))
    if entry_point is not None and not (isinstance(entry_point, str) and entry_point.isidentifier()):
        raise ValueError(f"entry_point must be a Python identifier, got {entry_point!r}")
    try:
        tree = ast.parse(tests)
    except SyntaxError as err:
        raise ValueError(f"tests are not valid Python: {err}") from err
    if entry_point and _defines_uncalled_check(tree):
        tests = f"{tests}\n\ncheck({entry_point})\n"
        tree = ast.parse(tests)
    lines = tests.splitlines(keepends=True)
    spans = [(min([s.lineno] + [d.lineno for d in getattr(s, "decorator_list", [])]), s.end_lineno) for s in tree.body]
    statements = []
    for i, (stmt, (first, last)) in enumerate(zip(tree.body, spans)):
        shares_a_line = (i > 0 and spans[i - 1][1] >= first) or (i + 1 < len(spans) and spans[i + 1][0] <= last)
        source = ast.unparse(stmt) if shares_a_line else "".join(lines[first - 1 : last])
        statements.append((source, first, isinstance(stmt, (ast.Assert, ast.Expr))))
    units = sum(s[2] for s in statements)
    if not units:
        raise ValueError("tests have no assert or expression statement to run")
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - set(dir(builtins))
    return Suite("call", {"statements": statements, "names": sorted(names | {entry_point} - {None})}, units)


def _defines_uncalled_check(tree: ast.Module) -> bool:
    defines = any(isinstance(s, ast.FunctionDef) and s.name == "check" for s in tree.body)
    calls = any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "check"
        for s in tree.body
        if not isinstance(s, ast.FunctionDef)
        for n in ast.walk(s)
    )
    return defines and not calls


def _json(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None


def _stdio_cases(tests: str) -> list[dict] | None:
    cases = _json(tests) if tests.lstrip().startswith("[") else None
    ok = isinstance(cases, list) and all(
        isinstance(c, dict) and isinstance(c.get("input"), str) and isinstance(c.get("output"), str) for c in cases
    )
    return cases if ok else None


def same_output(actual: str, expected: str) -> bool:
    """Line-by-line equality, ignoring trailing whitespace per line and trailing blank lines."""
    return _lines(actual) == _lines(expected)


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.rstrip().splitlines()]
