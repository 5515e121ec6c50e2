"""Math verifier: extraction, normalization, equivalence tiers, the labeled set, hard time limits."""

import json
import os
import signal
import time
from pathlib import Path

import pytest
import sympy

from verifiers.math import MathVerifier, judge, verify, verify_batch
from verifiers.math.equivalence import equivalent
from verifiers.math.extract import FREE_FORM, extract_answer, gold_answer, last_boxed
from verifiers.math.normalize import normalize
from verifiers.math.parse import log10_size, parse

DATA = Path(__file__).parent / "data"
BUDGET_S = 1.0


@pytest.fixture(scope="module")
def verifier():
    v = MathVerifier(timeout_s=BUDGET_S, workers=2, fallbacks=("phrase", "last_number"))
    v.verify("\\boxed{1}", "1")  # start the pool outside any timed region
    yield v
    v.close()


# --- the labeled set ------------------------------------------------------------------------


def _labeled() -> list[dict]:
    return [json.loads(line) for line in (DATA / "math_labeled.jsonl").open()]


def test_labeled_set_has_both_labels_for_every_kind():
    rows = _labeled()
    kinds = {r["kind"] for r in rows}
    assert {"gold_form", "multi_answer", "units_text", "structures", "free_form", "no_false_number"} <= kinds
    for kind in kinds:
        labels = [r["label"] for r in rows if r["kind"] == kind]
        assert len(labels) > 10 and {True, False} <= set(labels), (kind, len(labels))


def test_labeled_set_accuracy():
    rows = _labeled()
    assert len(rows) >= 300 and {r["label"] for r in rows} == {True, False}
    # a generous budget: this test is about verdicts (the time limit has its own tests below),
    # and a CI core shared with other jobs can push a 50 ms comparison past 1 s
    v = MathVerifier(timeout_s=10.0, workers=2, free_form=True)
    try:
        results = v.verify_batch([(r["completion"], r["gold"]) for r in rows])
    finally:
        v.close()
    wrong = [(r["gold"], r["note"], v.extracted, v.reason) for r, v in zip(rows, results) if v.correct != r["label"]]
    # math-verify 0.9.0 scores 0.943 on this set (python -m bench.verifier); 2% wrong at most keeps us above it.
    assert len(wrong) <= 0.02 * len(rows), wrong
    for kind in {r["kind"] for r in rows}:  # and no kind may lag: math-verify's lowest per-kind score is 0.83
        mine = [(r, v) for r, v in zip(rows, results) if r["kind"] == kind]
        assert sum(v.correct == r["label"] for r, v in mine) >= 0.9 * len(mine), kind


# --- extraction -----------------------------------------------------------------------------


def test_last_box_nested_braces_and_fbox():
    assert last_boxed("\\boxed{\\frac{a}{\\sqrt{b}}}") == "\\frac{a}{\\sqrt{b}}"
    assert last_boxed("x \\fbox{7} y") == "7"
    assert last_boxed("\\boxed 5") == "5"
    assert last_boxed("\\boxed{3} then \\boxed{4") == "3"  # an unclosed last box falls back
    assert last_boxed("no box") is None


def test_box_runs_are_answer_sets():
    assert last_boxed("\\boxed{2}, \\boxed{5}") == "2, 5"
    assert last_boxed("The integers are $\\boxed{-2}$ and $\\boxed{1}$.") == "-2, 1"
    assert last_boxed("\\boxed{(1, 3)} \\text{ and } \\boxed{(3, 1)}") == "(1, 3), (3, 1)"
    assert last_boxed("x = \\boxed{3}, so we check again and get \\boxed{4}") == "4"  # words apart: the last


def test_gold_answer_out_of_a_solution():
    assert gold_answer("We count $3 + 4 = 7$. Hence \\[ \\boxed{7} \\]") == "7"
    assert gold_answer("The roots are $\\boxed{-2}$ and $\\boxed{1}$.") == "-2, 1"
    assert gold_answer("$(m,n)=(4,1)$") == "$(m,n)=(4,1)$"  # no box: labels are the parser's job
    long = "Dividing the total by four gives the share of each. Final Answer: The final answer is $28 \\%$."
    assert gold_answer(long) == "28 \\%"


