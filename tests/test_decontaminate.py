"""The evaluation-overlap filter and deduplication, on planted copies of real benchmark problems."""

from __future__ import annotations

import pytest

from reasoner.data import load_problems
from reasoner.data.decontaminate import OverlapFilter, decontaminate, normalize
from reasoner.jobs.common import overlap_filter
from reasoner.types import Problem


@pytest.fixture(scope="module")
def evals():
    return {name: load_problems(f"vendored:{name}") for name in ("math500", "aime24", "gsm8k_test")}


@pytest.fixture(scope="module")
def math_filter():
    return overlap_filter(["math500", "aime24", "gsm8k"], 8, [])


def test_normalize_folds_case_spacing_and_punctuation():
    assert normalize("Find  $x$ if\\, $2x = 6$.") == normalize("find x if 2x = 6")
    assert normalize("A\u00a0B\tC!") == "a b c"


def test_planted_copies_are_caught_and_clean_problems_kept(evals, math_filter):
    m, a, g = evals["math500"][0], evals["aime24"][3], evals["gsm8k_test"][10]
    words = m.problem.split()
    clean = load_problems("arithmetic", n=50, seed=7, levels=[1, 2, 3])
    planted = [
        Problem("exact", m.problem, m.answer),
        Problem("case-and-space", "  " + a.problem.upper().replace(" ", "   ") + "  ", a.answer),
        Problem("latex-spacing", g.problem.replace(" ", "\\, ", 3).replace(".", " ."), g.answer),
        # a near duplicate: new opening sentence, the last words changed, a long run kept
        Problem(
            "rephrased", "Here is a problem from a contest. " + " ".join(words[:-3]) + " and explain why.", m.answer
        ),
    ]
    result = decontaminate([*clean, *planted], math_filter)
    dropped = dict(result.overlaps)
    assert set(dropped) == {"exact", "case-and-space", "latex-spacing", "rephrased"}
    assert dropped["exact"] == "exact match with math500"
    assert dropped["case-and-space"] == "exact match with aime24"
    assert dropped["latex-spacing"] == "exact match with gsm8k"
    assert dropped["rephrased"].startswith("8-gram ") and dropped["rephrased"].endswith("in math500")
    assert [p.id for p in result.kept] == [p.id for p in clean]  # nothing clean dropped, order kept
    assert result.report()["overlaps"] == 4


def test_short_texts_only_match_exactly():
    f = OverlapFilter([("tiny", "What is 2 + 3?")], ngram=8)
    assert f.overlap("what is 2+3") is None  # other tokens after normalization: not the same text
    assert f.overlap("What is 2 + 3 ?") == "exact match with tiny"
    assert f.overlap("What is 2 + 4?") is None


def test_duplicates_keep_the_first(math_filter):
    ps = [
        Problem("a", "Compute 17 * 3.", "51"),
        Problem("b", "compute 17*3", "51"),
        Problem("c", "Compute  17 * 3 .", "51", "worked"),
    ]
    result = decontaminate(ps, None)
    assert [p.id for p in result.kept] == ["a", "b"] and result.duplicates == [("c", "duplicate of a")]
    by_target = decontaminate(
        [Problem("a", "x", "1", "s1"), Problem("b", "x", "1", "s2"), Problem("c", "x", "1", "s1")],
        None,
        key="problem+solution",
    )
    assert [p.id for p in by_target.kept] == ["a", "b"] and by_target.duplicates == [("c", "duplicate of a")]


def test_bad_ngram_and_unknown_benchmark_are_named():
    with pytest.raises(ValueError, match="ngram must be >= 1, got 0"):
        OverlapFilter([], ngram=0)
    with pytest.raises(ValueError, match="no benchmark named 'math501'"):
        overlap_filter(["math501"], 8, [])
