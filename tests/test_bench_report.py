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