@pytest.mark.parametrize(
    "completion, gold, correct",
    [
        # the issue's examples of golds that are not bare answers, both labels
        ("\\boxed{(4,1)}", "$(m,n)=(4,1)$", True),
        ("\\boxed{(1,4)}", "$(m,n)=(4,1)$", False),
        ("\\boxed{3:5}", "$AB:CD=3:5$", True),
        ("\\boxed{5:3}", "$AB:CD=3:5$", False),
        ("\\boxed{7}", "Hence the count is \\[ \\boxed{7} \\]", True),
        ("\\boxed{6}", "Hence the count is \\[ \\boxed{7} \\]", False),
        ("\\boxed{(m,n)=(4,1)}", "(4,1)", True),
        ("\\boxed{(m,n)=(4,2)}", "(4,1)", False),
        # several answers: compared as sets, one extra or missing is wrong
        ("\\boxed{2}, \\boxed{5}", "2, 5", True),
        ("\\boxed{5}, \\boxed{2}, \\boxed{7}", "2, 5", False),
        ("\\boxed{2}", "2, 5", False),
        ("\\boxed{4 \\text{ and } 9}", "4, 9", True),
        ("\\boxed{(1, 3)} and \\boxed{(3, 1)}", "(3,1), (1,3)", True),
        ("\\boxed{(5,2) or (2,5)}", "(2,5), (5,2)", True),
        ("\\boxed{(5,2) or (2,6)}", "(2,5), (5,2)", False),
        # units and text in the box
        ("\\boxed{42 \\textnormal{ cm}}", "42", True),
        ("\\boxed{24 \\textnormal{ cm}}", "42", False),
        ("\\boxed{15\\mbox{ cm}^2}", "15", True),
        ("\\boxed{9 \\mathrm{m}}", "90", False),
        # structures
        (
            "\\boxed{\\left[\\begin{array}{cc}1 & 2 \\\\ 3 & 4\\end{array}\\right]}",
            "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}",
            True,
        ),
        ("\\boxed{\\begin{bmatrix}1 & 2 \\\\ 3 & 5\\end{bmatrix}}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", False),
        ("\\boxed{\\left( \\frac{4}{5}, \\frac{1}{5} \\right)}", "(0.8, 0.2)", True),
        ("\\boxed{\\left( \\frac{1}{5}, \\frac{4}{5} \\right)}", "(0.8, 0.2)", False),
        (
            "\\boxed{\\begin{pmatrix}1 \\\\ 2\\end{pmatrix} + \\begin{pmatrix}3 \\\\ 4\\end{pmatrix}}",  # carried out
            "\\begin{pmatrix}4 \\\\ 6\\end{pmatrix}",
            True,
        ),
        (
            "\\boxed{\\begin{pmatrix}1 \\\\ 2\\end{pmatrix} + \\begin{pmatrix}3 \\\\ 4\\end{pmatrix}}",  # carried out
            "\\begin{pmatrix}4 \\\\ 5\\end{pmatrix}",
            False,
        ),
        ("\\boxed{5 \\geq x}", "x \\leq 5", True),
        ("\\boxed{5 \\leq x}", "x \\leq 5", False),
        ("\\boxed{\n(-\\infty, -3]\n\\cup [2, \\infty)\n}", "(-\\infty,-3]\\cup[2,\\infty)", True),  # line breaks
        ("\\boxed{\n(-\\infty, -3)\n\\cup [2, \\infty)\n}", "(-\\infty,-3]\\cup[2,\\infty)", False),
    ],
)
def test_issue_kinds(completion, gold, correct):
    assert judge(completion, gold).correct == correct


