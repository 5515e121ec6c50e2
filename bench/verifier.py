"""Benchmark `verifiers.math` side by side with Hugging Face's math-verify, in one run.

Measures, on the labeled set in ``tests/verifiers/data/math_labeled.jsonl``:

- accuracy against the hand labels, overall and per ``kind`` of pair (ours with
  ``free_form=True``: boxes, then answer phrases, LaTeX spans and standalone numbers; math-verify
  with its default extraction, the gold as is when it has a box or math delimiters, else wrapped
  in ``\\boxed{}`` as veRL's math-verify reward does);
- one process, one core: cases per CPU second of the process (robust to a machine shared with
  other jobs) and per wall-clock second, over the whole set, and p50 / p95 / max CPU time per
  case (ours: `verifiers.math.judge`; math-verify: ``parse`` both sides + ``verify``), runs
  interleaved;
- ours through the worker pool (`MathVerifier.verify_batch`, 1 s budget): cases/s;
- the pathological inputs in ``tests/verifiers/data/math_pathological.jsonl``: latency of each
  (math-verify runs in a killable worker capped at `MV_CAP_S` seconds);
- the verify phase of one GRPO step: `MathVerifier.verify_batch` on 64 arithmetic completions
  (B=8 prompts x G=8) of 50-130 tokens, as `reasoner.rl_step` calls it, and on batches of 64
  MATH / GSM8K / AIME pairs of the labeled set (harder answers, for contrast); every batch is new
  to the verifier, so its parse cache helps only within a batch.

Run (math-verify only in the benchmark environment: ``pip install -e '.[bench]'``)::

    nice -n 10 python -m bench.verifier --runs 3 > section.md   # then append to BENCHMARKS.md
    python -m bench.verifier --grpo-batch-only                  # only the GRPO batch (any version)
    python -m bench.verifier --kinds-only                       # only accuracy per kind (untimed)

Wall-clock times come from ``time.perf_counter``, CPU times from ``time.process_time``; each
number is the min and the median over `--runs` runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Callable

from verifiers.math import MathVerifier
from verifiers.pool import TimeoutPool

DATA = Path(__file__).resolve().parent.parent / "tests" / "verifiers" / "data"
MV_CAP_S = 12.0


def labeled() -> list[dict]:
    return [json.loads(line) for line in (DATA / "math_labeled.jsonl").open()]


def pathological() -> list[dict]:
    rows = [json.loads(line) for line in (DATA / "math_pathological.jsonl").open()]
    return [{**r, "completion": r["prefix"] + r["body"] * r["times"] + r["suffix"]} for r in rows]


def ours(completion: str, gold: str) -> bool:
    from verifiers.math import judge  # imported here: --grpo-batch-only also runs older versions

    return judge(completion, gold, free_form=True).correct


def math_verify(completion: str, gold: str) -> bool:
    """math-verify's verdict; its timeouts and parse errors count as "not correct"."""
    from math_verify import parse, verify

    delimited = any(mark in gold for mark in ("\\boxed", "$", "\\(", "\\["))
    try:
        return bool(verify(parse(gold if delimited else "\\boxed{" + gold + "}"), parse(completion)))
    except BaseException as exc:  # its TimeoutException derives from BaseException
        if isinstance(exc, KeyboardInterrupt):
            raise
        return False


def timed_pass(fn: Callable[[str, str], bool], rows: list[dict]) -> tuple[list[bool], list[float], list[float]]:
    """Verdicts, wall-clock seconds and CPU seconds of this process, per row."""
    verdicts, wall, cpu = [], [], []
    for r in rows:
        start, start_cpu = time.perf_counter(), time.process_time()
        verdicts.append(fn(r["completion"], r["gold"]))
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    return verdicts, wall, cpu


def quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def arithmetic_batches(n: int) -> list[list[tuple[str, str]]]:
    """`n` GRPO batches like the embedded default's: 8 problems x 8 completions of worked
    arithmetic steps (50-130 tokens), a third of them with a wrong boxed result, one in 8 unboxed."""
    from reasoner.data.arithmetic import make_problem

    rng, pairs = random.Random(0), []
    while len(pairs) < 64 * n:
        problem = make_problem(rng.choice((2, 3, 4)), rng)
        if problem is None:
            continue
        for g in range(8):
            answer = int(problem.answer) + (0 if g % 3 else rng.choice((-10, -1, 1, 2)))
            tail = f"\nThe answer is \\boxed{{{answer}}}." if g != 7 else "\nI am not sure."
            pairs.append((f"Let me solve {problem.problem} step by step.\n{problem.solution}{tail}", problem.answer))
    return [pairs[i : i + 64] for i in range(0, 64 * n, 64)]


