"""Benchmark registry: the seven built-ins load with their protocol, a package registers its own
through the entry-point group, and bad names are named."""

from __future__ import annotations

import json
import sys

import pytest

from eval.benchmarks import BUILTIN, get_benchmark, registered
from reasoner.prompts import Template


@pytest.mark.parametrize(
    "name, rows, template",
    [
        ("aime24", 30, Template.plain),
        ("aime25", 30, Template.plain),
        ("amc23", 40, Template.plain),
        ("math500", 500, Template.plain),
        ("gsm8k", 1319, Template.plain),
        ("humaneval", 164, Template.code),
        ("mbpp", 257, Template.code),
    ],
)
def test_builtin_benchmarks_load_with_the_protocol(name, rows, template):
    bench = get_benchmark(name)
    problems = bench.problems()
    assert len(problems) == rows and len({p.id for p in problems}) == rows
    assert bench.template is template
    assert (bench.sampling.temperature, bench.sampling.top_p) == (0.6, 0.95)
    assert bench.vote is (template is Template.plain)
    # a subset is the same prefix of a fixed shuffle in every call (runs compare problem by problem)
    assert [p.id for p in bench.problems(5)] == [p.id for p in bench.problems(5)] == [p.id for p in problems[:5]]


def test_math500_rows_carry_level_and_subject():
    problems = get_benchmark("math500").problems()
    assert {p.meta["level"] for p in problems} == {1, 2, 3, 4, 5}
    assert len({p.meta["subject"] for p in problems}) == 7
    assert get_benchmark("math500").breakdown == ("level", "subject")


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """An installed-looking package registering benchmark `tiny_qa` (and, optionally, a clash)."""
    data = tmp_path / "qa.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n" for i in range(6)
        )
    )
    (tmp_path / "my_benchmarks.py").write_text(
        "from eval.benchmarks import Benchmark, Sampling\n"
        "from reasoner.config import Template\n"
        f"TINY_QA = Benchmark('tiny_qa', {str(data)!r}, Template.plain,\n"
        "    {'_target_': 'verifiers.math.MathVerifier', 'workers': 1}, Sampling(4, 1.0, 1.0, 64))\n"
        "def make():\n    return TINY_QA\n"
    )
    dist = tmp_path / "my_benchmarks-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-benchmarks\nVersion: 0.1\n")
    entries = dist / "entry_points.txt"
    entries.write_text("[reasoner.benchmarks]\ntiny_qa = my_benchmarks:make\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield entries
    sys.modules.pop("my_benchmarks", None)


def test_a_package_registers_a_benchmark_through_the_entry_point_group(plugin):
    assert set(registered()) == set(BUILTIN) | {"tiny_qa"}
    bench = get_benchmark("tiny_qa")
    assert bench.sampling.n == 4 and sorted(p.answer for p in bench.problems()) == ["0", "10", "2", "4", "6", "8"]


def test_an_entry_point_may_not_shadow_a_builtin(plugin):
    plugin.write_text("[reasoner.benchmarks]\naime24 = my_benchmarks:make\n")
    with pytest.raises(ValueError, match="reuses the built-in benchmark name 'aime24'"):
        registered()


def test_unknown_benchmark_is_named():
    with pytest.raises(ValueError, match="no benchmark named 'aime26'; registered: aime24, aime25, amc23, math500"):
        get_benchmark("aime26")


def test_free_form_applies_to_the_math_verifier_only():
    from eval.benchmarks import get_benchmark, with_free_form

    math, code = get_benchmark("math500"), get_benchmark("humaneval")
    assert with_free_form(math, True).verifier == {**math.verifier, "free_form": True}
    assert with_free_form(math, False) is math and with_free_form(code, True) is code
