"""bench/report.py: a benchmark's section of BENCHMARKS.md is replaced on a rerun, not duplicated."""

from __future__ import annotations

import pytest

from bench.report import put_section, spread


def test_put_section_appends_then_replaces_in_place(tmp_path):
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\n## A\n\nold a\n\n## B\n\nb text\n")
    put_section(md, "C", "c one")
    put_section(md, "A", "new a\n\n| x |")
    put_section(md, "C", "c two")
    assert md.read_text() == "# Benchmarks\n\n## A\n\nnew a\n\n| x |\n\n## B\n\nb text\n\n## C\n\nc two\n"


def test_spread():
    assert spread([3.0, 1.0, 2.0]) == {"min": 1.0, "median": 2.0, "max": 3.0, "runs": [3.0, 1.0, 2.0]}
    with pytest.raises(ValueError, match="no measurements"):
        spread([])


def test_peer_times_steps_with_an_update_apart_from_empty_ones():
    from bench.peer import busy_and_empty

    rows = [
        {"time/step": 90.0, "policy/empty_steps": 0},  # step 1 (warm-up): left out
        {"time/step": 4.0, "policy/empty_steps": 0},
        {"time/step": 2.0, "policy/empty_steps": 1},
        {"time/step": 6.0, "policy/empty_steps": 0},
    ]
    assert busy_and_empty(rows) == (5.0, 2.0)
    busy, empty = busy_and_empty(rows[:2])
    assert busy == 4.0 and empty != empty  # no empty step: NaN