@pytest.mark.parametrize(
    "candidates",
    [
        "\\boxed{5}, \\boxed{7}",
        "\\boxed{7} or \\boxed{5}",
        "\\boxed{5 \\text{ or } 7}",
        "\\boxed{5, 7}",
        "\\boxed{\\{5, 7\\}}",
        "\\boxed{x = 5 \\text{ or } x = 7}",
        "\\boxed{\\pm 5}",
        "The answer is $5$ or $7$.",
    ],
)
def test_a_list_of_candidates_never_matches_a_single_gold(candidates):
    for gold in ("5", "7", "$x = 5$"):
        assert not judge(candidates, gold, free_form=True).correct, (candidates, gold)


@pytest.mark.parametrize(
    "text, gold",
    [
        ("The ratio simplifies to $\\frac{3+\\sqrt{7}}{4}$", "4"),
        ("so the value is \\(x^3\\)", "3"),
        ("we get $2^{10}$ in the end", "10"),
        ("The code we found is QX7Z", "7"),
        ("It is H2O", "2"),
        ("look at the vector v_3", "3"),
        ("then a_7 follows", "7"),
        ("We computed x2 and then y3", "3"),
        ("so the answer is 2x", "2"),
    ],
)
def test_no_fallback_takes_a_digit_out_of_latex_a_word_or_an_identifier(text, gold):
    for fallbacks in (["last_number"], ["latex"], ["phrase"], ["phrase", "latex", "last_number"]):
        found = extract_answer(text, fallbacks)
        assert found is None or normalize(found) != gold, (fallbacks, found)
        assert not judge(text, gold, fallbacks).correct, fallbacks


@pytest.mark.parametrize(
    "text, answer",
    [
        ("so the area is $\\frac{14}{3}$.", "\\frac{14}{3}"),
        ("Answer: \\( 9 \\)", "9"),
        ("Final Answer: The final answer is $28 \\%$. I hope it is correct.", "28 \\%"),
        ("Réponse : $\\frac{1}{2}$", "\\frac{1}{2}"),
        ("Por lo tanto, la respuesta es 3.5.", "3.5"),
        ("Die Antwort ist $\\sqrt{2}$.", "\\sqrt{2}"),
        ("因此，答案是 12。", "12"),
        ("Ответ: 7", "7"),
        ("Final Answer: The largest $n$ is 34.", "34"),
        ("**Answer:** 42", "42"),
        ("The answer is $ \n 9 \n $", None),  # inline math across line breaks is malformed: nothing
        ("The answer is \\( \n 9 \n \\)", None),
        ("The answer is \\[ \n 9 \n \\]", "9"),  # display math may span lines
        ('Final Answer: The final answer is "$12$ and $13$".', "12, 13"),
        ("The answer is $12$ and $13$.", "12, 13"),
        ("Earlier $x = 3$; in the end there are 12 sequences.", "12"),
        ("\\frac{10}{9}", "\\frac{10}{9}"),
        ("so it equals 1024", "1024"),
        ("The rope is 5cm long", "5"),
        ("$\\boxed{200}$ is half. Final Answer: The final answer is $10,455$.", "10,455"),
    ],
)
def test_free_form_extraction(text, answer):
    assert extract_answer(text, FREE_FORM) == answer
    assert extract_answer(text) == (None if "boxed" not in text else "200")  # off by default


def test_free_form_argument():
    pairs = [("The answer is $\\frac{1}{2}$.", "0.5"), ("\\boxed{3}", "3")]
    boxed_only = MathVerifier(timeout_s=5.0, workers=1)
    free_form = MathVerifier(timeout_s=5.0, workers=1, free_form=True)
    try:
        assert [r.correct for r in boxed_only.verify_batch(pairs)] == [False, True]
        assert [r.correct for r in free_form.verify_batch(pairs)] == [True, True]
        assert free_form.fallbacks == FREE_FORM
    finally:
        boxed_only.close()
        free_form.close()
    with pytest.raises(ValueError, match="unknown answer fallback 'words'"):
        MathVerifier(fallbacks=["words"])


