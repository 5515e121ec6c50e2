"""Offline or online, learned or rule-based reward? DPO, GRPO with the verifier and GRPO with a
learned reward model, from one cold-started model, on the same problems, with the same budget of
sampled completions.

    python scripts/compare_preference.py --coldstart outputs/coldstart/checkpoint [--out DIR] [-- OVERRIDES]

Stages (each its own process and folder under ``--out``; one whose ``summary.json`` exists is not
run again, so an interrupted comparison resumes):

1. ``pairs``: ``reasoner-pairs`` samples every RL prompt ``algorithm.sampling.group_size`` times
   from the cold-started model (the budget of one GRPO run: steps x prompts x group) and pairs
   verified-correct with wrong completions.
2. ``rm``: ``reasoner-rm``, a Bradley-Terry reward model on those pairs (held-out pairwise accuracy).
3. ``dpo`` (i): ``reasoner-dpo`` on the same pairs, offline.
4. ``grpo_verifier`` (ii): ``reasoner-train`` from the cold-started model, the verifier's reward.
5. ``grpo_rm`` (iii): the same with the reward model's score as the only reward
   (``reward.correct_weight=0``: the verifier still grades every sample, logged as
   ``reward/accuracy``) and the k3 KL to the reference at ``--kl-beta``.

Everything after ``--`` goes to every stage (Hydra overrides). Writes ``OUT/results.md`` (the
table) and ``OUT/rm_overoptimization.png``: per RL step of (iii), the mean reward-model score and the
verifier accuracy of the same samples (Gao et al. 2022: over-optimization shows as the first rising
while the second stalls or falls), with (ii)'s verifier accuracy for reference.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from compare_algorithms import ROOT, load, run_job


def stages(cold: Path, out: Path, kl_beta: float) -> list[tuple[str, str, list[str]]]:
    """(name, module, the stage's own overrides) of each stage, in order."""
    start = [f"model.path={cold}", "trainer.eval_base=false"]
    rl = [*start, "sft.enabled=false", "trainer.eval_every=10"]
    term = f"[{{_target_:reasoner.learned_rewards.RewardModelTerm,weight:1.0,path:'{out / 'rm' / 'model'}'}}]"
    return [
        ("pairs", "reasoner.jobs.pairs", start),
        ("rm", "reasoner.jobs.rm", [*start, f"rm.source={out / 'pairs' / 'pairs.jsonl'}"]),
        ("dpo", "reasoner.jobs.dpo", [*start, f"dpo.source={out / 'pairs' / 'pairs.jsonl'}"]),
        ("grpo_verifier", "reasoner.jobs.cli", rl),
        (
            "grpo_rm",
            "reasoner.jobs.cli",
            [*rl, "reward.correct_weight=0", f"reward.terms={term}", f"algorithm.kl.beta={kl_beta}"],
        ),
    ]


def cell(e: dict) -> str:
    return f"{100 * e['accuracy']:.1f}% [{100 * e['ci_low']:.1f}, {100 * e['ci_high']:.1f}]"


def table(out: Path, cold_eval: dict | None, kl_beta: float) -> str:
    """Markdown: held-out accuracy (Wilson 95%) of the cold start and of (i)-(iii), the completions
    each sampled, wall minutes; then the reward model's held-out pairwise accuracy."""
    summary = {name: json.loads((out / name / "summary.json").read_text()) for name in ("pairs", "rm", "dpo")}
    rl = {name: load(out / name) for name in ("grpo_verifier", "grpo_rm")}
    pairs, rm, dpo = summary["pairs"], summary["rm"], summary["dpo"]
    samples_rl = {name: int(sum(r["response/sampled"] for r in rows)) for name, (rows, _) in rl.items()}
    lines = [
        "| method | reward | completions sampled | held-out accuracy [95% CI] | wall (min) |",
        "|---|---|---:|---|---:|",
    ]
    if cold_eval is not None:
        lines.append(f"| cold start (the starting point) | | | {cell(cold_eval)} | |")
    prep = (pairs["wall_seconds"] + rm["wall_seconds"]) / 60
    lines += [
        f"| (i) DPO, offline | {pairs['pair_count']} verifier-labelled pairs | {pairs['samples']} "
        f"| {cell(dpo['heldout']['after_dpo'])} | {pairs['wall_seconds'] / 60 + dpo['wall_seconds'] / 60:.1f} |",
        f"| (ii) GRPO, online | verifier | {samples_rl['grpo_verifier']} "
        f"| {cell(rl['grpo_verifier'][1]['heldout']['after_rl'])} "
        f"| {rl['grpo_verifier'][1]['wall_seconds'] / 60:.1f} |",
        f"| (iii) GRPO, online | reward model (KL β {kl_beta}) | {samples_rl['grpo_rm']} "
        f"| {cell(rl['grpo_rm'][1]['heldout']['after_rl'])} "
        f"| {rl['grpo_rm'][1]['wall_seconds'] / 60:.1f} (+ {prep:.1f} for pairs and reward model) |",
    ]
    acc = rm["heldout_accuracy"]
    rm_line = (
        "no held-out pairs (rm.heldout_fraction=0)"
        if acc is None
        else f"held-out pairwise accuracy {cell(acc)} (n={acc['n']} pairs of prompts it never saw; "
        f"{100 * rm['heldout_accuracy_before']['accuracy']:.1f}% with its untrained head)"
    )
    lines.append(
        f"\nReward model: {rm_line}, trained on {rm['pairs']['train']} pairs. "
        f"Pairs: {pairs['pair_count']} from {pairs['prompts_with_a_pair']} of {pairs['prompts']} prompts "
        f"({pairs['samples']} samples, {100 * pairs['sample_accuracy']:.1f}% correct)."
    )
    return "\n".join(lines) + "\n"


def plot(out: Path, path: Path) -> None:
    """(iii)'s mean reward-model score and verifier accuracy per step, (ii)'s verifier accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rm_rows, _ = load(out / "grpo_rm")
    ver_rows, _ = load(out / "grpo_verifier")
    fig, left = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in rm_rows]
    left.plot(steps, [r["reward/rm"] for r in rm_rows], color="tab:purple", label="(iii) reward-model score (left)")
    left.set_xlabel("RL step")
    left.set_ylabel("mean reward-model score")
    right = left.twinx()
    right.plot(steps, [r["reward/accuracy"] for r in rm_rows], color="tab:red", label="(iii) verifier accuracy")
    right.plot(
        [r["step"] for r in ver_rows],
        [r["reward/accuracy"] for r in ver_rows],
        color="tab:gray",
        alpha=0.6,
        label="(ii) verifier accuracy (GRPO on the verifier)",
    )
    for rows, color in ((rm_rows, "tab:red"), (ver_rows, "tab:gray")):
        held = [(r["step"], r["eval/heldout_accuracy"]) for r in rows if "eval/heldout_accuracy" in r]
        if held:
            right.plot(*zip(*held), "o--", color=color, alpha=0.8, markersize=4)
    right.set_ylabel("accuracy of the step's samples (dots: held-out)")
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(handles=handles, loc="upper left", fontsize=8)
    left.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> str:
    argv = sys.argv[1:] if argv is None else argv
    overrides = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coldstart", type=Path, required=True, help="the cold-started model (an HF directory)")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "preference", help="output folder (DIR)")
    parser.add_argument("--kl-beta", type=float, default=0.04, help="KL coefficient of (iii) (DeepSeekMath's 0.04)")
    args = parser.parse_args(own)
    import matplotlib  # noqa: F401  (fail before an hour of training, not after)

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name, module, own_overrides in stages(args.coldstart.resolve(), out, args.kl_beta):
        run_job(name, module, out / name, [*own_overrides, *overrides])
    cold_summary = args.coldstart.resolve().parent / "summary.json"
    cold_eval = json.loads(cold_summary.read_text())["heldout"].get("after_sft") if cold_summary.exists() else None
    md = table(out, cold_eval, args.kl_beta)
    settings = " ".join(overrides) or "(none: the embedded default)"
    (out / "results.md").write_text(f"Overrides shared by every stage: `{settings}`\n\n{md}")
    plot(out, out / "rm_overoptimization.png")
    print(md)
    return md


if __name__ == "__main__":
    main()
