"""Worker processes that run a function under a hard wall-clock limit per call.

A call that runs past its budget is not interrupted with `signal.alarm` (which works only in
the main thread and cannot stop C code such as a long sympy simplification): its worker process
is killed and replaced, and the call is reported as timed out. A worker that crashes is replaced
the same way. The replacement starts at once but is waited for only when it gets its next task,
so a timed-out call returns about when its budget ends. Results come back in input order.

Workers start with the ``forkserver`` method: forking a process that runs vLLM or torch
threads is unsafe, and ``spawn`` would re-import sympy for every replacement worker.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class Outcome:
    """What became of one call: `value` when `ok`, else `error` (``"timeout"`` or ``"error: ..."``)."""

    ok: bool
    value: Any = None
    error: str | None = None


def _worker_main(conn: Connection, fn: Callable[..., Any]) -> None:
    conn.send("ready")
    while True:
        task = conn.recv()
        if task is None:
            return
        try:
            conn.send((True, fn(*task)))
        except Exception as exc:  # report, never die on a bad input
            conn.send((False, f"error: {type(exc).__name__}: {exc}"[:500]))


class _Worker:
    def __init__(self, ctx: Any, fn: Callable[..., Any]) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, fn), daemon=True)
        self.proc.start()
        child.close()
        self.ready = False
        self.task: int | None = None
        self.deadline = 0.0

    def wait_ready(self) -> None:
        """Block until the worker's imports are done, so they never count against a deadline."""
        if not self.ready:
            self.conn.recv()  # "ready"
            self.ready = True

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join()
        self.conn.close()


class TimeoutPool:
    """Run ``fn(*args)`` for many argument tuples in parallel, each under ``timeout_s`` seconds.

    Args:
        fn: a picklable module-level function.
        workers: number of worker processes (>= 1).
        timeout_s: wall-clock budget per call, in seconds; a call over budget has its worker
            killed and returns ``Outcome(ok=False, error="timeout")``.
        preload: modules the fork server imports once, so replacement workers start fast.

    Raises:
        ValueError: ``workers < 1`` or ``timeout_s <= 0``.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        workers: int = 2,
        timeout_s: float = 1.0,
        preload: Sequence[str] = (),
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.fn, self.timeout_s = fn, timeout_s
        self._ctx = mp.get_context("forkserver")
        if preload:
            self._ctx.set_forkserver_preload(list(preload))
        self._workers = [_Worker(self._ctx, fn) for _ in range(workers)]
        for w in self._workers:
            w.wait_ready()  # the first workers start before any map call
        self.restarts = 0

    def map(self, tasks: Sequence[tuple[Any, ...]]) -> list[Outcome]:
        """Run every task; return one `Outcome` per task, in order."""
        results: list[Outcome | None] = [None] * len(tasks)
        pending = list(range(len(tasks)))[::-1]
        busy: list[_Worker] = []
        idle = list(self._workers)
        while pending or busy:
            while pending and idle:
                w = idle.pop()
                w.task = pending.pop()
                w.wait_ready()
                w.conn.send(tasks[w.task])
                w.deadline = time.monotonic() + self.timeout_s
                busy.append(w)
            next_deadline = min(w.deadline for w in busy)
            ready = wait([w.conn for w in busy], timeout=max(0.0, next_deadline - time.monotonic()))
            now = time.monotonic()
            for w in list(busy):
                free = w
                if w.conn in ready:
                    try:
                        ok, payload = w.conn.recv()
                        outcome = Outcome(True, payload) if ok else Outcome(False, error=payload)
                    except (EOFError, OSError):
                        outcome = Outcome(False, error=f"error: worker died (exit code {w.proc.exitcode})")
                        free = self._replace(w)
                elif now >= w.deadline:
                    outcome = Outcome(False, error="timeout")
                    free = self._replace(w)
                else:
                    continue
                results[w.task] = outcome
                busy.remove(w)
                free.task = None
                idle.append(free)
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def _replace(self, dead: _Worker) -> _Worker:
        dead.kill()
        fresh = _Worker(self._ctx, self.fn)
        self._workers[self._workers.index(dead)] = fresh
        self.restarts += 1
        return fresh

    def close(self) -> None:
        """Stop every worker (idempotent)."""
        for w in self._workers:
            if w.proc.is_alive():
                try:
                    w.conn.send(None)
                except OSError:
                    pass
                w.proc.join(timeout=1)
                if w.proc.is_alive():
                    w.proc.kill()
        self._workers = []

    def __enter__(self) -> "TimeoutPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
