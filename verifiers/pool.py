"""Worker processes that run a function under a hard wall-clock limit per call.

A call that runs past its budget is not interrupted with `signal.alarm` (which works only in
the main thread and cannot stop C code such as a long sympy simplification): its worker process
is killed and replaced, and the call is reported as timed out. A worker that crashes is replaced
the same way. The replacement starts at once but is waited for only when it gets its next task,
so a timed-out call returns about when its budget ends. Results come back in input order.

Workers start with the ``forkserver`` method: forking a process that runs vLLM or torch
threads is unsafe, and ``spawn`` would re-import sympy for every replacement worker.

Worker health: workers ignore SIGINT and SIGTERM, so a Ctrl-C in a terminal or a scheduler's
job signal sent to the whole process group leaves them running (the caller decides when to
stop; CPython's fork server ignores SIGINT too, and is restarted on next use if SIGTERM killed
it). A worker that died anyway (SIGKILL, the OOM killer) is found when a task is sent to it
(its end of the pipe is closed: ``BrokenPipeError``) and replaced, and the task goes to the
replacement: no task is lost to a worker that died while idle. (`multiprocessing.Process.is_alive`
is not asked: once a killed fork server is gone it reports every live worker as dead.) A task whose worker dies
while running it is run once more on a fresh worker (a kill from outside should not cost a
verdict); if that worker dies too, the task's outcome is ``"error: worker died ..."``.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import signal
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


START_ATTEMPTS = 3


def _worker_main(conn: Connection, fn: Callable[..., Any], preload: tuple[str, ...]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller owns Ctrl-C and job signals
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for name in preload:  # a no-op when the fork server imported them; else done here, before "ready"
        importlib.import_module(name)
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
    def __init__(self, ctx: Any, fn: Callable[..., Any], preload: tuple[str, ...]) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, fn, preload), daemon=True)
        self.proc.start()
        child.close()
        self.ready = False
        self.task: int | None = None
        self.deadline = 0.0

    def wait_ready(self) -> None:
        """Block until the worker's imports are done, so they never count against a deadline.

        Raises:
            EOFError, OSError: the worker died before it was ready.
        """
        if not self.ready:
            self.conn.recv()  # "ready"
            self.ready = True

    def start_task(self, task: int, args: tuple[Any, ...], timeout_s: float) -> None:
        """Send `args` to the worker and start its deadline.

        Raises:
            EOFError, OSError: the worker is dead (``BrokenPipeError`` on send, EOF while waiting for it).
        """
        self.wait_ready()
        self.conn.send(args)
        self.task, self.deadline = task, time.monotonic() + timeout_s

    def kill(self) -> None:
        """SIGKILL the worker; its exit is collected later (`reaped`), so a timed-out call returns
        without waiting for the fork server to report it."""
        self.proc.kill()
        self.conn.close()

    def reaped(self, timeout_s: float = 0.0) -> bool:
        """Whether a killed worker's exit has been collected (its handles are then released)."""
        self.proc.join(timeout=timeout_s)
        if self.proc.exitcode is None:
            return False
        self.proc.close()
        return True


class TimeoutPool:
    """Run ``fn(*args)`` for many argument tuples in parallel, each under ``timeout_s`` seconds.

    Args:
        fn: a picklable module-level function.
        workers: number of worker processes (>= 1).
        timeout_s: wall-clock budget per call, in seconds; a call over budget has its worker
            killed and returns ``Outcome(ok=False, error="timeout")``.
        preload: modules the fork server imports once, so replacement workers start fast. CPython
            starts one fork server per process and takes its preload list only then: when another
            pool started it first, each worker imports these modules itself before it reports
            ready (slower starts, but never a cold worker running against a deadline).

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
        self.fn, self.timeout_s, self.preload = fn, timeout_s, tuple(preload)
        self._ctx = mp.get_context("forkserver")
        if preload:
            self._ctx.set_forkserver_preload(list(preload))
        self._workers = [_Worker(self._ctx, fn, self.preload) for _ in range(workers)]
        self.wait_ready()  # the first workers start before any map call
        self._killed: list[_Worker] = []
        self.restarts = 0

    def map(self, tasks: Sequence[tuple[Any, ...]]) -> list[Outcome]:
        """Run every task; return one `Outcome` per task, in order."""
        self._killed = [w for w in self._killed if not w.reaped()]
        results: list[Outcome | None] = [None] * len(tasks)
        pending = list(range(len(tasks)))[::-1]
        busy: list[_Worker] = []
        idle = list(self._workers)
        try:
            self._run(tasks, results, pending, busy, idle, retried=set())
        except BaseException:  # e.g. KeyboardInterrupt: busy workers would answer into the next call
            for w in busy:
                self._replace(w)
            raise
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def _run(
        self,
        tasks: Sequence[tuple[Any, ...]],
        results: list[Outcome | None],
        pending: list[int],
        busy: list[_Worker],
        idle: list[_Worker],
        retried: set[int],
    ) -> None:
        while pending or busy:
            while pending and idle:
                w = self._start(idle.pop(), pending[-1], tasks[pending[-1]])
                pending.pop()
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
                        if w.task not in retried:
                            retried.add(w.task)
                            pending.append(w.task)
                            outcome = None
                elif now >= w.deadline:
                    outcome = Outcome(False, error="timeout")
                    free = self._replace(w)
                else:
                    continue
                if outcome is not None:
                    results[w.task] = outcome
                busy.remove(w)
                free.task = None
                idle.append(free)

    def wait_ready(self) -> None:
        """Block until every worker (replacements included) has started and imported `preload`.

        `map` does this for each worker before its first task, so a start never counts against a
        deadline; call it to keep a start out of a wall-clock measurement.

        Raises:
            EOFError, OSError: a worker died while starting.
        """
        for w in self._workers:
            w.wait_ready()

    @property
    def pids(self) -> list[int]:
        """Process ids of the current workers (for health checks and tests)."""
        return [w.proc.pid for w in self._workers]

    def _start(self, w: _Worker, task: int, args: tuple[Any, ...]) -> _Worker:
        """Start `task` on `w`, or on a replacement if `w` turns out dead; return the worker that runs it.

        Raises:
            RuntimeError: `START_ATTEMPTS` fresh workers in a row died before taking the task.
        """
        for attempt in range(START_ATTEMPTS):
            try:
                w.start_task(task, args, self.timeout_s)
                return w
            except (EOFError, OSError):
                exit_code = w.proc.exitcode
                if attempt + 1 < START_ATTEMPTS:
                    w = self._replace(w)
        raise RuntimeError(
            f"{START_ATTEMPTS} verifier workers in a row were dead before taking a task (last exit code {exit_code})"
        )

    def _replace(self, dead: _Worker) -> _Worker:
        dead.kill()
        self._killed.append(dead)
        fresh = _Worker(self._ctx, self.fn, self.preload)
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
        for w in self._killed:
            w.reaped(timeout_s=1.0)
        self._workers, self._killed = [], []

    def __enter__(self) -> "TimeoutPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
