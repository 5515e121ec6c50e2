"""Peak memory of a whole job: PSS summed over a command's process tree, sampled over time.

`python -m bench.job_memory --out mem.tsv -- make train` runs the command and, every
`--every` seconds, sums the proportional set size (PSS: shared pages split between the
processes that map them, so a page counts once over the tree) of the command and all its
descendants, read from `/proc/PID/smaps_rollup`. Writes `seconds<TAB>GiB<TAB>processes` rows to
`--out` and prints the peak; exits with the command's status. Linux only.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path


def children(pid: int) -> list[int]:
    """The direct children of `pid` (every thread's list; empty once it has exited)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants alive now."""
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += children(p)
    return seen


def pss_bytes(pid: int) -> int:
    """PSS of one process in bytes (0 when it has exited or cannot be read)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="TSV of samples: seconds, GiB, processes")
    ap.add_argument("--every", type=float, default=2.0, help="seconds between samples")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = ap.parse_args()
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        ap.error("give the command after --")
    start = time.monotonic()
    proc = subprocess.Popen(cmd)
    peak = (0.0, 0.0)
    with args.out.open("w") as out:
        while proc.poll() is None:
            pids = tree(proc.pid)
            gib = sum(map(pss_bytes, pids)) / 2**30
            t = time.monotonic() - start
            out.write(f"{t:.1f}\t{gib:.3f}\t{len(pids)}\n")
            out.flush()
            peak = max(peak, (gib, t))
            time.sleep(args.every)
    wall = time.monotonic() - start
    print(f"peak PSS of the job's processes: {peak[0]:.2f} GiB at {peak[1]:.0f} s; wall {wall:.0f} s")
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
