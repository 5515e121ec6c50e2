"""Run an untrusted program with its tests in a bubblewrap sandbox, from the trusted side.

One run = one ``bwrap`` process tree, started by `Sandbox.run`:

    [setpriv --reuid 65534 (when root)] bwrap <namespaces, binds, seccomp> \\
        python -I -S -B -X utf8 -c <harness.py> PROGRAM_FD SPEC_FD RESULT_FD LIMITS

The program and the tests come in on two memfds, the verdict goes out on a pipe that only
the harness holds (see `verifiers.code.harness`); stdout + stderr of everything inside are
one pipe, of which the first ``log_bytes`` are kept.

What is covered:
- namespaces: new user (``--disable-userns``: no nested ones), pid, net (no interface but a
  down loopback: no network at all), ipc, uts, cgroup, mount; ``--new-session`` (no
  terminal injection), ``--die-with-parent``;
- file system: an empty read-only root with read-only binds of the interpreter binary, its
  standard library and the system library directories only; ``/dev`` minimal and read-only;
  ``/tmp`` (the work dir) and ``/dev/shm`` tmpfs of ``tmpfs_bytes`` each; no ``/proc``
  (nothing of any process readable), no ``/etc``, no home;
- identity: empty environment (``env={}`` and ``--clearenv``; ``python -I``); when the caller
  is root, the sandbox runs as uid/gid 65534 (``setpriv``), so file permissions apply and
  RLIMIT_NPROC is enforced (the kernel exempts uid 0 from it);
- seccomp: `verifiers.code.seccomp_filter` (no ptrace, no namespace or mount calls, no
  sockets but AF_UNIX, ...);
- rlimits (set by the harness on itself before the program exists, soft = hard): CPU
  seconds, address space, processes (per sandbox: each has its own user namespace), file
  size, open files, no core dumps;
- wall clock: past ``timeout_s`` the whole tree is SIGKILLed (bwrap's process group; the
  pid namespace dies with its init, taking every descendant with it);
- output: the log is capped at ``log_bytes``, the harness's result at ``result_bytes``.

What is not covered:
- memory across processes: RLIMIT_AS is per process, so a run can hold up to
  ``processes * memory_bytes`` (no memory cgroup is set up);
- CPU time across processes and disk bandwidth are not shared out between runs;
- kernel bugs reachable through the allowed syscalls (bubblewrap's own SECURITY.md: the
  protection is "entirely determined by the arguments passed").
"""

from __future__ import annotations

import functools
import json
import math
import os
import selectors
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from verifiers.code.harness import encode, read_frames
from verifiers.code.seccomp_filter import filter_bpf

