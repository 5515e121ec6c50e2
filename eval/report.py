"""Human-facing outputs of an evaluation: the markdown table, the PNG plots, and the side-by-side
comparison of two runs."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from eval.metrics import Proportion, diff_interval, paired_diff_interval, pass_at_k
from eval.samples import Sample
from eval.summary import BenchmarkSummary


def _pct(p: Proportion) -> str:
    return f"{100 * p.value:.1f} [{100 * p.low:.1f}, {100 * p.high:.1f}]"


def markdown(summaries: Sequence[BenchmarkSummary], model: str) -> str:
    """The results table (one row per benchmark), then one table per breakdown key.

    Rates are percentages with their 95% intervals; lengths are completion tokens.
    """
    lines = [
        f"Model: `{model}`. avg@n: mean accuracy over the n samples of each problem (= pass@1); pass@n: "
        "unbiased estimator (Chen et al. 2021); maj@n: majority vote over the n samples' answers; "
        "[95% interval] over problems.",
        "",
        "| benchmark | problems | n | T | top-p | max tokens | avg@n | pass@n | maj@n | mean len | median len "
        "| truncated |",
        "|---|---:|---:|---:|---:|---:|---|---|---|---:|---:|---:|",
    ]
    for s in summaries:
        n, sp = s.sampling.n, s.sampling
        maj = _pct(s.maj_at[n]) if s.maj_at else "n/a"
        lines.append(
            f"| {s.benchmark} | {s.problems} | {n} | {sp.temperature:g} | {sp.top_p:g} | {sp.max_tokens} "
            f"| {_pct(s.avg)} "
            f"| {_pct(s.pass_at[n])} | {maj} | {s.mean_len:.1f} | {s.median_len:.1f} | {100 * s.truncated:.1f}% |"
        )
    for s in summaries:
        for key, values in s.breakdown.items():
            lines += [
                "",
                f"{s.benchmark} by {key} (avg@{s.sampling.n}):",
                "",
                f"| {key} | problems | avg@{s.sampling.n} |",
                "|---|---:|---|",
            ]
            lines += [f"| {v} | {p.n} | {_pct(p)} |" for v, p in values.items()]
    return "\n".join(lines) + "\n"


def plot_breakdowns(summaries: Sequence[BenchmarkSummary], out_dir: Path) -> list[Path]:
    """One bar chart (avg@n with 95% interval) per benchmark and breakdown key, as
    ``<benchmark>_by_<key>.png`` in `out_dir`; returns the files written."""
    plt = _pyplot()
    written = []
    for s in summaries:
        for key, values in s.breakdown.items():
            names = list(values)
            acc = [100 * values[v].value for v in names]
            err = [
                [100 * (values[v].value - values[v].low) for v in names],
                [100 * (values[v].high - values[v].value) for v in names],
            ]
            fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(names) + 2), 3.5))
            ax.bar(range(len(names)), acc, yerr=err, capsize=4, color="tab:blue", alpha=0.8)
            ax.set_xticks(range(len(names)), [f"{v}\n(n={values[v].n})" for v in names], fontsize=8)
            ax.set_ylabel(f"avg@{s.sampling.n} (%)")
            ax.set_ylim(0, 100)
            ax.set_title(f"{s.benchmark}: accuracy by {key} (95% interval)")
            fig.tight_layout()
            path = out_dir / f"{s.benchmark}_by_{key}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
    return written


def plot_lengths(samples_by_benchmark: Mapping[str, Sequence[Sample]], path: Path) -> Path:
    """Histograms of completion length (tokens) of correct and wrong samples, one panel per
    benchmark, into `path` (PNG)."""
    plt = _pyplot()
    names = list(samples_by_benchmark)
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        samples = samples_by_benchmark[name]
        top = max(s.tokens for s in samples)
        bins = list(range(0, top + max(1, top // 20) + 1, max(1, top // 20)))
        right = [s.tokens for s in samples if s.correct]
        wrong = [s.tokens for s in samples if not s.correct]
        ax.hist(
            [wrong, right],
            bins=bins,
            label=[f"wrong ({len(wrong)})", f"correct ({len(right)})"],
            color=["tab:red", "tab:green"],
            alpha=0.75,
        )
        ax.set_title(name)
        ax.set_xlabel("completion tokens")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def compare(
    a: Mapping[str, BenchmarkSummary], b: Mapping[str, BenchmarkSummary], label_a: str = "A", label_b: str = "B"
) -> str:
    """Side-by-side markdown table of two runs over their common benchmarks.

    Rows: avg@n, pass@k at the smaller of the two n (when > 1) and maj@n (when both vote with
    the same n). The difference B - A gets a 95% interval: paired (`eval.metrics.paired_diff_interval`,
    per-problem differences) when both runs scored the same problems, else unpaired
    (`eval.metrics.diff_interval`). "beyond noise" says whether 0 lies outside that interval.
    """
    lines = [
        f"| benchmark | metric | {label_a} | {label_b} | {label_b} - {label_a} "
        "| 95% interval | interval | beyond noise |",
        "|---|---|---|---|---:|---|---|---|",
    ]
    for name in [n for n in a if n in b]:
        sa, sb = a[name], b[name]
        na, nb = sa.sampling.n, sb.sampling.n
        k = min(na, nb)
        # metric label, its value per problem (from a ProblemScore and that run's n), both totals
        rows = [(f"avg@{na}" if na == nb else f"avg@{na}/{nb}", lambda p, n: p.correct / n, sa.avg, sb.avg)]
        if k > 1:
            rows.append((f"pass@{k}", lambda p, n: pass_at_k(n, p.correct, k), sa.pass_at[k], sb.pass_at[k]))
        if sa.maj_at and sb.maj_at and na == nb:
            rows.append((f"maj@{na}", lambda p, n: float(p.majority), sa.maj_at[na], sb.maj_at[nb]))
        ids = list(sa.per_problem)
        paired = set(ids) == set(sb.per_problem) and len(ids) >= 2
        for metric, value, pa, pb in rows:
            if paired:
                lo, hi = paired_diff_interval(
                    [value(sa.per_problem[i], na) for i in ids], [value(sb.per_problem[i], nb) for i in ids]
                )
            else:
                lo, hi = diff_interval(pa, pb)
            lines.append(
                f"| {name} | {metric} | {_pct(pa)} | {_pct(pb)} | {100 * (pb.value - pa.value):+.1f} "
                f"| [{100 * lo:+.1f}, {100 * hi:+.1f}] | {'paired' if paired else 'unpaired'} "
                f"| {'yes' if lo > 0 or hi < 0 else 'no'} |"
            )
    return "\n".join(lines) + "\n"
