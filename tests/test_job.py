"""Process set-up shared by the jobs: `reasoner.jobs.common.reuse_heap` keeps freed memory for reuse."""

import json
import subprocess
import sys

import pytest

# Allocate, touch and free a 256 MB tensor (the size of a micro-batch's logits), then a 252 MB one
# (the next micro-batch's, a little shorter): report the minor page faults of the second. (A
# second block of exactly the same size may not fit the freed one: posix_memalign asks for the
# size plus the alignment.) Each variant runs in its own process, since
# the allocator's settings are process-wide.
PROBE = """
import json, resource, sys, torch
from reasoner.jobs.common import reuse_heap
ok = reuse_heap() if sys.argv[1] == "reuse" else None
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
x = torch.ones(64 * 2**20); del x
before = faults()
x = torch.ones(63 * 2**20); del x
print(json.dumps({"applied": ok, "faults": faults() - before}))
"""


def _second_round_faults(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator settings")
def test_reuse_heap_serves_a_freed_large_block_again_without_page_faults():
    default = _second_round_faults("default")
    reused = _second_round_faults("reuse")
    assert reused["applied"] is True
    # 252 MB in 4 KB pages is 64512 faults when the block is mapped afresh
    assert default["faults"] > 30000
    assert reused["faults"] < 1000


# Under reuse_heap, steps that free blocks of slowly growing sizes (each a little larger than the
# last freed one, so it cannot reuse it) creep the heap up; the trimmer records the first step's
# resident memory and hands the free heap back once the creep passes the slack.
CREEP = """
import json, torch
from reasoner.jobs.common import HeapTrimmer, reuse_heap, resident_bytes
assert reuse_heap()
trim, keep, log = HeapTrimmer(slack_gb=0.25), [], []
for step in range(8):
    x = torch.ones((64 + 2 * step) * 2**20)  # 256 MB, then 8 MB more every step
    keep.append(torch.ones(1024))  # a small block allocated after it, above it in the heap
    del x
    log.append({"rss_mb": resident_bytes() / 2**20, "trimmed": trim()})
print(json.dumps(log))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator settings")
def test_heap_trimmer_stops_the_creep_of_a_reused_heap():
    out = subprocess.run([sys.executable, "-c", CREEP], check=True, capture_output=True, text=True).stdout
    log = json.loads(out.strip().splitlines()[-1])
    trims = [i for i, s in enumerate(log) if s["trimmed"]]
    assert trims, log  # the creep passed 0.25 GB within 8 steps
    first = trims[0]
    assert log[first]["rss_mb"] - log[0]["rss_mb"] > 0.25 * 1024  # it trimmed past the slack, not before
    assert not any(s["trimmed"] for s in log[:first])


def test_the_rl_loop_trims_the_heap_after_every_step_or_past_the_slack():
    from reasoner.config import HeapTrim, TrainerConfig
    from reasoner.jobs.common import HeapTrimmer, release_free_heap, step_trimmer

    assert TrainerConfig().heap_trim is HeapTrim.step  # the embedded default's memory budget
    assert step_trimmer(HeapTrim.step) is release_free_heap
    trimmer = step_trimmer(HeapTrim.slack)
    assert isinstance(trimmer, HeapTrimmer) and trimmer() is False  # its first call records the floor