def test_fallbacks_are_opt_in_and_ordered():
    text = "answer: 12 apples, then 13"
    assert extract_answer(text) is None
    assert extract_answer(text, ["last_number"]) == "13"
    assert extract_answer("The final answer is $\\frac{1}{2}$.", ["phrase"]) == "\\frac{1}{2}"
    assert extract_answer("So the answer is 42.\nDone", ["phrase"]) == "42"
    assert extract_answer("<answer> 7 </answer> and 9", ["phrase", "last_number"]) == "7"
    assert extract_answer("#### 1,234", ["phrase"]) == "1,234"
    with pytest.raises(ValueError, match="last_number"):
        extract_answer("x", ["bogus"])


# --- normalization --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, canonical",
    [
        ("\\$1,250.50", "1250.50"),  # money and thousands separator
        ("10,\\!080", "10080"),
        ("864 \\mbox{ inches}^2", "864"),  # units with a power
        ("18 dollars", "18"),
        ("5 r^5", "5r^5"),  # a one-letter word is a variable, not a unit
        ("90^\\circ", "90"),
        ("\\text{(C)}", "C"),
        ("\\textbf{(C)}", "C"),
        ("\\text{An Ellipse}", "\\text{ellipse}"),
        ("Monday", "\\text{monday}"),
        ("0.1\\overline{6}", "\\frac{15}{90}"),  # (16 - 1) / (10 * 9)
        ("4 2/3", "4\\frac{2}{3}"),
        ("\\left( 3, \\dfrac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
        ("\\pi r^2", "\\pi r^2"),
        ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
        ("\\boxed{x \\le 2}", "x\\leq2"),
        ("$x \\ge 2$.", "x\\geq2"),
    ],
)
def test_normalize(raw, canonical):
    assert normalize(raw) == canonical


# --- equivalence tiers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "pred, gold, correct, reason",
    [
        ("\\dfrac{1}{2}", "\\frac12", True, "numeric match"),  # normalize leaves \frac12 as is
        ("0.5", "\\frac{1}{2}", True, "numeric match"),
        ("2\\sqrt{2}", "\\sqrt{8}", True, "numeric match"),
        ("123456789012345678901234567891", "123456789012345678901234567890", False, "mismatch"),
        ("\\frac{1}{2^{99}}", "\\frac{1}{2^{98}}", False, "mismatch"),
        ("0.333", "\\frac{1}{3}", False, "mismatch"),  # off by 1e-3 relative, REL_TOL is 1e-6
        ("0.3333333", "\\frac{1}{3}", True, "numeric match"),  # off by 1e-7 relative
        ("25\\%", "\\frac14", True, "numeric match"),
        ("(x+1)^2", "x^2+2x+1", True, "symbolic match"),
        ("(x+1)^2", "x^2+2x+2", False, "mismatch"),
        ("x = 3", "3", True, "numeric match"),
        ("y = \\frac{1}{2}x - 1", "x - 2y - 2 = 0", True, "symbolic match"),
        ("3x-y+13=0", "3x+4y+14=0", False, "mismatch"),
        ("x \\geq 3", "[3, \\infty)", True, "symbolic match"),
        ("3, 2", "2, 3", True, "symbolic match"),
        ("(3, 2)", "(2, 3)", False, "mismatch"),
        ("\\pm 2", "2", False, "mismatch"),
        ("1 \\pm \\sqrt{2}", "1+\\sqrt2, 1-\\sqrt2", True, "symbolic match"),
        ("4i+3", "3+4i", True, "numeric match"),
        (
            "\\begin{pmatrix} 0.5 \\\\ 2 \\end{pmatrix}",
            "\\begin{pmatrix} \\frac12 \\\\ 2 \\end{pmatrix}",
            True,
            "symbolic match",
        ),
        ("12:00", "1:00", False, "mismatch"),
        ("\\text{odd}", "\\text{even}", False, "mismatch"),
        ("7", "\\text{no solution}", False, "mismatch"),
    ],
)
def test_equivalent(pred, gold, correct, reason):
    got = equivalent(pred, gold)
    assert got[:2] == (correct, reason), got