def labeled_batches() -> list[list[tuple[str, str]]]:
    """The labeled set's MATH / GSM8K / AIME pairs, in file order, cut into batches of 64."""
    pairs = [(r["completion"], r["gold"]) for r in labeled() if r["kind"] in ("math500", "math_train", "gsm8k", "aime")]
    return [pairs[i : i + 64] for i in range(0, len(pairs) - 63, 64)]


def time_batches(batches: list[list[tuple[str, str]]], warm_up: list[tuple[str, str]]) -> list[float]:
    """Seconds `MathVerifier.verify_batch` takes on each batch (each batch new to the verifier)."""
    verifier = MathVerifier(timeout_s=1.0, workers=2)
    try:
        verifier.verify_batch(warm_up)  # start the pool, as the first training step does
        times = []
        for pairs in batches:
            start = time.perf_counter()
            verifier.verify_batch(pairs)
            times.append(time.perf_counter() - start)
        return times
    finally:
        verifier.close()


def fmt(xs: list[float], scale: float = 1.0, digits: int = 1) -> str:
    return f"{min(xs) * scale:.{digits}f} / {statistics.median(xs) * scale:.{digits}f}"


def one_process(rows: list[dict], runs: int) -> dict[str, dict[str, list]]:
    """Per system: verdicts of the last run; per run, cases/s (CPU and wall) and CPU latency quantiles."""
    from verifiers.math.parse import parse

    systems = {"ours": ours, "math-verify": math_verify}
    stats = {name: {"verdicts": [], "rate": [], "wall rate": [], "p50": [], "p95": [], "max": []} for name in systems}
    for fn in systems.values():  # imports and first-use costs stay out of the timed runs
        fn(rows[0]["completion"], rows[0]["gold"])
    for _ in range(runs):
        for name, fn in systems.items():  # interleaved, so both see the same load
            parse.cache_clear()  # each run starts cold; within a run repeated golds hit the cache
            verdicts, wall, lat = timed_pass(fn, rows)
            s = stats[name]
            s["verdicts"] = verdicts
            s["rate"].append(len(rows) / sum(lat))
            s["wall rate"].append(len(rows) / sum(wall))
            s["p50"].append(quantile(lat, 0.5))
            s["p95"].append(quantile(lat, 0.95))
            s["max"].append(max(lat))
    return stats


def through_pool(rows: list[dict], runs: int) -> tuple[list[float], float, list[tuple[float, str]]]:
    """Ours through the worker pool: cases/s per run, accuracy, and (seconds, reason) per pathological input."""
    verifier = MathVerifier(timeout_s=1.0, workers=2, free_form=True)
    try:
        pairs = [(r["completion"], r["gold"]) for r in rows]
        verifier.verify_batch(pairs[:4])  # start the pool
        rates = []
        for _ in range(runs):
            start = time.perf_counter()
            verdicts = verifier.verify_batch(pairs)
            rates.append(len(rows) / (time.perf_counter() - start))
        accuracy = sum(v.correct == r["label"] for v, r in zip(verdicts, rows)) / len(rows)
        patho = []
        for r in pathological():
            start = time.perf_counter()
            v = verifier.verify(r["completion"], r["gold"])
            patho.append((time.perf_counter() - start, f"{v.correct}, {v.reason}"))
        return rates, accuracy, patho
    finally:
        verifier.close()


def math_verify_pathological() -> list[tuple[float, str]]:
    """(seconds, outcome) per pathological input for math-verify, each in a worker killed at `MV_CAP_S`."""
    out = []
    with TimeoutPool(math_verify, workers=1, timeout_s=MV_CAP_S, preload=["math_verify"]) as pool:
        for r in pathological():
            start = time.perf_counter()
            result = pool.map([(r["completion"], r["gold"])])[0]
            out.append((time.perf_counter() - start, str(result.value) if result.ok else result.error))
    return out


