"""Datasets: vendored files load, bad rows are named, arithmetic problems are right."""

import json
import re

import pytest

from reasoner import arithmetic
from reasoner.config import Template
from reasoner.data import BadRowError, load_problems, messages, target_text


@pytest.mark.parametrize("name,rows", [("gsm8k_test", 1319), ("math500", 500), ("aime24", 30), ("aime25", 30), ("amc23", 40)])
def test_vendored_sets_load(name, rows):
    problems = load_problems(f"vendored:{name}", n=None)
    assert len(problems) == rows
    assert all(p.problem and p.answer for p in problems)


def test_bad_row_is_named_by_file_and_row(tmp_path):
    path = tmp_path / "bad.jsonl"
    rows = [{"id": "a", "problem": "1+1?", "answer": "2"}, {"id": "b", "problem": "", "answer": "3"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(BadRowError, match=r"bad.jsonl: row 2: field 'problem' is empty"):
        load_problems(str(path))
    kept = load_problems(str(path), on_bad_row="skip")
    assert [p.id for p in kept] == ["a"]


def test_wrong_typed_answer_is_named(tmp_path):
    path = tmp_path / "typed.jsonl"
    path.write_text(json.dumps({"problem": "x?", "answer": ["1"]}) + "\n")
    with pytest.raises(BadRowError, match="row 1: field 'answer' must be a string or number, got list"):
        load_problems(str(path))


def test_missing_file_says_what_was_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_problems(str(tmp_path / "nope.jsonl"))


@pytest.mark.parametrize("level", arithmetic.LEVELS)
def test_arithmetic_answers_and_steps_are_right(level):
    for p in arithmetic.generate(50, [level], seed=level):
        expr = p.problem.removeprefix("What is ").removesuffix("?").replace("×", "*")
        ops = re.findall(r"[+\-*]", expr)
        assert len(ops) == p.solution.count("Step")
        # evaluate left to right, as the worked solution does
        tokens = expr.split()
        acc = int(tokens[0])
        for op, b in zip(tokens[1::2], tokens[2::2]):
            acc = acc + int(b) if op == "+" else acc - int(b) if op == "-" else acc * int(b)
        assert str(acc) == p.answer and acc >= 0
        assert p.solution.strip().endswith(f"= {p.answer}.")


def test_arithmetic_is_deterministic_and_excludes():
    a = arithmetic.generate(20, [2], seed=1)
    assert [p.problem for p in a] == [p.problem for p in arithmetic.generate(20, [2], seed=1)]
    b = arithmetic.generate(20, [2], seed=1, exclude=[p.problem for p in a[:5]])
    assert not {p.problem for p in a[:5]} & {p.problem for p in b}


def test_terse_solutions_share_problems_and_answers():
    steps = arithmetic.generate(200, [2, 3], seed=4)
    mixed = arithmetic.generate(200, [2, 3], seed=4, terse_fraction=0.5)
    assert [p.problem for p in steps] == [p.problem for p in mixed]  # the style draw is separate
    terse = [p for p in mixed if p.meta["terse"]]
    assert 70 < len(terse) < 130
    for p in terse:
        expr = p.problem.removeprefix("What is ").removesuffix("?")
        assert p.solution == f"{expr} = {p.answer}." and "Step" not in p.solution
    assert all("Step 1:" in p.solution for p in mixed if not p.meta["terse"])
    with pytest.raises(ValueError, match="terse_fraction"):
        arithmetic.generate(5, [2], seed=0, terse_fraction=1.5)


def test_templates():
    p = arithmetic.generate(1, [1], seed=0)[0]
    assert "\\boxed{}" in messages(p.problem, Template.plain)[0]["content"]
    assert messages(p.problem, Template.r1)[0]["role"] == "system"
    assert target_text(p, Template.r1).startswith("<think>\n")
    assert target_text(p, Template.plain).endswith(f"\\boxed{{{p.answer}}}.")


@pytest.mark.parametrize("name,rows", [("humaneval", 164), ("mbpp", 257)])
def test_vendored_code_sets_load_with_tests_as_the_answer(name, rows):
    problems = load_problems(f"vendored:{name}")
    assert len(problems) == rows
    for p in problems:
        ref = json.loads(p.answer)
        assert ref["entry_point"] == p.meta["entry_point"] and "assert" in ref["tests"]
        assert p.solution and f"def {p.meta['entry_point']}" in p.solution
        assert "```python" in p.problem


def test_code_template_and_target():
    p = load_problems("vendored:mbpp", n=1)[0]
    assert "```python code block" in messages(p.problem, Template.code)[0]["content"]
    assert target_text(p, Template.code) == f"```python\n{p.solution.rstrip()}\n```"


def test_bad_code_row_is_named(tmp_path):
    path = tmp_path / "code.jsonl"
    path.write_text(json.dumps({"prompt": "Write f.", "entry_point": "f", "tests": "assert f(1) =="}) + "\n")
    with pytest.raises(BadRowError, match="row 1: field 'tests': tests are not valid Python"):
        load_problems(str(path))
