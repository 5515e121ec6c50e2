"""Where a GRPO step's time goes: seconds per phase, tokens/s end to end, peak RSS.

    python -m bench.step [--runs 3] [--steps 5] [--prompts 2] [--group 8] [--max-tokens 128]

Method: `--runs` separate runs of ``reasoner-train`` (``python -m reasoner.jobs.cli``, vLLM
backend with ``rollout.enforce_eager=false``, embedded SmolLM2-135M-Instruct, no cold start,
level-2 arithmetic, GRPO with the k3 KL to a frozen reference at beta 0.04 so the reference pass
is timed too) of `--steps` RL steps of `--prompts` prompts x `--group` completions of at most
`--max-tokens` tokens. Per run, the phase times the trainer logs (``time/<phase>`` in
metrics.jsonl) over steps 2..S (step 1 warms kernels and caches) are averaged; the table gives
min / median / max over runs. Phases (`reasoner.rl_step`): generate (vLLM), reward (the math
verifier), old and reference log-probs (``time/logprobs``), advantages, forward + backward +
optimizer (``time/update``), weight sync (in-memory sync and the log-prob check after it).
tokens/s = completion tokens of the step / step seconds. Peak RSS is the trainer process's
(summary.json). Written to ``bench/results/step.json`` and the "GRPO step breakdown" section of
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.report import ROOT, machine, machine_line, save, spread, table

#: held-out problems the workload's run sets aside (the trainer needs a held-out set; kept tiny)
HELDOUT_N = 8


@dataclass(frozen=True)
class Workload:
    """One GRPO workload, as both frameworks run it: `prompts` x `group` completions of at most
    `max_tokens` tokens per step, `steps` steps, AdamW at `lr`, KL coefficient `beta`."""

    steps: int = 5
    prompts: int = 2
    group: int = 8
    max_tokens: int = 128
    lr: float = 2e-5
    beta: float = 0.04
    seed: int = 0
    #: the policy to start from (``model.path``)
    model: str = "embedded:smollm2-135m"
    #: ``trainer.heap_trim`` of ours: ``step`` (the default) or ``slack`` (faster steps, more memory)
    heap_trim: str = "step"

    def overrides(self) -> list[str]:
        """``reasoner-train`` overrides that set this workload (and keep the evals tiny)."""
        return [
            f"model.path={self.model}",
            "sft.enabled=false",
            f"trainer.steps={self.steps}",
            f"trainer.prompts_per_step={self.prompts}",
            f"algorithm.sampling.group_size={self.group}",
            f"rollout.max_tokens={self.max_tokens}",
            f"trainer.lr={self.lr}",
            f"algorithm.kl.beta={self.beta}",
            f"trainer.seed={self.seed}",
            f"data.heldout_n={HELDOUT_N}",
            "trainer.eval_every=0",
            "trainer.eval_max_tokens=16",
            "trainer.save_checkpoint=false",
            "trainer.checkpoint_every=0",
            # compiled vLLM: ~1.3x tokens/s for ~90 s more start-up (not in the per-step times)
            "rollout.enforce_eager=false",
            f"trainer.heap_trim={self.heap_trim}",
        ]


def problems(steps: int, prompts: int, seed: int) -> list:
    """The RL problems ``reasoner-train`` draws for this workload (same generator, seeds and
    held-out exclusion as `reasoner.jobs.rl`), so a peer framework can be given the same ones."""
    from reasoner.data import load_problems

    heldout = load_problems("arithmetic", n=HELDOUT_N, seed=seed + 1, levels=[2])
    return load_problems(
        "arithmetic", n=steps * prompts, seed=seed + 2, levels=[2], exclude=[p.problem for p in heldout]
    )


def run_ours(work: Workload, run_dir: Path) -> tuple[list[dict], dict]:
    """One ``reasoner-train`` run of `work` in `run_dir`: (metrics.jsonl rows, summary.json).

    Raises:
        subprocess.CalledProcessError: the run failed (its log is ``run_dir/train.log``).
    """
    cmd = [sys.executable, "-m", "reasoner.jobs.cli", *work.overrides(), f"hydra.run.dir={run_dir}"]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return rows, json.loads((run_dir / "summary.json").read_text())


PHASES = {
    "generate (vLLM)": lambda m: m["time/generate"],
    "reward (verify)": lambda m: m["time/reward"],
    "old + reference log-probs": lambda m: m.get("time/logprobs", 0.0),
    "advantages": lambda m: m.get("time/advantages", 0.0),
    "forward + backward + optimizer": lambda m: m.get("time/update", 0.0),
    "weight sync + check": lambda m: m.get("time/sync", 0.0),
    "whole step": lambda m: m["time/step"],
    "completion tokens/s": lambda m: m["perf/tokens_per_s"],
}


def breakdown(rows: list[dict]) -> dict[str, float]:
    """Mean of each phase over steps 2..S of one run (all steps if there is only one)."""
    steady = rows[1:] or rows
    return {name: statistics.fmean(get(m) for m in steady) for name, get in PHASES.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    work = Workload(args.steps, args.prompts, args.group, args.max_tokens)
    per_run, rss = [], []
    with TemporaryDirectory() as tmp:
        for i in range(args.runs):
            rows, summary = run_ours(work, Path(tmp) / f"run{i}")
            per_run.append(breakdown(rows))
            rss.append(summary["peak_rss_gb"] * 1e3)
    info = machine()
    rows = [
        (f"{name}, {'tokens/s' if 'tokens' in name else 's'}", spread([r[name] for r in per_run])) for name in PHASES
    ]
    rows.append(("peak RSS of the trainer process, MB", spread(rss)))
    result = {"workload": vars(work), "runs": per_run, "peak_rss_mb": rss, "machine": info}
    body = (
        f"`python -m bench.step --runs {args.runs} --steps {args.steps} --prompts {args.prompts} --group {args.group} "
        f"--max-tokens {args.max_tokens}`\n\n"
        f"Workload: {args.prompts} prompts x {args.group} completions, at most {args.max_tokens} tokens, "
        f"GRPO with k3 KL "
        f"(beta {work.beta}), vLLM backend compiled (`rollout.enforce_eager=false`), embedded SmolLM2-135M-Instruct; "
        f"per run the mean over steps 2-{args.steps}, "
        f"then min / median / max over {args.runs} runs. {machine_line(info)}\n\n" + table(rows) + "\n"
    )
    save("step", result, "GRPO step breakdown (`bench/step.py`)", body)
    print(body)


if __name__ == "__main__":
    main()
