"""The ``python`` tool: run a model's code cell in the bubblewrap sandbox of the code verifier.

Each call is one fresh sandbox (`verifiers.code.sandbox.Sandbox`, ``"stdio"`` mode: the program
runs once as ``python solution.py`` with an empty stdin), so nothing survives between calls on
the machine side. The program is a trusted preamble (`PREAMBLE`) followed by the cells as
``repr()`` string literals; inside the sandbox the preamble

1. replays the episode's earlier successful cells with stdout and stderr sent to /dev/null,
2. runs the new cell REPL-style: when its last statement is an expression, ``repr(value)`` is
   printed unless the value is None,
3. on an exception prints the traceback without the preamble's own frames and exits 1.

Untrusted code is parsed (``ast.parse``) only inside the sandbox: a hostile cell can make the
parser run out of stack or memory, which must not happen in the trainer's process.

State is **replay**, not a live interpreter: "variables persist" because the earlier cells run
again before each new one, so random, time-dependent or I/O-dependent values are recomputed
(and may differ from what the model saw), and the time limit covers the replay too.
"""

from __future__ import annotations

import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from reasoner.envs.base import ToolOutput
from verifiers.code.sandbox import Limits, RunOutput, Sandbox, SandboxUnavailable

TRUNCATED = "\n[... {n} more characters truncated]"
TRACEBACK_LINES = 6  # lines of the failing run's stderr shown after its stdout
TRACEBACK_FRAMES = 3  # innermost frames the preamble prints

# Runs inside the sandbox with the rlimits of the code verifier; the cells are appended as
# `_run_cells([...], ...)` with repr() literals. Names start with "_" and live in this module's
# globals, not in the cells' namespace.
PREAMBLE = f"""\
import ast as _ast
import os as _os
import sys as _sys


def _compile_cell(source, name):
    import linecache

    linecache.cache[name] = (len(source), None, source.splitlines(True), name)  # for tracebacks
    tree = _ast.parse(source, name, "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], _ast.Expr):
        last = _ast.Expression(tree.body.pop().value)
    body = compile(tree, name, "exec", dont_inherit=True)
    return body, (compile(last, name, "eval", dont_inherit=True) if last is not None else None)


def _run_cell(source, name, ns):
    body, last = _compile_cell(source, name)
    exec(body, ns)
    if last is not None:
        value = eval(last, ns)
        if value is not None:
            print(repr(value))


def _flush():
    for stream in (_sys.stdout, _sys.stderr, _sys.__stdout__, _sys.__stderr__):
        try:
            stream.flush()
        except BaseException:
            pass


def _report(exc, note=None):
    import traceback

    _flush()
    tb = exc.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<cell"):
        tb = tb.tb_next  # the preamble's frames
    if note:
        print(note, file=_sys.__stderr__)
    traceback.print_exception(type(exc), exc, tb, limit=-{TRACEBACK_FRAMES}, chain=False, file=_sys.__stderr__)
    _flush()
    _os._exit(1)


def _run_cells(history, cell):
    import builtins

    ns = {{"__name__": "__main__", "__builtins__": builtins}}
    if history:
        _flush()
        saved = _os.dup(1), _os.dup(2)
        null = _os.open(_os.devnull, _os.O_WRONLY)
        _os.dup2(null, 1)
        _os.dup2(null, 2)
        _os.close(null)
        for i, source in enumerate(history, 1):
            try:
                _run_cell(source, "<cell %d>" % i, ns)
            except BaseException as exc:
                _flush()
                _os.dup2(saved[0], 1)
                _os.dup2(saved[1], 2)
                _report(exc, "(cell %d ran before but failed when replayed)" % i)
        _flush()
        _os.dup2(saved[0], 1)
        _os.dup2(saved[1], 2)
        _os.close(saved[0])
        _os.close(saved[1])
    try:
        _run_cell(cell, "<cell %d>" % (len(history) + 1), ns)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt too: a failed cell
        _report(exc)
    _flush()
    _os._exit(0)  # no atexit hooks, no waiting for the cell's threads


"""


