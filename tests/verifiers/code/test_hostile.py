"""Hostile programs: each is contained (fail / timeout / blocked) within its limit, never scored
as a pass, and leaves the host as it was. One hostile property per test case."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from verifiers.code import CodeVerifier

TIMEOUT_S = 5.0
TESTS = "assert f(1) == 2\n"  # a correct program defines f(x) = 2 * x

# name -> (program, a substring of the verdict's reason). Programs that define a wrong `f`
# try to forge a pass; the others try to escape or exhaust a resource.
HOSTILE = {
    "fork_bomb": (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        "timeout",
    ),
    "thread_bomb": (
        "import threading, time\nwhile True:\n    threading.Thread(target=time.sleep, args=(60,)).start()\n",
        "can't start new thread",
    ),
    "infinite_loop": ("while True:\n    pass\n", "timeout"),
    "allocate_20_gb": ("x = bytearray(20 * 2**30)\ndef f(x):\n    return 2 * x\n", "MemoryError"),
    "recursion_bomb": ("import sys\nsys.setrecursionlimit(10**9)\ndef r(n):\n    return r(n + 1)\nr(0)\n", ""),
    "huge_output": ("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", "timeout"),
    "fill_work_dir": ("f = open('/tmp/big', 'wb')\nwhile True:\n    f.write(b'x' * 2**20)\n", "File too large"),
    "socket_to_localhost": (
        "import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=1)\ndef f(x):\n    return 2 * x\n",
        "PermissionError",
    ),
    "read_host_file": ("print(open('/etc/passwd').read())\ndef f(x):\n    return 2 * x\n", "No such file"),
    "read_proc": ("print(open('/proc/1/environ').read())\ndef f(x):\n    return 2 * x\n", "No such file"),
    "read_environment": ("import os\nprint(os.environ['HOME'])\ndef f(x):\n    return 2 * x\n", "KeyError"),
    "write_outside_work_dir": (
        "open('/usr/lib/evil', 'w').write('x')\ndef f(x):\n    return 2 * x\n",
        "Read-only file system",
    ),
    "write_dev": ("open('/dev/evil', 'w').write('x')\ndef f(x):\n    return 2 * x\n", "Read-only file system"),
    "kill_parent": (
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\ndef f(x):\n    return 2 * x\n",
        "the run ended",
    ),
    "kill_everything": ("import os, signal\nos.kill(-1, signal.SIGKILL)\n", "the run ended"),
    "ptrace_parent": (
        "import ctypes, os\nassert ctypes.CDLL(None).ptrace(16, os.getppid(), 0, 0) == 0, 'denied'\n",
        "denied",
    ),
    "ptrace_via_x32_abi": (
        "import ctypes\nctypes.CDLL(None).syscall(0x40000000 + 101, 16, 1, 0, 0)\ndef f(x):\n    return 2 * x\n",
        "died",
    ),
    "new_user_namespace": ("import ctypes\nassert ctypes.CDLL(None).unshare(0x10000000) == 0, 'denied'\n", "denied"),
    "tests_in_memory": (
        "import gc\nassert [o for o in gc.get_objects() if isinstance(o, str) and 'assert f' in o], 'none'\n",
        "none",
    ),
    # forgeries: f is wrong (returns 3); each trick tries to make the verdict a pass anyway
    "sys_exit_0": ("import sys\ndef f(x):\n    return 3\nsys.exit(0)\n", "SystemExit"),
    "os_exit_0_in_call": ("import os\ndef f(x):\n    os._exit(0)\n", "died"),
    "atexit_hook": (
        "import atexit, os\natexit.register(lambda: os._exit(0))\ndef f(x):\n    return 3\n",
        "AssertionError",
    ),
    "patched_builtins": (
        "import builtins\nbuiltins.AssertionError = Exception\nbuiltins.abs = lambda x: 0\ndef f(x):\n    return 3\n",
        "AssertionError",
    ),
    "always_equal_object": (
        "class A:\n    def __eq__(self, other):\n        return True\ndef f(x):\n    return A()\n",
        "AssertionError",
    ),
    "always_equal_int": (
        "class I(int):\n    def __eq__(self, other):\n        return True\ndef f(x):\n    return I(3)\n",
        "AssertionError",
    ),
    "printed_marker": (
        "print('passed')\nprint('{\"unit\": 0, \"ok\": true}')\ndef f(x):\n    return 3\n",
        "AssertionError",
    ),
    "write_to_every_fd": (
        "import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, bytes([0, 0, 0, 1]) + b'N')\n"
        "    except OSError:\n        pass\ndef f(x):\n    return 3\n",
        "failed",
    ),
}


def _nobody_pids() -> set[int]:
    """Processes of the sandbox user (uid 65534) on the host, from /proc."""
    pids = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid == 65534:
                pids.add(int(entry.name))
        except FileNotFoundError:
            pass
    return pids


@pytest.fixture(scope="module")
def verifier():
    v = CodeVerifier(timeout_s=TIMEOUT_S, workers=1)
    yield v
    v.close()


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_program_is_contained(name, verifier, tmp_path):
    program, reason = HOSTILE[name]
    before = _nobody_pids()
    start = time.monotonic()
    verdict = verifier.verify(f"```python\n{program}```", TESTS)
    elapsed = time.monotonic() - start
    assert not verdict.correct and verdict.score == 0.0, verdict
    assert reason in verdict.reason, verdict.reason
    assert elapsed < TIMEOUT_S + 2.0  # killed at its wall-clock limit, teardown included
    # host unchanged: nothing of the sandbox user survives (the pid namespace died with it)
    deadline = time.monotonic() + 5.0
    while _nobody_pids() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _nobody_pids() - before
    assert not Path("/usr/lib/evil").exists() and not Path("/dev/evil").exists()


def test_correct_program_passes_with_the_same_limits(verifier):
    # the control: the limits above do not fail an honest program
    verdict = verifier.verify("```python\ndef f(x):\n    return 2 * x\n```", TESTS)
    assert verdict.correct and verdict.reason == "passed"


def test_background_process_is_killed_with_the_run(verifier):
    # the program forks a child that would sleep for a minute; the run ends with the program
    program = "import os, time\nif os.fork() == 0:\n    time.sleep(60)\ndef f(x):\n    return 2 * x\n"
    start = time.monotonic()
    assert verifier.verify(f"```python\n{program}```", TESTS).correct
    assert time.monotonic() - start < TIMEOUT_S
    deadline = time.monotonic() + 5.0
    while _nobody_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _nobody_pids()


def test_host_environment_is_not_visible(verifier, monkeypatch):
    monkeypatch.setenv("REASONER_SECRET", "hunter2")
    # only what bwrap (PWD) and Python's C-locale coercion (LC_CTYPE) set inside
    program = "import os\ndef f(x):\n    return 2 * x if set(os.environ) <= {'PWD', 'LC_CTYPE'} else 0\n"
    assert verifier.verify(f"```python\n{program}```", TESTS).correct


def test_sandbox_user_is_not_root(verifier):
    if os.geteuid() != 0:
        pytest.skip("the uid switch applies when the caller is root")
    program = "import os\ndef f(x):\n    return 2 * x if os.getuid() == 65534 else 0\n"
    assert verifier.verify(f"```python\n{program}```", TESTS).correct


def test_ordinary_stdlib_use_is_not_blocked(verifier):
    # threads (clone3 answers ENOSYS, glibc falls back to clone), subprocesses, temp files,
    # multiprocessing pipes: the filter and limits leave honest programs working
    program = (
        "import subprocess, sys, tempfile, multiprocessing as mp\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "def f(x):\n"
        "    with ThreadPoolExecutor(4) as ex:\n"
        "        doubled = list(ex.map(lambda v: 2 * v, [x]))[0]\n"
        "    out = subprocess.run([sys.executable, '-c', 'print(7)'], capture_output=True, text=True).stdout\n"
        "    with tempfile.NamedTemporaryFile('w') as t:\n"
        "        t.write('hi')\n"
        "    r, w = mp.Pipe()\n"
        "    w.send(3)\n"
        "    return doubled if out.strip() == '7' and r.recv() == 3 else -1\n"
    )
    assert verifier.verify(f"```python\n{program}```", TESTS).correct
