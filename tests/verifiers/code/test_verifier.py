"""CodeVerifier API: extraction, scoring modes, test styles, reasons, errors."""

from __future__ import annotations

import json
import pickle

import pytest

from verifiers.code import CodeVerifier, verify, verify_batch
from verifiers.code.extract import extract_program
from verifiers.code.suite import parse_suite, reference, same_output

DOUBLE = "```python\ndef f(x):\n    return 2 * x\n```"
TESTS = "assert f(1) == 2\nassert f(2) == 4\nassert f(3) == 6\nassert f(4) == 8\n"


def test_correct_program_passes():
    r = verify(DOUBLE, TESTS)
    assert (r.correct, r.score, r.reason) == (True, 1.0, "passed")
    assert r.extracted == "def f(x):\n    return 2 * x\n"


def test_fraction_and_all_or_nothing_scoring():
    # right for x < 3 only: units 1 and 2 of 4 pass
    partial = "```python\ndef f(x):\n    return 2 * x if x < 3 else 0\n```"
    r = verify(partial, TESTS)
    assert (r.correct, r.score) == (False, 0.5) and r.reason.startswith("failed 2/4: line 3: AssertionError")
    strict = CodeVerifier(scoring="all")
    assert strict.verify(partial, TESTS).score == 0.0
    strict.close()


def test_no_code_and_load_error():
    assert verify("the answer is 2x", TESTS).reason == "no code"
    r = verify("```python\ndef f(x):\n    return 2 *\n```", TESTS)
    assert r.score == 0.0 and r.reason.startswith("load error: SyntaxError")


def test_extraction_takes_the_last_python_block():
    text = "```python\ndef f(x):\n    return 0\n```\nfixed:\n" + DOUBLE + "\n```bash\nls\n```"
    assert verify(text, TESTS).correct
    assert extract_program("```python\nunclosed") is None
    assert extract_program("x = 1", "whole") == "x = 1"
    with pytest.raises(ValueError, match="unknown extraction rule 'first'"):
        extract_program("", "first")


def test_humaneval_style_entry_point_and_builtin_shadowing():
    check = "def check(candidate):\n    assert candidate(2) == 4\n"
    assert verify(DOUBLE, check, entry_point="f").correct
    # the entry point may shadow a built-in (MBPP's `sum`); other built-ins stay the tests' own
    program = "```python\ndef sum(a, b):\n    return a - b\ndef abs(x):\n    return 0\n```"
    assert verify(program, "assert sum(3, 1) == 2", entry_point="sum").correct
    assert not verify(program, "assert abs(-5) == 0", entry_point="sum").correct
    assert verify(program, reference("assert sum(3, 1) == 2", "sum")).correct


def test_values_cross_as_plain_data():
    # tuples, sets, dicts with tuple keys, big ints, floats, bytes, None and a generator
    program = (
        "```python\nfrom collections import Counter\n"
        "def f(x):\n    return ((1, 2), {3}, {(4, 5): [6.5]}, 2**100, b'hi', None, Counter('aab'))\n"
        "def g():\n    return (i * i for i in range(3))\n```"
    )
    tests = (
        "assert f(0) == ((1, 2), {3}, {(4, 5): [6.5]}, 2**100, b'hi', None, {'a': 2, 'b': 1})\n"
        "assert list(g()) == [0, 1, 4]\n"
    )
    assert verify(program, tests).correct


def test_tests_expecting_an_exception():
    program = "```python\ndef f(x):\n    if x < 0:\n        raise ValueError('negative')\n    return 2 * x\n```"
    tests = "try:\n    f(-1)\n    raise AssertionError('no error')\nexcept ValueError:\n    pass\n"
    # a try statement is setup, not a unit: add one unit after it
    assert verify(program, tests + "assert f(1) == 2\n").correct


def test_stdio_cases_are_compared_outside():
    program = "```python\nn = int(input())\nprint(n * 2)\nprint('done')\n```"
    cases = [
        {"input": "3\n", "output": "6\ndone\n"},
        {"input": "5", "output": "10\ndone"},
        {"input": "1", "output": "2"},
    ]
    r = verify(program, json.dumps(cases))
    # case 3 expects one line but gets two: a correct prefix is not a pass
    assert (r.correct, r.score) == (False, 2 / 3) and r.reason == "failed 1/3: case 2: wrong output"
    assert same_output("a  \nb\n\n", "a\nb") and not same_output("a\nb", "a")


def test_batch_keeps_order():
    pairs = [
        (DOUBLE, TESTS),
        ("nothing", TESTS),
        ("```python\ndef f(x):\n    return x * x\n```", TESTS),
    ]  # x*x: only f(2)
    assert [r.score for r in verify_batch(pairs)] == [1.0, 0.0, 0.25]


@pytest.mark.parametrize(
    "tests,match",
    [
        ("assert f(1) ==", "tests are not valid Python"),
        ("import math\nx = 1\n", "tests have no assert or expression statement"),
        ("[]", "stdio tests have no case"),
    ],
)
def test_malformed_tests_raise_naming_the_problem(tests, match):
    with pytest.raises(ValueError, match=match):
        parse_suite(tests)
    with pytest.raises(ValueError, match=f"pair 0: {match}"):
        CodeVerifier().verify_batch([(DOUBLE, tests)])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown scoring 'most'"):
        CodeVerifier(scoring="most")
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        CodeVerifier(timeout_s=0)
    with pytest.raises(ValueError, match="entry_point must be a Python identifier"):
        parse_suite("assert True", "f(x)")


def test_verifier_pickles_and_works_after():
    v = CodeVerifier(timeout_s=5.0)
    assert v.verify(DOUBLE, TESTS).correct
    clone = pickle.loads(pickle.dumps(v))
    assert clone.verify(DOUBLE, TESTS).correct
    v.close()
    clone.close()


def test_only_the_in_order_prefix_of_a_report_counts():
    # the parent trusts no record numbering: repeated, reordered or malformed records do not add passes
    from verifiers.code.sandbox import RunOutput

    suite = parse_suite(json.dumps([{"input": "", "output": "a"}, {"input": "", "output": "b"}]))
    rec = lambda unit, out: {"unit": unit, "stdout": out, "exit": 0}  # noqa: E731
    score = lambda records: CodeVerifier()._score("p", suite, RunOutput(records=records + [{"done": 2}])).score  # noqa: E731
    assert score([rec(0, "a"), rec(1, "b")]) == 1.0
    assert score([rec(0, "a"), rec(0, "a"), rec(1, "b")]) == 0.5
    assert score([rec(1, "b"), rec(0, "a")]) == 0.0
    assert score([rec("0", "a"), {"unit": [1]}]) == 0.0