@pytest.mark.parametrize(
    "pred, gold, correct",
    [
        ("1,22", "1.22", True),  # a predicted decimal comma
        ("1000,99", "1000.99", True),
        ("32,349", "32.349", False),  # three digits after the comma: a thousands group
        ("1, 22", "1.22", False),  # a comma and a space: a list
        ("-2.1", "-2,1", False),  # a gold "-2,1" is two roots
        ("0.111", "0,111", True),  # a gold that cannot be a list of roots
    ],
)
def test_decimal_comma(pred, gold, correct):
    assert equivalent(pred, gold)[0] == correct


def test_string_match_reports_the_normal_forms():
    assert equivalent("\\dfrac{3}{4}", "\\frac{3}{4}") == (True, "string match", ("\\frac{3}{4}", "\\frac{3}{4}"))


@pytest.mark.parametrize("answer", ["10^{10^{10}}", "9^{9^{9^{9}}}", "(10^{100})!", "\\sin(10^{10^{5}})"])
def test_huge_values_are_refused_before_evaluation(answer):
    with pytest.raises(ValueError, match="digits"):
        parse(answer)


def test_size_bound():
    # 2^100 has 31 digits; the bound is 100 * size(2) = 100 * (2 + 1 bits of 2/1) * 0.30103 = 90.3
    assert log10_size(parse("2^{100}")) == pytest.approx(90.309)
    assert log10_size(parse("\\frac{1}{1+\\frac{1}{1+\\frac{1}{2}}}")) < 10  # x^{-1} costs no more than x
    correct, reason, _ = equivalent("10^{10^{10}}", "5")
    assert not correct and reason.startswith("unparsed: ValueError")


@pytest.mark.parametrize(
    "answer, value",
    [
        ("(3,4]", sympy.Interval.Lopen(3, 4)),
        ("(3,\\frac{\\pi}{2})", sympy.Tuple(3, sympy.pi / 2)),
        ("\\{1\\pm\\sqrt{5},-2\\}", sympy.FiniteSet(1 + sympy.sqrt(5), 1 - sympy.sqrt(5), -2)),
        ("(0,9)\\cup(9,36)", sympy.Union(sympy.Interval.open(0, 9), sympy.Interval.open(9, 36))),
        ("x\\in[-2,7]", sympy.Interval(-2, 7)),
        ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", sympy.ImmutableMatrix([[1, 2], [3, 4]])),
        ("3,5,7", sympy.FiniteSet(3, 5, 7)),
        # SLL prediction fails on this polynomial; the LL retry must give the same tree as latex2sympy
        ("x^5-x^4+x^3-x^2+x-1", sympy.sympify("x**5 - x**4 + x**3 - x**2 + x - 1")),
        ("3+4i", 3 + 4 * sympy.I),
    ],
)
def test_parse_structures(answer, value):
    assert sympy.sstr(parse(answer)) == sympy.sstr(value)  # as text: parsed symbols carry assumptions


def test_module_level_api():
    r = verify("so \\boxed{\\frac{3}{4}}", "0.75")
    assert r.correct and r.score == 1.0 and r.extracted == "\\frac{3}{4}" and r.parsed == ("3/4", "0.75")
    rs = verify_batch([("\\boxed{1}", "1"), ("no box", "1"), ("\\boxed{2}", "1")])
    assert [(r.correct, r.reason) for r in rs] == [(True, "string match"), (False, "no answer"), (False, "mismatch")]
    assert judge("\\boxed{2}", "1") == rs[2]


# --- hard limits ----------------------------------------------------------------------------


def _pathological() -> list:
    rows = [json.loads(line) for line in (DATA / "math_pathological.jsonl").open()]
    return [
        pytest.param(r["prefix"] + r["body"] * r["times"] + r["suffix"], r["gold"], r["label"], id=r["name"])
        for r in rows
    ]