class PythonTool:
    """Runs Python cells in the code verifier's sandbox; a `reasoner.envs.base.Tool`.

    Args:
        timeout_s: wall-clock limit per call, seconds (sandbox start and the replay of the
            episode's earlier cells included); CPU time is limited to ``ceil(timeout_s) + 1`` s.
        max_output_chars: the output shown to the model is cut to this many characters (plus a
            truncation marker).
        max_code_chars: a longer cell is not run (``error="malformed"``).
        keep_state: cells that ran without error are kept in the episode's state and replayed
            before the next cell (see the module docstring); False: every cell starts afresh.
        workers: calls run in parallel (threads, each waiting on one sandbox process tree).
        python: interpreter inside the sandbox.
        memory_mb: address space per sandboxed process, MiB.
        processes: processes + threads per sandbox.

    The defaults are the code verifier's limits (`verifiers.code.CodeVerifier`).

    Raises:
        ValueError: a bad argument, named.
        verifiers.code.sandbox.SandboxUnavailable: bubblewrap, setpriv, libseccomp or the
            interpreter is missing, or a trivial program does not run in the sandbox (checked
            here, once, so that a broken sandbox fails at set-up and not as tool errors).
    """

    name = "python"
    description = "Run Python 3 code in a sandbox (no network, no files kept); shows stdout and a final expression."

    def __init__(
        self,
        timeout_s: float = 5.0,
        max_output_chars: int = 800,
        max_code_chars: int = 4000,
        keep_state: bool = True,
        workers: int = 2,
        python: str = "/usr/bin/python3",
        memory_mb: int = 1024,
        processes: int = 16,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if max_output_chars < 1:
            raise ValueError(f"max_output_chars must be >= 1, got {max_output_chars}")
        if max_code_chars < 1:
            raise ValueError(f"max_code_chars must be >= 1, got {max_code_chars}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if memory_mb < 1 or processes < 1:
            raise ValueError(f"memory_mb and processes must be >= 1, got {memory_mb} and {processes}")
        self.timeout_s, self.keep_state = timeout_s, keep_state
        self.max_output_chars, self.max_code_chars = max_output_chars, max_code_chars
        if keep_state:
            self.description = (
                f"{type(self).description} Variables persist between calls (earlier cells are re-run, "
                f"so random or time-dependent values are recomputed); limit {timeout_s:g} s a call."
            )
        else:
            self.description = f"{type(self).description} Each call starts afresh; limit {timeout_s:g} s a call."
        self._sandbox = Sandbox(python, Limits(memory_bytes=memory_mb << 20, processes=processes))
        probe = self._sandbox.run("print(6 * 7)", "stdio", {"inputs": [""]}, max(timeout_s, 30.0))
        if [(r.get("stdout"), r.get("exit")) for r in probe.records if "unit" in r] != [("42\n", 0)]:
            raise SandboxUnavailable(
                f"a trivial program did not run in the sandbox (exit {probe.exit_code}, "
                f"timed out: {probe.timed_out}): {probe.log.strip()[:500]}"
            )
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="python-tool")

    def new_state(self) -> list[str]:
        """A fresh episode state: the list of the episode's cells that ran without error (in
        order), replayed before each new cell; stays empty when ``keep_state`` is False."""
        return []

    def run(self, calls: list[tuple[Any, str]]) -> list[ToolOutput]:
        """The outputs of ``[(state, code), ...]``, in order; the calls run concurrently.

        ``text`` is the cell's stdout (the last expression's repr included), followed on failure
        by the last lines of its traceback, ``"(no output)"`` when empty, cut to
        ``max_output_chars``. ``error``: None; ``"timeout"`` (past ``timeout_s``);
        ``"error"`` (an exception, or a non-zero exit); ``"malformed"`` (empty or longer than
        ``max_code_chars``: not run); ``"unavailable"`` (the sandbox failed for this call, e.g.
        the program killed its harness after writing ``bwrap:``). A call never raises; a state
        (a `new_state` list, or None for no history) gets the cell appended when it succeeded
        and ``keep_state`` is True. ``code`` is dedented first (a cell indented as a whole runs);
        stderr is shown only on failure (its last lines: the traceback's end).

        Raises:
            RuntimeError: after `close`.
        """
        futures = []
        for state, code in calls:
            if not isinstance(code, str) or not code.strip() or len(code) > self.max_code_chars:
                futures.append(None)
                continue
            cell = textwrap.dedent(code)
            history = list(state) if self.keep_state and state else []
            futures.append((cell, self._pool.submit(self._call, history, cell)))
        outputs = []
        for (state, code), submitted in zip(calls, futures):
            if submitted is None:
                size = len(code) if isinstance(code, str) else 0
                why = "empty" if not size or not code.strip() else f"{size} characters > {self.max_code_chars}"
                outputs.append(ToolOutput(f"MalformedCall: the code is {why}; nothing was run", "malformed"))
                continue
            cell, future = submitted
            out = future.result()
            if out.error is None and self.keep_state and isinstance(state, list):
                state.append(cell)
            outputs.append(out)
        return outputs

    def _call(self, history: list[str], cell: str) -> ToolOutput:
        start = time.monotonic()
        program = f"{PREAMBLE}_run_cells({history!r}, {cell!r})\n"
        try:
            run = self._sandbox.run(program, "stdio", {"inputs": [""]}, self.timeout_s)
        except SandboxUnavailable as err:
            return ToolOutput(f"SandboxUnavailable: {err}"[: self.max_output_chars], "unavailable", self._since(start))
        except Exception as err:  # no call may raise out of run()
            text = f"SandboxUnavailable: {type(err).__name__}: {err}"[: self.max_output_chars]
            return ToolOutput(text, "unavailable", self._since(start))
        return self._observe(run, self._since(start))

    def _observe(self, run: RunOutput, seconds: float) -> ToolOutput:
        if run.timed_out:
            return ToolOutput(f"TimeoutError: ran past {self.timeout_s:g} s", "timeout", seconds)
        record = next((r for r in run.records if r.get("unit") == 0), None)
        if record is None or not isinstance(record.get("stdout"), str):
            tail = _tail(run.log)
            text = f"the run ended without a result (exit {run.exit_code})" + (f"\n{tail}" if tail else "")
            return ToolOutput(self._cut("", text), "error", seconds)
        stdout, status = record["stdout"], record.get("exit")
        if status == 0:
            return ToolOutput(self._cut(stdout or "(no output)", ""), None, seconds)
        tail = _tail(run.log)
        if not tail:
            tail = f"killed by signal {-status}" if isinstance(status, int) and status < 0 else f"exit status {status}"
        return ToolOutput(self._cut(stdout, tail), "error", seconds)

    def _cut(self, stdout: str, tail: str) -> str:
        """stdout + tail in ``max_output_chars``: the tail (the traceback's end) keeps its last
        half of the budget at most; stdout gets the rest, and a marker when cut."""
        limit = self.max_output_chars
        if tail and stdout and not stdout.endswith("\n"):
            stdout += "\n"
        if len(stdout) + len(tail) <= limit:
            return stdout + tail
        tail = tail[-(limit // 2) :] if len(tail) > limit // 2 and stdout else tail[-limit:]
        room = max(limit - len(tail), 0)
        if len(stdout) > room:
            stdout = stdout[:room] + TRUNCATED.format(n=len(stdout) - room) + ("\n" if tail else "")
        return stdout + tail

    @staticmethod
    def _since(start: float) -> float:
        return time.monotonic() - start

    def close(self) -> None:
        """Stop the thread pool (calls in flight finish); `run` raises afterwards."""
        self._pool.shutdown(wait=True)


def _tail(log: str) -> str:
    """The last `TRACEBACK_LINES` non-empty lines of the run's stderr."""
    return "\n".join([line for line in log.splitlines() if line.strip()][-TRACEBACK_LINES:])
