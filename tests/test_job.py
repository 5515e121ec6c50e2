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
