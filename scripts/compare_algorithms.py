"""Compare RL algorithms on the same data, seed and budget: one `reasoner-train` run per
algorithm, reward curves in one PNG, final held-out accuracy in a Markdown table.

    python scripts/compare_algorithms.py                                   # grpo dr_grpo dapo ppo, embedded default
    python scripts/compare_algorithms.py --algorithms grpo dapo -- trainer.steps=10 rollout=hf

Everything after ``--`` is passed to every run as Hydra overrides (so each run differs only in
``algorithm=``). Runs go to ``OUT/<algorithm>/``; a run whose ``summary.json`` exists is not
run again, and an interrupted one continues from its last checkpoint (``trainer.resume=auto``),
so an interrupted comparison resumes. Writes ``OUT/reward_curves.png`` (needs
matplotlib, a dependency) and ``OUT/results.md``, and
prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ALGORITHMS = ["grpo", "dr_grpo", "dapo", "ppo"]
CURVES = [("reward/accuracy", "training accuracy (all sampled completions)"), ("reward/mean", "shaped reward (mean)")]


def run_job(label: str, module: str, run_dir: Path, args: list[str]) -> None:
    """``python -m module hydra.run.dir=run_dir *args`` in its own process (vLLM engines are not
    torn down cleanly in-process), unless `run_dir` holds a ``summary.json`` already."""
    if (run_dir / "summary.json").exists():
        print(f"[{label}] done already: {run_dir}")
        return
    cmd = [sys.executable, "-m", module, f"hydra.run.dir={run_dir}", *args]
    print(f"[{label}] {' '.join(cmd)}", flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)


def run_one(algorithm: str, run_dir: Path, overrides: list[str]) -> None:
    """One ``reasoner-train`` run with ``algorithm=<algorithm>`` (`run_job`)."""
    run_job(algorithm, "reasoner.jobs.cli", run_dir, [f"algorithm={algorithm}", *overrides])


def load(run_dir: Path) -> tuple[list[dict], dict]:
    """(metrics.jsonl rows, summary.json) of one run."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return rows, json.loads((run_dir / "summary.json").read_text())


def table(results: dict[str, tuple[list[dict], dict]]) -> str:
    """Markdown table: held-out accuracy after the cold start and after RL (Wilson 95%), the
    paired gain, mean response length, training accuracy over the last steps and wall time."""
    lines = [
        "| algorithm | held-out after cold start | held-out after RL [95% CI] | gain (paired 95% CI) "
        "| mean length after RL | train acc, last 5 steps | wall (min) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, (rows, s) in results.items():
        after = s["heldout"]["after_rl"]
        sft = s.get("heldout_after_sft")
        gain = s.get("rl_gain")
        gain_txt = (
            "n/a"
            if gain is None
            else f"{100 * gain:+.1f} [{100 * s['rl_gain_ci95_paired'][0]:+.1f}, "
            f"{100 * s['rl_gain_ci95_paired'][1]:+.1f}]"
        )
        tail = [r["reward/accuracy"] for r in rows[-5:]]
        lines.append(
            f"| {name} | {'n/a' if sft is None else f'{100 * sft:.1f}%'} "
            f"| {100 * after['accuracy']:.1f}% [{100 * after['ci_low']:.1f}, {100 * after['ci_high']:.1f}] "
            f"| {gain_txt} | {after['mean_len']:.1f} | {100 * sum(tail) / max(len(tail), 1):.1f}% "
            f"| {s['wall_seconds'] / 60:.1f} |"
        )
    n = next(iter(results.values()))[1]["heldout_n"] if results else 0
    return "\n".join(lines) + f"\n\nHeld-out: n={n} problems, greedy decoding.\n"


def plot(results: dict[str, tuple[list[dict], dict]], path: Path) -> None:
    """Reward curves of every run, one panel per metric in `CURVES`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVES), figsize=(6 * len(CURVES), 4), squeeze=False)
    for ax, (key, title) in zip(axes[0], CURVES):
        for name, (rows, _) in results.items():
            ax.plot(
                [r["step"] for r in rows], [r[key] for r in rows], label=name, marker="." if len(rows) < 40 else None
            )
        ax.set_title(title)
        ax.set_xlabel("RL step")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, tuple[list[dict], dict]]:
    argv = sys.argv[1:] if argv is None else argv
    overrides = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--algorithms", nargs="+", default=DEFAULT_ALGORITHMS, help="algorithm group options (conf/algorithm/*.yaml)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "compare", help="output folder")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG (no matplotlib needed)")
    args = parser.parse_args(own)
    if not args.no_plot:
        import matplotlib  # noqa: F401  (fail before hours of training, not after)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for algorithm in args.algorithms:
        run_one(algorithm, args.out / algorithm, overrides)
        results[algorithm] = load(args.out / algorithm)
    md = table(results)
    settings = " ".join(overrides) or "(none: the embedded default)"
    (args.out / "results.md").write_text(f"Overrides shared by every run: `{settings}`\n\n{md}")
    if not args.no_plot:
        plot(results, args.out / "reward_curves.png")
        print(f"reward curves: {args.out / 'reward_curves.png'}")
    print(md)
    return results


if __name__ == "__main__":
    main()
