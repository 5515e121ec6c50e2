"""Datasets: vendored files load, bad rows are named, arithmetic problems are right."""

import json
import re

import pytest

from reasoner.data import BadRowError, arithmetic, load_problems
from reasoner.prompts import Template, messages, target_text


@pytest.mark.parametrize(
    "name,rows", [("gsm8k_test", 1319), ("math500", 500), ("aime24", 30), ("aime25", 30), ("amc23", 40)]
)
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


GOOD = b'{"id": "a", "problem": "1+1?", "answer": "2"}\n'
BAD_ROWS = {
    "missing field": (b'{"id": "b", "problem": "2+2?"}', "missing field 'answer'"),
    "null field": (b'{"id": "b", "problem": null, "answer": "4"}', "missing field 'problem'"),
    "empty field": (b'{"id": "b", "problem": "2+2?", "answer": "  "}', "field 'answer' is empty"),
    "wrong-typed problem": (b'{"id": "b", "problem": 4, "answer": "4"}', "field 'problem' must be a string, got int"),
    "wrong-typed solution": (
        b'{"id": "b", "problem": "2+2?", "answer": "4", "solution": [1]}',
        "field 'solution' must be a string, got list",
    ),
    "wrong-typed id": (
        b'{"id": {"x": 1}, "problem": "2+2?", "answer": "4"}',
        "field 'id' must be a string or integer, got dict",
    ),
    "undecodable bytes": (
        b'{"id": "b", "problem": "2+2? \xff\xfe", "answer": "4"}',
        "field 'problem' has text that is not valid UTF-8",
    ),
    "lone surrogate escape": (
        b'{"id": "b", "problem": "2+2? \\ud800", "answer": "4"}',
        "field 'problem' has text that is not valid UTF-8",
    ),
    "not JSON": (b'{"id": "b", "problem": "2+2?", ', "not valid JSON"),
    "not an object": (b'["2+2?", "4"]', "a row must be a JSON object, got list"),
}


@pytest.mark.parametrize("case", BAD_ROWS)
def test_every_bad_row_class_is_named_by_file_and_row(tmp_path, caplog, case):
    line, reason = BAD_ROWS[case]
    path = tmp_path / "rows.jsonl"
    path.write_bytes(GOOD + line + b"\n\n" + GOOD.replace(b'"a"', b'"c"'))  # a blank line, then row 4
    with pytest.raises(BadRowError) as err:
        load_problems(str(path))
    assert re.search(rf"rows.jsonl: row 2: ({reason})", str(err.value)), str(err.value)
    with caplog.at_level("WARNING", logger="reasoner.data.sources"):
        kept = load_problems(str(path), on_bad_row="skip")
    assert sorted(p.id for p in kept) == ["a", "c"]
    assert re.search(rf"rows.jsonl: skipped 1 bad row\(s\) of 3: rows 2 \(row 2: ({reason})", caplog.text), caplog.text


def test_skip_report_lists_every_bad_row_and_all_bad_is_an_error(tmp_path, caplog):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"".join([GOOD, b"oops\n", GOOD, b'{"problem": ""}\n', b"[]\n"]))
    with caplog.at_level("WARNING", logger="reasoner.data.sources"):
        assert len(load_problems(str(path), on_bad_row="skip")) == 2
    assert "mixed.jsonl: skipped 3 bad row(s) of 5: rows 2, 4, 5" in caplog.text
    path.write_bytes(b"oops\n[]\n")
    with pytest.raises(ValueError, match=r"mixed.jsonl: no usable rows \(2 rows, 2 bad and skipped\)"):
        load_problems(str(path), on_bad_row="skip")


def test_json_array_file_rows_are_numbered(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([{"problem": "1+1?", "answer": "2"}, {"problem": "2+2?", "answer": True}]))
    with pytest.raises(BadRowError, match="rows.json: row 2: field 'answer' must be a string or number, got bool"):
        load_problems(str(path))
    path.write_text('[{"problem": "1+1?", "answer": "2"},\n {"problem": ')
    with pytest.raises(ValueError, match=r"rows.json: not valid JSON \(line 2"):
        load_problems(str(path))


def test_missing_file_says_what_was_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"nope.jsonl \(looked for {tmp_path}/nope.jsonl\)"):
        load_problems(str(tmp_path / "nope.jsonl"))
    with pytest.raises(FileNotFoundError, match=r"unknown vendored dataset 'gsm9k'; known: gsm8k_train"):
        load_problems("vendored:gsm9k")


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


def test_tool_demonstrations_are_a_separate_draw_with_the_right_call():
    plain = arithmetic.generate(200, [5], seed=4)
    mixed = arithmetic.generate(200, [5], seed=4, tool_fraction=0.5)
    assert [p.problem for p in plain] == [p.problem for p in mixed] and not any("turns" in p.meta for p in plain)
    demos = [p for p in mixed if "turns" in p.meta]
    assert 70 < len(demos) < 130
    for p in demos:
        call, answer = p.meta["turns"]
        code = call.split("<python>")[1].split("</python>")[0]
        assert str(eval(code.strip().removeprefix("print(").removesuffix(")"))) == p.answer  # noqa: S307 (our own text)
        assert answer.endswith(f"\\boxed{{{p.answer}}}.") and "Step 1:" in p.solution  # the no-tool solution stays


def test_multihop_source_asks_two_hop_questions_of_the_default_world():
    problems = load_problems("multihop", n=30, seed=3)
    again = load_problems("multihop", n=200, seed=4, exclude=[p.problem for p in problems[:10]])
    subjects = lambda ps: {p.meta["chain"][0]["query"] for p in ps}  # noqa: E731
    assert not subjects(problems[:10]) & subjects(again)  # held-out subjects are asked about in no template
    for p in problems:
        first, second, final = p.meta["turns"]
        hops = p.meta["chain"]
        assert f"<search>{hops[0]['query']}</search>" in first and f"<search>{hops[1]['query']}</search>" in second
        assert hops[0]["fact"] in second and final.endswith(f"\\boxed{{{p.answer}}}.")
        assert p.solution == f"{hops[0]['fact']} {hops[1]['fact']}" and p.answer in hops[1]["fact"]
    with pytest.raises(ValueError, match="the 'multihop' source needs a problem count n"):
        load_problems("multihop")