@pytest.mark.parametrize("completion, gold, label", _pathological())
def test_pathological_input_finishes_within_budget(verifier, assert_within, completion, gold, label):
    verifier._pool.wait_ready()  # a replacement for an earlier test's timed-out worker is not this input's time
    start = time.monotonic()
    r = verifier.verify(completion, gold)
    elapsed = time.monotonic() - start
    # never a false positive; a true pair may run out of budget (the degree-60 identity does on a busy core)
    assert r.correct == label or (label and r.reason == "timeout"), r
    assert_within(elapsed, BUDGET_S + 0.5, f"verdict ({r.reason})")


def test_idle_worker_killed_then_next_batch_is_scored():
    v = MathVerifier(timeout_s=5.0, workers=2)
    pairs = [("\\boxed{\\frac{1}{2}}", "0.5"), ("\\boxed{3}", "4"), ("\\boxed{x^2}", "x \\cdot x")]
    try:
        expected = v.verify_batch(pairs)
        for pid in v._pool.pids:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        assert v.verify_batch(pairs) == expected and [r.correct for r in expected] == [True, False, True]
    finally:
        v.close()


def test_timeout_kills_and_pool_heals(assert_within):
    # simplify() of a degree-40 expansion runs far beyond 0.3 s; the verdict must come back anyway
    v = MathVerifier(timeout_s=0.3, workers=1)
    try:
        v.verify("\\boxed{1}", "1")
        start = time.monotonic()
        r = v.verify("\\boxed{(x+y+z)^{40} - (x+y+z)^{39} (x+y+z) + \\sin(x)^2 + \\cos(x)^2}", "1 + x - x")
        elapsed = time.monotonic() - start
        assert r.reason == "timeout" and not r.correct and r.extracted.startswith("(x+y+z)^{40}"), r
        assert v.verify("\\boxed{2}", "2").correct  # the replacement worker answers
        assert_within(elapsed, 0.3 + 0.5, "a timed-out verdict")
    finally:
        v.close()


# A training step in its own session (so the signal cannot reach the test runner): it scores a
# batch once without interruption, then again on a fresh verifier (cold workers, so the batch takes
# long enough) while Ctrl-C reaches the whole process group; the trainer's handler only notes it.
MATH_SIGNAL_STEP = """
import json, os, signal, threading, time
from verifiers.math import MathVerifier

def main():
    rows = [json.loads(line) for line in open("tests/verifiers/data/math_labeled.jsonl")][:64]
    pairs = [(r["completion"], r["gold"]) for r in rows]
    caught = []
    signal.signal(signal.SIGINT, lambda *_: caught.append(time.monotonic()))
    calm = MathVerifier(timeout_s=10.0, workers=2)
    expected = [(v.correct, v.reason) for v in calm.verify_batch(pairs)]
    calm.close()
    v = MathVerifier(timeout_s=10.0, workers=2)
    v.verify("\\\\boxed{1}", "1")  # start the pool
    sent = threading.Timer(0.05, os.killpg, (0, signal.SIGINT))
    sent.start()
    step = [(r.correct, r.reason) for r in v.verify_batch(pairs)]
    step_end = time.monotonic()
    sent.join()
    after = [(r.correct, r.reason) for r in v.verify_batch(pairs)]
    print(json.dumps({"expected": expected, "step": step, "after": after, "restarts": v._pool.restarts,
                      "during_step": bool(caught) and caught[0] < step_end}))
    v.close()

if __name__ == "__main__":
    main()
"""


def test_sigint_to_the_process_group_during_a_verify_step(run_in_new_session):
    got = run_in_new_session(MATH_SIGNAL_STEP, timeout_s=120)
    assert got["during_step"], "the signal arrived after the step: the step was too fast to interrupt"
    assert got["step"] == got["expected"] and got["after"] == got["expected"]  # no verdict lost or changed
    assert got["restarts"] == 0 and sum(c for c, _ in got["expected"]) > 10
