"""The ``python`` tool in the real bubblewrap sandbox (no mocks): REPL output, replayed state per
episode, errors, hostile cells contained, batches in order."""

from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path

import pytest

if shutil.which("bwrap") is None:
    pytest.skip("bubblewrap is not installed (apt-get install bubblewrap)", allow_module_level=True)

from reasoner.envs.base import ToolOutput  # noqa: E402
from reasoner.envs.python_tool import TRUNCATED, PythonTool  # noqa: E402

TIMEOUT_S = 2.0
MAX_OUTPUT = 800


def _hostile_programs() -> dict[str, tuple[str, str]]:
    """HOSTILE of tests/verifiers/code/test_hostile.py, loaded from its file (tests/ is no package)."""
    path = Path(__file__).resolve().parents[1] / "verifiers" / "code" / "test_hostile.py"
    spec = importlib.util.spec_from_file_location("_hostile_programs_for_python_tool", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.HOSTILE


HOSTILE = _hostile_programs()
# escapes and resource grabs that must fail, with the text of test_hostile.py's verdict ("timeout": the error)
BLOCKED = (
    "fork_bomb",
    "thread_bomb",
    "infinite_loop",
    "allocate_20_gb",
    "fill_work_dir",
    "socket_to_localhost",
    "read_host_file",
    "read_proc",
    "read_environment",
    "write_outside_work_dir",
    "write_dev",
    "ptrace_parent",
    "new_user_namespace",
)


def _nobody_pids() -> set[int]:
    """Live processes of the sandbox user (uid 65534) on the host. Zombies are left out: a sandbox's
    pid-1 process is reparented to the host's init when bwrap exits and waits there to be reaped
    (up to ~2 s here), holding nothing but its pid."""
    pids = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid == 65534:
                stat = (entry / "stat").read_text()
                if stat[stat.rindex(")") + 2 :][:1] != "Z":
                    pids.add(int(entry.name))
        except (FileNotFoundError, ProcessLookupError):
            pass
    return pids


@pytest.fixture(scope="module")
def tool():
    t = PythonTool(timeout_s=TIMEOUT_S, max_output_chars=MAX_OUTPUT, workers=2)
    yield t
    t.close()


def _one(tool: PythonTool, code: str, state=None) -> ToolOutput:
    (out,) = tool.run([(tool.new_state() if state is None else state, code)])
    assert isinstance(out, ToolOutput)
    return out


def _works(tool: PythonTool) -> None:
    out = _one(tool, "sum(range(10))")
    assert (out.error, out.text) == (None, "45\n"), out


def test_print_and_bare_expression(tool):
    out = _one(tool, "print(2**100)")
    assert (out.error, out.text) == (None, f"{2**100}\n")
    assert out.seconds > 0
    assert _one(tool, "12345*6789").text == f"{12345 * 6789}\n"
    # REPL echo: only a trailing expression, and not None
    assert _one(tool, "x = 3\nx * 2\nx * 3").text == "9\n"
    assert _one(tool, "None").text == "(no output)"
    assert _one(tool, "'a'").text == "'a'\n"


def test_state_is_kept_within_an_episode_only(tool):
    a, b = tool.new_state(), tool.new_state()
    assert _one(tool, "x = 41", a).text == "(no output)"
    assert _one(tool, "x + 1", a).text == "42\n"
    # another episode's state does not see x
    out = _one(tool, "x + 1", b)
    assert out.error == "error" and "NameError" in out.text
    assert b == []
    # a failing cell is not kept: its assignment before the error is gone next time
    out = _one(tool, "y = 1\n1 / 0", a)
    assert out.error == "error" and "ZeroDivisionError" in out.text
    assert a == ["x = 41", "x + 1"]
    assert "NameError" in _one(tool, "y", a).text
    # replay discards the earlier cells' output
    assert _one(tool, "print('again')", a).text == "again\n"
    assert _one(tool, "print(x)", a).text == "41\n"


def test_without_keep_state_every_cell_starts_afresh():
    t = PythonTool(timeout_s=TIMEOUT_S, keep_state=False, workers=1)
    try:
        state = t.new_state()
        assert t.run([(state, "x = 1")])[0].error is None
        assert "NameError" in t.run([(state, "x")])[0].text
        assert state == []
    finally:
        t.close()


def test_syntax_error_and_exception(tool):
    out = _one(tool, "def f(:\n    pass")
    assert out.error == "error" and "SyntaxError" in out.text
    out = _one(tool, "def f(d):\n    return d['k']\nf({})")
    assert out.error == "error" and "KeyError" in out.text and "'k'" in out.text
    assert "_run_cell" not in out.text and "solution.py" not in out.text  # no preamble frames
    # stdout before the failure is shown, then the traceback's end
    out = _one(tool, "print('before')\nraise ValueError('bad value')")
    assert out.error == "error" and out.text.startswith("before\n") and out.text.endswith("ValueError: bad value")
    out = _one(tool, "import sys\nsys.exit(3)")
    assert out.error == "error" and "SystemExit" in out.text


def test_infinite_loop_times_out(tool, assert_within):
    start = time.monotonic()
    out = _one(tool, "while True:\n    pass")
    assert_within(time.monotonic() - start, TIMEOUT_S + 2.0, "an infinite loop")
    assert out.error == "timeout" and f"ran past {TIMEOUT_S:g} s" in out.text
    _works(tool)


def test_huge_output_is_truncated(tool):
    out = _one(tool, "print('x' * 10**6)")
    assert out.error is None
    marker = TRUNCATED.format(n=10**6 + 1 - MAX_OUTPUT)
    assert out.text == "x" * MAX_OUTPUT + marker
    # a failure after a long output still ends with the exception
    out = _one(tool, "print('y' * 10**5)\nraise KeyError('last')")
    assert out.error == "error" and out.text.endswith("KeyError: 'last'")
    assert len(out.text) <= MAX_OUTPUT + len(TRUNCATED.format(n=10**5)) + 1
    _works(tool)


def test_malformed_code_is_not_run(tool):
    state = tool.new_state()
    long_code = "x = 1\n" * (tool.max_code_chars // 6 + 1)
    assert len(long_code) > tool.max_code_chars
    for code in (long_code, "", "  \n  "):
        out = _one(tool, code, state)
        assert out.error == "malformed" and out.seconds == 0.0, out
    assert state == []


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_cell_is_contained(name, tool, assert_within):
    program, reason = HOSTILE[name]
    before = _nobody_pids()
    start = time.monotonic()
    out = _one(tool, program)
    assert_within(time.monotonic() - start, TIMEOUT_S + 2.0, name)
    assert out.error in (None, "error", "timeout", "unavailable"), out
    assert len(out.text) <= MAX_OUTPUT + 64
    if name in BLOCKED:
        assert out.error == "timeout" if reason == "timeout" else (out.error == "error" and reason in out.text), out
    deadline = time.monotonic() + 5.0
    while _nobody_pids() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _nobody_pids() - before
    assert not Path("/usr/lib/evil").exists() and not Path("/dev/evil").exists()
    _works(tool)


def test_forged_sandbox_failure_stays_in_its_call(tool):
    # the cell writes "bwrap:" to the log and kills its harness: Sandbox.run raises
    # SandboxUnavailable for this run; the tool answers it as this call's error only
    forged = "import os, signal, sys\nsys.stderr.write('bwrap: fake\\n')\nsys.stderr.flush()\nos.kill(os.getppid(), 9)"
    outs = tool.run([(tool.new_state(), forged), (tool.new_state(), "1 + 1")])
    assert outs[0].error == "unavailable" and "bwrap: fake" in outs[0].text
    assert (outs[1].error, outs[1].text) == (None, "2\n")
    _works(tool)


def test_batch_outputs_in_order(tool):
    a, b = tool.new_state(), tool.new_state()
    calls = [(a, "import time\ntime.sleep(0.3)\n'first'"), (b, "n = 2\nn"), (a, "1 / 0"), (tool.new_state(), "'4th'")]
    outs = tool.run(calls)
    assert [o.text for o in outs[:2]] == ["'first'\n", "2\n"]
    assert outs[2].error == "error" and "ZeroDivisionError" in outs[2].text
    assert outs[3].text == "'4th'\n"
    assert len(a) == 1 and b == ["n = 2\nn"]
