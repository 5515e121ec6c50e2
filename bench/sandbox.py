"""Sandbox speed: per-run overhead over a bare ``python -c`` and programs/s through the pool.

    python bench/sandbox.py [--repeats 3] [--runs 40]

Method:
- **overhead**: one small program (``def f(x): return 2 * x``) with 4 asserts, run `--runs`
  times one after another (a) bare: ``subprocess.run([python, "-c", program + tests])`` with
  the sandbox's interpreter, no sandbox; (b) sandboxed: `Sandbox.run` (setpriv + bwrap +
  seccomp + harness + program process + 4 round trips). Reported: median seconds per run of
  each, and their ratio.
- **throughput**: every HumanEval reference solution (164 programs, their full tests) through
  `CodeVerifier.verify_batch` with ``workers`` = 1 and 2; programs/s = 164 / wall seconds.
Each measurement is repeated `--repeats` times; min and median over repeats are printed as a
markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

from reasoner.data import load_problems
from verifiers.code import CodeVerifier
from verifiers.code.sandbox import Sandbox
from verifiers.code.suite import parse_suite

PROGRAM = "def f(x):\n    return 2 * x\n"
TESTS = "assert f(1) == 2\nassert f(2) == 4\nassert f(3) == 6\nassert f(4) == 8\n"


def per_run_seconds(fn, runs: int) -> float:
    """Median wall seconds of `runs` sequential calls of `fn`."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def overhead(runs: int) -> tuple[float, float]:
    """(bare, sandboxed) median seconds per run."""
    sandbox, suite = Sandbox(), parse_suite(TESTS)
    bare = per_run_seconds(lambda: subprocess.run([sandbox.python, "-c", PROGRAM + TESTS], check=True), runs)
    boxed = per_run_seconds(lambda: sandbox.run(PROGRAM, suite.mode, suite.spec, 10.0), runs)
    return bare, boxed


def throughput(workers: int) -> float:
    """HumanEval reference programs verified per second with `workers` parallel sandboxes."""
    problems = load_problems("vendored:humaneval")
    pairs = [(f"```python\n{p.solution}\n```", p.answer) for p in problems]
    verifier = CodeVerifier(timeout_s=30.0, workers=workers)
    verifier.verify_batch(pairs[:2])  # set-up (seccomp filter, interpreter probe) not timed
    start = time.perf_counter()
    results = verifier.verify_batch(pairs)
    elapsed = time.perf_counter() - start
    verifier.close()
    assert all(r.correct for r in results)
    return len(pairs) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    rows: dict[str, list[float]] = {"bare python -c, s/run": [], "sandboxed, s/run": [], "ratio sandboxed / bare": []}
    for workers in (1, 2):
        rows[f"HumanEval programs/s, {workers} worker(s)"] = []
    for _ in range(args.repeats):
        bare, boxed = overhead(args.runs)
        rows["bare python -c, s/run"].append(bare)
        rows["sandboxed, s/run"].append(boxed)
        rows["ratio sandboxed / bare"].append(boxed / bare)
        for workers in (1, 2):
            rows[f"HumanEval programs/s, {workers} worker(s)"].append(throughput(workers))
    print(
        f"cores: {os.cpu_count()}, load average at end: {os.getloadavg()[0]:.2f}, repeats: {args.repeats}, "
        f"runs per overhead figure: {args.runs}"
    )
    print("| measure | min | median |\n|---|---:|---:|")
    for name, values in rows.items():
        print(f"| {name} | {min(values):.4g} | {statistics.median(values):.4g} |")


if __name__ == "__main__":
    main()
