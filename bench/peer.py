"""Our GRPO step against TRL's GRPOTrainer on the identical CPU workload, in one run.

    python -m bench.peer [--rounds 3] [--steps 5] [--prompts 2] [--group 8] [--max-tokens 128] [--model PATH]
        [--beta 0.0] [--heap-trim slack] [--trl-vllm]

Needs ``trl`` (``pip install -e '.[bench]'``). Method: `--rounds` rounds; each runs ours
(`bench.step.run_ours`: ``reasoner-train``, vLLM backend, compiled: ``rollout.enforce_eager=false``) and TRL
(`bench.trl_grpo`, a child process), alternating which goes first, on the same `bench.step.Workload`: the embedded
SmolLM2-135M-Instruct or `--model` (fp32 weights, bf16 autocast), the same level-2 arithmetic problems and
prompt tokens, `--prompts` prompts x `--group` completions of at most `--max-tokens` tokens per
optimizer step, AdamW at 2e-5 constant, grad clip 1.0, k3 KL to the reference at `--beta` (default
0: TRL's default, and no reference model in either), clip 0.2, token-mean loss, temperature 1,
our math verifier as the reward. Seconds per training step (one generation batch and its
update) of a run = mean over steps 2..S (step 1 includes warm-up); the ratio is TRL / ours of
the medians over rounds (and of the minima). Round r runs both frameworks with seed r (the same
problems for both, drawn anew each round), so the rounds sample the share of zero-variance groups
instead of repeating one draw of it. TRL generates with transformers ``generate``
unless `--trl-vllm` (its colocate vLLM mode). Each framework's share of zero-variance groups
(ours: ``groups/zero_var_frac``, TRL: ``frac_reward_zero_std``) is reported: with no KL, their
advantages are all 0, which reasoner skips (``trainer.skip_zero_advantage``) and TRL trains on.
Ours is also timed over its steps with an update alone (steps 2..S where some group had a nonzero
advantage), and the ratio of TRL's step to that one is reported too: what the comparison gives
when no step of ours is empty.
Ours hands its free heap back to the OS as `--heap-trim` says (``trainer.heap_trim``; default
here ``slack``: only past a slack, so that a step does not page-fault its working set afresh,
for more memory, which the peak RSS rows show; ``step`` is the trainer's default).
Start from a cold-started model (`--model`) so that rewards vary. The reward curves (mean
reward per step, each round and the mean over rounds) of both go to
``bench/results/peer_rewards.png``.
Written to ``bench/results/peer.json`` and the "Peer" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.report import RESULTS, ROOT, machine, machine_line, save, spread, table
from bench.step import Workload, breakdown, run_ours


def run_trl(work: Workload, out: Path, vllm: bool) -> tuple[list[dict], float]:
    """One TRL run of `work`: (per-step records, peak RSS in MB).

    Raises:
        subprocess.CalledProcessError: the TRL run failed (its output is in ``out/trl.log``).
    """
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "bench.trl_grpo",
        "--out",
        str(out),
        "--steps",
        str(work.steps),
        "--prompts",
        str(work.prompts),
        "--group",
        str(work.group),
        "--max-tokens",
        str(work.max_tokens),
        "--lr",
        str(work.lr),
        "--beta",
        str(work.beta),
        "--seed",
        str(work.seed),
        "--model",
        work.model,
        *(["--vllm"] if vllm else []),
    ]
    with (out / "trl.log").open("w") as log:
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    records = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in records if "step" in r], records[-1]["peak_rss_mb"]


def busy_and_empty(rows: list[dict]) -> tuple[float, float]:
    """Mean seconds (``time/step``) of one run of ours over steps 2..S with an update (some group
    with a nonzero advantage) and over its empty steps (every group zero-variance: no forward or
    backward pass); NaN where there is none."""
    steady = rows[1:] or rows
    busy = [m["time/step"] for m in steady if not m["policy/empty_steps"]]
    empty = [m["time/step"] for m in steady if m["policy/empty_steps"]]
    return (statistics.fmean(busy) if busy else math.nan), (statistics.fmean(empty) if empty else math.nan)


def plot(runs: dict[str, list[dict]], path: Path) -> None:
    """Per step, the mean reward (left) and the share of zero-variance groups (right): each round
    faint, the mean over rounds bold, one colour per framework. `runs` maps a framework's name to
    its rounds' records (``rewards``, ``zero_var``: one value per step)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, ylabel in zip(axes, ("rewards", "zero_var"), ("mean reward (accuracy)", "zero-variance groups")):
        for (name, rounds), colour in zip(runs.items(), ("tab:blue", "tab:orange")):
            curves = [r[key] for r in rounds]
            steps = range(1, len(curves[0]) + 1)
            for curve in curves:
                ax.plot(steps, curve, color=colour, alpha=0.25, linewidth=1)
            mean = [statistics.fmean(v) for v in zip(*curves)]
            ax.plot(steps, mean, color=colour, linewidth=2.5, label=f"{name} (mean of {len(curves)} runs)")
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.legend()
    fig.suptitle("GRPO on the same workload, per step")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument(
        "--model",
        default="embedded:smollm2-135m",
        help="the starting policy of both (a local HF directory, e.g. a cold-started model)",
    )
    parser.add_argument("--beta", type=float, default=0.0, help="k3 KL coefficient of both (TRL's default: 0)")
    parser.add_argument("--heap-trim", choices=["step", "slack"], default="slack", help="ours: trainer.heap_trim")
    parser.add_argument("--trl-vllm", action="store_true")
    args = parser.parse_args()
    work = Workload(
        args.steps,
        args.prompts,
        args.group,
        args.max_tokens,
        beta=args.beta,
        model=args.model,
        heap_trim=args.heap_trim,
    )
    ours, trl = [], []
    with TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            seeded = dataclasses.replace(work, seed=i)
            for side in ("ours", "trl") if i % 2 == 0 else ("trl", "ours"):
                if side == "ours":
                    rows, summary = run_ours(seeded, Path(tmp) / f"ours{i}")
                    phases = breakdown(rows)
                    busy, empty = busy_and_empty(rows)
                    ours.append(
                        {
                            "seed": i,
                            "step_s": phases["whole step"],
                            "busy_step_s": busy,
                            "empty_step_s": empty,
                            "step_times": [m["time/step"] for m in rows],
                            "rewards": [m["reward/mean"] for m in rows],
                            "zero_var": [m["groups/zero_var_frac"] for m in rows],
                            "empty_steps": sum(m["policy/empty_steps"] > 0 for m in rows),
                            "peak_rss_mb": summary["peak_rss_gb"] * 1e3,
                            "phases": phases,
                        }
                    )
                else:
                    records, rss = run_trl(seeded, Path(tmp) / f"trl{i}", args.trl_vllm)
                    steady = records[1:] or records
                    trl.append(
                        {
                            "seed": i,
                            "step_s": statistics.fmean(r["seconds"] for r in steady),
                            "rewards": [r["reward"] for r in records],
                            "zero_var": [r["frac_reward_zero_std"] for r in records],
                            "peak_rss_mb": rss,
                            "records": records,
                        }
                    )
    o, t = spread([r["step_s"] for r in ours]), spread([r["step_s"] for r in trl])
    ratio, ratio_min = t["median"] / o["median"], t["min"] / o["min"]
    busy = [r["busy_step_s"] for r in ours if not math.isnan(r["busy_step_s"])]
    empty_s = [r["empty_step_s"] for r in ours if not math.isnan(r["empty_step_s"])]
    ratio_busy = t["median"] / statistics.median(busy) if busy else math.nan
    RESULTS.mkdir(parents=True, exist_ok=True)
    png = RESULTS / "peer_rewards.png"
    plot({"reasoner": ours, f"TRL GRPOTrainer ({'vLLM colocate' if args.trl_vllm else 'generate'})": trl}, png)
    info = machine()
    result = {
        "workload": vars(work),
        "trl_vllm": args.trl_vllm,
        "ours": ours,
        "trl": trl,
        "ratio_of_medians": ratio,
        "ratio_of_minima": ratio_min,
        "ratio_to_steps_with_an_update": ratio_busy,
        "machine": info,
    }
    gen = "vLLM colocate mode" if args.trl_vllm else "transformers `generate` (TRL's default)"
    rows = [
        ("reasoner: seconds per training step", o),
        *((("reasoner: seconds per step with an update (mean per run)", spread(busy)),) if busy else ()),
        *((("reasoner: seconds per empty step (mean per run)", spread(empty_s)),) if empty_s else ()),
        (f"TRL GRPOTrainer ({'vLLM' if args.trl_vllm else 'generate'}): seconds per training step", t),
        ("reasoner: peak RSS, MB", spread([r["peak_rss_mb"] for r in ours])),
        ("TRL: peak RSS, MB", spread([r["peak_rss_mb"] for r in trl])),
        *(
            (f"{name}: {label} (mean per run)", spread([statistics.fmean(r[key]) for r in runs]))
            for key, label in (("zero_var", "share of zero-variance groups"), ("rewards", "reward"))
            for name, runs in (("reasoner", ours), ("TRL", trl))
        ),
    ]
    empty = sum(r["empty_steps"] for r in ours)
    body = (
        f"`python -m bench.peer --rounds {args.rounds} --steps {args.steps} --prompts {args.prompts} "
        f"--group {args.group} --max-tokens {args.max_tokens} --model {args.model} --beta {args.beta} "
        f"--heap-trim {args.heap_trim}"
        f"{' --trl-vllm' if args.trl_vllm else ''}`\n\n"
        f"Identical workload: `{args.model}` (fp32 weights, bf16 autocast), "
        f"the same {args.steps * args.prompts} level-2 "
        f"arithmetic problems and prompt tokens, {args.prompts} prompts x {args.group} completions of at most "
        f"{args.max_tokens} tokens per "
        f"optimizer step, AdamW 2e-5 constant, grad clip 1.0, k3 KL beta {work.beta}, clip 0.2, token-mean loss, T 1, "
        f"our math verifier "
        f"as the reward. Ours samples with vLLM (`rollout.enforce_eager=false`: compiled) and hands its free heap "
        f"back with `trainer.heap_trim={args.heap_trim}`; TRL with {gen}. "
        f"{args.rounds} rounds in one run, alternating which framework goes "
        f"first, round r with seed r for both (problems and sampling); per run the mean seconds per step over "
        f"steps 2-{args.steps}. {machine_line(info)}\n\n"
        + table(rows)
        + f"\n\nTRL / reasoner seconds per step: **{ratio:.2f}x** (medians), {ratio_min:.2f}x (minima). "
        f"Steps where every group had zero variance, so reasoner ran no forward or backward pass (only "
        f"AdamW's step on a zero gradient and the sync): {empty} of {args.rounds * args.steps}. "
        f"TRL's step against ours with an update (as if no step of ours were empty): **{ratio_busy:.2f}x** "
        f"(medians). "
        f"Reward and zero-variance share per step, both frameworks: "
        f"`bench/results/{png.name}`.\n\n![reward and zero-variance groups per step, reasoner vs TRL]"
        f"(bench/results/{png.name})\n"
    )
    save("peer", result, "Peer: reasoner vs TRL GRPOTrainer (`bench/peer.py`)", body)
    print(body)


if __name__ == "__main__":
    main()