def print_kinds(rows: list[dict], stats: dict[str, dict[str, list]]) -> None:
    """Accuracy of each system per ``kind`` of pair, as a markdown table."""
    print("| kind | n (true) | ours | math-verify |\n|---|---|---|---|")
    for kind in dict.fromkeys(r["kind"] for r in rows):
        idx = [i for i, r in enumerate(rows) if r["kind"] == kind]
        acc = {name: sum(s["verdicts"][i] == rows[i]["label"] for i in idx) / len(idx) for name, s in stats.items()}
        trues = sum(rows[i]["label"] for i in idx)
        print(f"| {kind} | {len(idx)} ({trues}) | {acc['ours']:.3f} | {acc['math-verify']:.3f} |")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="repetitions of each timed pass (>= 3 for reports)")
    ap.add_argument("--grpo-batch-only", action="store_true", help="only time the GRPO verify phase")
    ap.add_argument("--kinds-only", action="store_true", help="only the per-kind accuracy table (untimed)")
    args = ap.parse_args()

    if args.kinds_only:
        grpo = grpo_math = []
    else:
        hand = [(r["completion"], r["gold"]) for r in labeled() if r["source"] == "hand"][:64]
        grpo = time_batches(arithmetic_batches(21)[1:], warm_up=arithmetic_batches(1)[0])
        grpo_math = time_batches(labeled_batches(), warm_up=hand)
    if args.grpo_batch_only:
        print(
            f"GRPO verify phase, 64 completions, min / median ms: arithmetic {fmt(grpo, 1000, 2)} "
            f"({len(grpo)} batches), labeled MATH/GSM8K/AIME {fmt(grpo_math, 1000, 2)} ({len(grpo_math)} batches)"
        )
        return

    rows = labeled()
    if args.kinds_only:
        stats = {"ours": {"verdicts": [ours(r["completion"], r["gold"]) for r in rows]}}
        stats["math-verify"] = {"verdicts": [math_verify(r["completion"], r["gold"]) for r in rows]}
        print_kinds(rows, stats)
        return
    stats = one_process(rows, args.runs)
    pool_rates, pool_acc, patho_ours = through_pool(rows, args.runs)
    patho_mv = math_verify_pathological()

    n, labels = len(rows), [r["label"] for r in rows]
    acc = {name: sum(v == y for v, y in zip(s["verdicts"], labels)) / n for name, s in stats.items()}
    ours_s, mv_s = stats["ours"], stats["math-verify"]
    print(f"### Math verifier vs math-verify ({time.strftime('%Y-%m-%d')})\n")
    print(
        f"Machine: {platform.machine()}, Python {platform.python_version()}; "
        f"`nice -n 10 python -m bench.verifier --runs {args.runs}`. Numbers are min / median of {args.runs} runs.\n"
    )
    print("| | ours | math-verify |\n|---|---|---|")
    print(f"| accuracy on the labeled set (n={n}, {sum(labels)} true) | {acc['ours']:.3f} | {acc['math-verify']:.3f} |")
    print(f"| one process: cases per CPU second | {fmt(ours_s['rate'])} | {fmt(mv_s['rate'])} |")
    print(f"| one process: cases per wall-clock second | {fmt(ours_s['wall rate'])} | {fmt(mv_s['wall rate'])} |")
    for key in ("p50", "p95", "max"):
        print(f"| one process: {key} latency, CPU ms | {fmt(ours_s[key], 1000, 2)} | {fmt(mv_s[key], 1000, 2)} |")
    ratio = [a / b for a, b in zip(ours_s["rate"], mv_s["rate"])]
    print(f"| throughput ratio, cases per CPU second (same run) | {fmt(ratio, 1, 2)} | 1 |")
    print(f"| pool of 2 workers, 1 s budget: cases/s (accuracy {pool_acc:.3f}) | {fmt(pool_rates)} | - |")
    print(f"| GRPO verify phase, 64 arithmetic completions, ms | {fmt(grpo, 1000, 2)} | - |")
    print(f"| GRPO verify phase, 64 MATH/GSM8K/AIME completions, ms | {fmt(grpo_math, 1000, 2)} | - |\n")
    print_kinds(rows, stats)
    for name, s in stats.items():
        wrong = [(r, v) for r, v in zip(rows, s["verdicts"]) if v != r["label"]]
        print(
            f"{name} wrong on {len(wrong)}: "
            + "; ".join(f"`{r['gold'][:40]}` ({r['note']}, label {r['label']})" for r, _ in wrong)
            + "\n"
        )
    print("| pathological input | ours: s, verdict, reason | math-verify: s, verdict |\n|---|---|---|")
    for r, (t_ours, why), (t_mv, mv_why) in zip(pathological(), patho_ours, patho_mv):
        print(f"| {r['name']} | {t_ours:.2f}, {why[:48]} | {t_mv:.2f}, {mv_why[:40]} |")
    print(
        f"\nWorst pathological latency: ours {max(t for t, _ in patho_ours):.2f} s (budget 1 s), "
        f"math-verify {max(t for t, _ in patho_mv):.2f} s (capped at {MV_CAP_S:.0f} s)."
    )


if __name__ == "__main__":
    main()
