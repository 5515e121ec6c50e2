"""`CodeVerifier`: extract the program, run it against the tests in the sandbox, score it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from itertools import takewhile
from typing import Sequence

from verifiers.base import VerifyResult
from verifiers.code.extract import RULES, extract_program
from verifiers.code.sandbox import Limits, RunOutput, Sandbox
from verifiers.code.suite import Suite, parse_suite, same_output

SCORING = ("fraction", "all")


class CodeVerifier:
    """Scores completions by running their program against unit tests in the sandbox.

    ``score`` is the fraction of test units passed (``scoring="fraction"``) or 1/0 for all of
    them (``scoring="all"``); ``correct`` is always "every unit passed". ``reason`` is
    ``"passed"``, ``"failed: <first failure>"``, ``"timeout"`` (with the units passed before
    it), ``"no code"`` or ``"load error: ..."``. Runs go through a pool of `workers` threads,
    each waiting on one sandbox process tree, so up to `workers` programs run at once.

    Args:
        timeout_s: wall-clock limit per program, seconds (all its tests, sandbox start included).
        workers: programs run in parallel.
        scoring: ``"fraction"`` or ``"all"``.
        extract: program extraction rule (`verifiers.code.extract.RULES`).
        python: interpreter inside the sandbox (`verifiers.code.sandbox.Sandbox`).
        memory_mb: address space per sandboxed process, MiB.
        processes: processes + threads per sandbox.

    Raises:
        ValueError: a bad argument, named.
        verifiers.code.sandbox.SandboxUnavailable: on first use, when bubblewrap, libseccomp
            or the interpreter is missing (never a silent run outside the sandbox).

    The sandbox is set up on first use; the object pickles without it.
    """

    def __init__(
        self,
        timeout_s: float = 10.0,
        workers: int = 2,
        scoring: str = "fraction",
        extract: str = "last_block",
        python: str = "/usr/bin/python3",
        memory_mb: int = 1024,
        processes: int = 16,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if scoring not in SCORING:
            raise ValueError(f"unknown scoring {scoring!r}; known: {', '.join(SCORING)}")
        if extract not in RULES:
            raise ValueError(f"unknown extraction rule {extract!r}; known: {', '.join(RULES)}")
        self.timeout_s, self.workers, self.scoring, self.extract = timeout_s, workers, scoring, extract
        self.python, self.limits = python, Limits(memory_bytes=memory_mb << 20, processes=processes)
        self._sandbox: Sandbox | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def verify_batch(
        self, pairs: Sequence[tuple[str, str]], entry_points: Sequence[str | None] | None = None, style: str = "auto"
    ) -> list[VerifyResult]:
        """Verdicts for ``(completion, tests)`` pairs, in order.

        Args:
            pairs: completions with their tests (see `verifiers.code.suite`).
            entry_points: per pair, the function HumanEval-style tests run ``check`` on.
            style: test style for every pair (``auto``, ``assert``, ``stdio``).

        Raises:
            ValueError: malformed tests (named by pair index), or a length mismatch.
        """
        if entry_points is not None and len(entry_points) != len(pairs):
            raise ValueError(f"{len(entry_points)} entry points for {len(pairs)} pairs")
        suites = []
        for i, (_, tests) in enumerate(pairs):
            try:
                suites.append(parse_suite(tests, entry_points[i] if entry_points else None, style))
            except ValueError as err:
                raise ValueError(f"pair {i}: {err}") from err
        programs = [extract_program(c, self.extract) for c, _ in pairs]
        sandbox, pool = self._start()
        runs = [
            pool.submit(sandbox.run, p, s.mode, s.spec, self.timeout_s) if p is not None else None
            for p, s in zip(programs, suites)
        ]
        return [
            VerifyResult(False, 0.0, None, "no code") if run is None else self._score(program, suite, run.result())
            for program, suite, run in zip(programs, suites, runs)
        ]

    def verify(
        self, completion: str, tests: str, *, entry_point: str | None = None, style: str = "auto"
    ) -> VerifyResult:
        """Verdict for one completion (see `verify_batch`)."""
        return self.verify_batch([(completion, tests)], [entry_point], style)[0]

    def _start(self) -> tuple[Sandbox, ThreadPoolExecutor]:
        with self._lock:
            if self._sandbox is None:
                self._sandbox = Sandbox(self.python, self.limits)
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="code-verifier")
            return self._sandbox, self._pool  # type: ignore[return-value]

    def _score(self, program: str, suite: Suite, run: RunOutput) -> VerifyResult:
        # only the in-order prefix counts (record i says unit i): a report cannot skip, repeat or reorder units
        numbered = enumerate(r for r in run.records if "unit" in r)
        units = [r for _, r in takewhile(lambda ir: ir[1].get("unit") == ir[0], numbered)][: suite.units]
        if suite.mode == "stdio":
            results = [
                isinstance(r.get("stdout"), str) and r.get("exit") == 0 and same_output(r["stdout"], suite.expected[i])
                for i, r in enumerate(units)
            ]
            errors = [
                f"case {i}: exit {r.get('exit')}" if r.get("exit") != 0 else f"case {i}: wrong output"
                for i, (r, ok) in enumerate(zip(units, results))
                if not ok
            ]
        else:
            results = [r.get("ok") is True for r in units]
            errors = [str(r.get("error")) for r, ok in zip(units, results) if not ok]
        passed = sum(results)
        correct = passed == suite.units and any(r.get("done") == suite.units for r in run.records)
        load_error = next((r["load_error"] for r in run.records if "load_error" in r), None)
        if correct:
            reason = "passed"
        elif run.timed_out:
            reason = f"timeout ({passed}/{suite.units} passed)"
        elif load_error:
            reason = f"load error: {load_error}"[:500]
        elif errors:
            reason = f"failed {suite.units - passed}/{suite.units}: {errors[0]}"[:500]
        else:
            reason = f"failed: the run ended after {len(units)}/{suite.units} units (exit {run.exit_code})"
        score = passed / suite.units if self.scoring == "fraction" else float(correct)
        return VerifyResult(correct, score, program, reason)

    def close(self) -> None:
        """Stop the thread pool (runs in flight finish)."""
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            self._pool, self._sandbox = None, None

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_sandbox", "_pool", "_lock")} | {
            "_sandbox": None,
            "_pool": None,
        }

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
