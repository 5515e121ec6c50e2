"""The seccomp filter every sandboxed process runs under, built with libseccomp.

Built once in the (trusted) parent with ``pyseccomp`` (ctypes bindings to the system's
``libseccomp.so.2``, Debian package ``libseccomp2``) and exported as a BPF program, which
bubblewrap installs with ``--seccomp FD`` after it has set up the namespaces.

Policy: allow by default, deny a list of syscalls that no test program needs and that serve
escapes or spying, plus argument filters:

- debugging / memory access of other processes: ``ptrace``, ``process_vm_readv/writev``,
  ``pidfd_open``, ``pidfd_getfd``, ``kcmp``;
- namespaces and mounts: ``unshare``, ``setns``, ``mount``, ``umount2``, ``pivot_root``,
  ``chroot``, the new mount API (``fsopen`` ...), ``clone`` with any ``CLONE_NEW*`` flag;
  ``clone3`` answers ENOSYS (its flags sit behind a pointer seccomp cannot read; glibc then
  falls back to ``clone``, which is filtered);
- kernel attack surface: ``bpf``, ``perf_event_open``, ``userfaultfd``, ``io_uring_*``,
  ``keyctl`` / ``add_key`` / ``request_key``, module and kexec loading, ``open_by_handle_at``;
- host state: ``reboot``, ``swapon/off``, ``acct``, clock setting, ``syslog``, ``quotactl``;
- sockets other than ``AF_UNIX`` (the network namespace has no route anyway);
- ``ioctl(TIOCSTI)`` / ``ioctl(TIOCLINUX)`` (typing into a terminal; CVE-2017-5226).

Denied calls fail with EPERM (clone3: ENOSYS) rather than killing the process, so a program
sees an ordinary error. Syscalls of another ABI (i386 ``int 0x80``, x32) kill the process
(libseccomp's bad-arch action), so the list cannot be bypassed through them.

Why a deny-list and not an allow-list: the programs are arbitrary CPython code using any of
the standard library; an allow-list would have to be derived from traces and would turn
unlisted but harmless calls into wrong verdicts. The namespaces (no network, no /proc, no
host files) and rlimits carry the containment; the filter closes the syscalls that reach
past them.
"""

from __future__ import annotations

import errno
import functools
import os

DENIED = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_open",
    "pidfd_getfd",
    "kcmp",
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "keyctl",
    "add_key",
    "request_key",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "open_by_handle_at",
    "name_to_handle_at",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "syslog",
    "quotactl",
    "personality",
    "vhangup",
    "iopl",
    "ioperm",
    "fanotify_init",
    "lookup_dcookie",
)

# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME (linux/sched.h)
CLONE_NEW_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x00000080
AF_UNIX = 1
TIOCSTI, TIOCLINUX = 0x5412, 0x541C


class SeccompUnavailable(RuntimeError):
    """libseccomp (or its Python bindings) is missing; the message says how to install it."""


@functools.lru_cache(maxsize=1)
def filter_bpf() -> bytes:
    """The compiled BPF program (bytes) for ``bwrap --seccomp``; built once per process.

    Raises:
        SeccompUnavailable: ``pyseccomp`` or ``libseccomp.so.2`` cannot be loaded.
    """
    try:
        import pyseccomp as sc
    except (ImportError, OSError) as err:  # OSError: the ctypes library load failed
        raise SeccompUnavailable(
            f"cannot load libseccomp ({err}); install it with `pip install pyseccomp` and "
            "`apt-get install libseccomp2` (or run scripts/setup.sh)"
        ) from err
    f = sc.SyscallFilter(defaction=sc.ALLOW)
    eperm = sc.ERRNO(errno.EPERM)
    for name in DENIED:
        f.add_rule(eperm, name)
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    # any namespace bit set in clone's flags (arg 0) -> EPERM; one rule per bit, since
    # MASKED_EQ compares (arg & mask) == value exactly.
    for bit in range(32):
        flag = 1 << bit
        if CLONE_NEW_FLAGS & flag:
            f.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    f.add_rule(eperm, "socket", sc.Arg(0, sc.NE, AF_UNIX))
    f.add_rule(eperm, "socketpair", sc.Arg(0, sc.NE, AF_UNIX))
    for request in (TIOCSTI, TIOCLINUX):
        f.add_rule(eperm, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, request))
    with os.fdopen(os.memfd_create("seccomp-bpf"), "w+b") as out:
        f.export_bpf(out)
        out.seek(0)
        return out.read()
