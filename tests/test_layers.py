"""The layering, checked on the import graph of the source tree (every ``import`` and
``from ... import`` statement, at module level or inside functions): only the entry points
(``reasoner.jobs``) import ``eval``; the library never imports the entry points; ``verifiers``
imports neither; and no module imports one that imports it back, directly or through others."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("reasoner", "verifiers", "eval")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (a package's ``__init__`` is the package)."""
    files = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in files and t != name}
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_only_the_entry_points_import_eval():
    graph = import_graph()
    offenders = {m for m, deps in graph.items() if m.startswith("reasoner") and any(d.startswith("eval") for d in deps)}
    assert offenders and all(m.startswith("reasoner.jobs") for m in offenders), sorted(offenders)


def test_the_library_never_imports_the_entry_points():
    graph = import_graph()
    upward = {
        (m, d)
        for m, deps in graph.items()
        for d in deps
        if d.startswith("reasoner.jobs") and not m.startswith("reasoner.jobs")
    }
    assert not upward, sorted(upward)
    below = {
        (m, d) for m, deps in graph.items() if m.startswith("verifiers") for d in deps if not d.startswith("verifiers")
    }
    assert not below, sorted(below)


def test_no_module_imports_one_that_imports_it_back():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