HARNESS_SOURCE = (Path(__file__).parent / "harness.py").read_text()
NOBODY = 65534
SYSTEM_LIB_DIRS = ("/lib", "/lib32", "/lib64", "/libx32", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libx32")


class SandboxUnavailable(RuntimeError):
    """bubblewrap, setpriv, libseccomp or the sandbox interpreter is missing or does not work."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed run (all per run unless said otherwise).

    Attributes:
        memory_bytes: address space of each process (RLIMIT_AS), bytes.
        processes: processes + threads of the sandbox user (RLIMIT_NPROC); the harness, the
            program and bubblewrap's init take 3.
        file_bytes: largest file a process may write (RLIMIT_FSIZE), bytes.
        open_files: open file descriptors per process (RLIMIT_NOFILE).
        tmpfs_bytes: size of the writable work dir ``/tmp``, and of ``/dev/shm``, bytes.
        log_bytes: stdout + stderr kept from the whole run, bytes (the rest is read and dropped).
        result_bytes: largest harness report accepted, bytes (stdin/stdout tests carry outputs).
    """

    memory_bytes: int = 1 << 30
    processes: int = 16
    file_bytes: int = 16 << 20
    open_files: int = 64
    tmpfs_bytes: int = 32 << 20
    log_bytes: int = 64 << 10
    result_bytes: int = 16 << 20

    def rlimits(self, timeout_s: float) -> str:
        """The harness's RLIMIT argument (``NAME=value,...``); CPU seconds = ceil(timeout_s) + 1."""
        values = {
            "RLIMIT_CPU": math.ceil(timeout_s) + 1,
            "RLIMIT_AS": self.memory_bytes,
            "RLIMIT_NPROC": self.processes,
            "RLIMIT_FSIZE": self.file_bytes,
            "RLIMIT_NOFILE": self.open_files,
            "RLIMIT_CORE": 0,
        }
        return ",".join(f"{k}={v}" for k, v in values.items())


@dataclass
class RunOutput:
    """What came back from one run.

    Attributes:
        records: the harness's report, one dict per frame (see `verifiers.code.harness`).
        log: the first ``log_bytes`` of the sandbox's stdout + stderr, decoded.
        timed_out: the run was killed at its wall-clock limit.
        exit_code: bwrap's exit status (negative: killed by that signal).
        seconds: wall-clock time of the run.
    """

    records: list[dict] = field(default_factory=list)
    log: str = ""
    timed_out: bool = False
    exit_code: int | None = None
    seconds: float = 0.0


@functools.lru_cache(maxsize=8)
def _interpreter_paths(python: str) -> tuple[str, tuple[str, ...]]:
    """(real path of the interpreter, its stdlib directories), asked of the interpreter itself."""
    probe = (
        "import json, os, sys, sysconfig; p = sysconfig.get_paths(); "
        "print(json.dumps([os.path.realpath(sys.executable), p['stdlib'], p['platstdlib']]))"
    )
    try:
        out = subprocess.run(
            [python, "-I", "-S", "-c", probe], capture_output=True, text=True, timeout=30, check=True, env={}
        )
    except (OSError, subprocess.SubprocessError) as err:
        raise SandboxUnavailable(
            f"sandbox interpreter {python!r} does not run ({err}); "
            "install it with `apt-get install python3` or set python="
        ) from err
    exe, *stdlib = json.loads(out.stdout)
    return exe, tuple(dict.fromkeys(stdlib))


class Sandbox:
    """Runs programs under bubblewrap + seccomp + rlimits; see the module docstring.

    Args:
        python: interpreter used inside the sandbox; it, its stdlib and the system library
            directories are bound read-only. Default: Debian's ``/usr/bin/python3``
            (readable by the unprivileged sandbox user wherever it lives).
        limits: resource limits per run.

    Raises:
        SandboxUnavailable: ``bwrap`` (Debian package ``bubblewrap``), ``setpriv`` (when run
            as root), libseccomp or the interpreter is missing; the message says how to
            install it. Also raised by the first run when bwrap itself fails to start a
            sandbox (e.g. user namespaces disabled).
    """

    def __init__(self, python: str = "/usr/bin/python3", limits: Limits = Limits()) -> None:
        self.limits = limits
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxUnavailable(
                "bubblewrap is not installed: run `apt-get install bubblewrap` (scripts/setup.sh does it)"
            )
        prefix = [bwrap]
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                raise SandboxUnavailable("setpriv is missing: run `apt-get install util-linux`")
            prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", bwrap]
        self._seccomp = filter_bpf()
        exe, stdlib = _interpreter_paths(python)
        binds = ["--ro-bind", exe, exe]
        for d in SYSTEM_LIB_DIRS:
            if os.path.islink(d):
                binds += ["--symlink", os.readlink(d), d]
            elif os.path.isdir(d):
                binds += ["--ro-bind", d, d]
        for d in stdlib:
            if not any(d.startswith(s + "/") for s in SYSTEM_LIB_DIRS):
                binds += ["--ro-bind", d, d]
        self._argv = [
            *prefix,
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
            "--hostname",
            "sandbox",
            *binds,
            "--dev",
            "/dev",
            "--size",
            str(limits.tmpfs_bytes),
            "--tmpfs",
            "/dev/shm",
            "--remount-ro",
            "/dev",
            "--size",
            str(limits.tmpfs_bytes),
            "--tmpfs",
            "/tmp",
            "--chdir",
            "/tmp",
            "--remount-ro",
            "/",
        ]
        self.python = exe  #: real path of the interpreter inside the sandbox

    def run(self, program: str, mode: str, spec: dict, timeout_s: float) -> RunOutput:
        """Run `program` with the harness in `mode` (``"call"`` or ``"stdio"``) on `spec`.

        Args:
            program: the untrusted Python source.
            mode: ``"call"``: `spec` is ``{"tests": python_source}``; ``"stdio"``: ``{"inputs": [str, ...]}``.
            timeout_s: wall-clock limit of the whole run, seconds, sandbox start included.

        Raises:
            ValueError: unknown mode or ``timeout_s <= 0``.
            SandboxUnavailable: bwrap could not set the sandbox up (its message is included).
        """
        if mode not in ("call", "stdio"):
            raise ValueError(f"mode must be 'call' or 'stdio', got {mode!r}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        start = time.monotonic()
        fds = [
            _memfd("program", program.encode("utf-8", "surrogateescape")),
            _memfd("spec", bytes(encode(spec))),
            _memfd("seccomp", self._seccomp),
        ]
        result_r, result_w = os.pipe()
        argv = [
            *self._argv,
            "--seccomp",
            str(fds[2]),
            "--",
            self.python,
            "-I",
            "-S",
            "-B",
            "-X",
            "utf8",
            "-c",
            HARNESS_SOURCE,
            str(fds[0]),
            str(fds[1]),
            str(result_w),
            mode,
            self.limits.rlimits(timeout_s),
        ]
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(*fds, result_w),
                env={},
                process_group=0,
            )
        finally:
            for fd in (*fds, result_w):
                os.close(fd)
        with os.fdopen(result_r, "rb") as result:
            log, report, timed_out = self._collect(proc, result, start + timeout_s)
        out = RunOutput(log=log.decode("utf-8", "replace"), timed_out=timed_out, exit_code=proc.returncode)
        out.records = [r for r in read_frames(report) if isinstance(r, dict)]
        if not out.records and not timed_out and out.log.startswith(("bwrap:", "setpriv:")):
            raise SandboxUnavailable(f"the sandbox did not start: {out.log.strip()[:500]}")
        out.seconds = time.monotonic() - start
        return out

    def _collect(self, proc: subprocess.Popen, result, deadline: float) -> tuple[bytes, bytes, bool]:
        """Read log and report until both close or the deadline passes (then kill the tree)."""
        log, report, open_streams = bytearray(), bytearray(), 2
        caps = {proc.stdout: (log, self.limits.log_bytes), result: (report, self.limits.result_bytes)}
        timed_out = over_cap = False
        with selectors.DefaultSelector() as sel:
            for stream in caps:
                sel.register(stream, selectors.EVENT_READ)
            while open_streams and not over_cap:
                remaining = deadline - time.monotonic()
                events = sel.select(timeout=max(remaining, 0)) if remaining > 0 else []
                if not events:
                    timed_out = True
                    break
                for key, _ in events:
                    chunk = os.read(key.fd, 1 << 16)
                    buf, cap = caps[key.fileobj]
                    if not chunk:
                        sel.unregister(key.fileobj)
                        open_streams -= 1
                    elif len(buf) < cap:
                        buf += chunk[: cap - len(buf)]
                    elif key.fileobj is result:
                        over_cap = True  # the report would be incomplete: stop the run
                        break
        if open_streams:
            _kill(proc)
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0) + 1.0)
        except subprocess.TimeoutExpired:
            _kill(proc)
            proc.wait()
        proc.stdout.close()
        return bytes(log), bytes(report), timed_out


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
