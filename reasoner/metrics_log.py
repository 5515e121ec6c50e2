"""Metrics stream: one JSON object per step in ``metrics.jsonl`` plus TensorBoard events."""

from __future__ import annotations

import json
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter


class MetricsLogger:
    """Append per-step metrics to ``run_dir/metrics.jsonl`` and ``run_dir/tensorboard``."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def compact_line(step: int, m: dict[str, float]) -> str:
    """One short human line per step (generation rounds shown when dynamic sampling took more than one)."""
    rounds = m.get("groups/sampling_rounds", 1)
    return (
        f"step {step:3d} | reward {m['reward/mean']:.3f} acc {m['reward/accuracy']:.3f} "
        f"| len {m['response/len_mean']:.0f}/{m['response/len_max']:.0f} trunc {m['response/truncated_frac']:.2f} "
        f"zero-var {m['groups/zero_var_frac']:.2f} | kl {m['policy/kl']:.4f} ent {m['policy/entropy']:.3f} "
        f"clip {m['policy/clip_frac']:.3f} gnorm {m['policy/grad_norm']:.2f} "
        f"| gen {m['time/generate']:.1f}s ver {m['time/verify']:.1f}s learn {m.get('time/learner', 0.0):.1f}s "
        f"sync {m.get('time/weight_sync', 0.0):.1f}s | {m['perf/tokens_per_s']:.0f} tok/s"
        + (f" | {rounds:.0f} rounds" if rounds > 1 else "")
    )
