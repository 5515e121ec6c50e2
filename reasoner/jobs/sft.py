"""``reasoner-sft``: supervised fine-tuning alone (cold start, or SFT on rejection-sampled data),
with the held-out evaluation before and after and the same exported model as ``reasoner-train``.

    reasoner-sft                                               # embedded default, arithmetic worked solutions
    reasoner-sft data.template=r1 sft.source=vendored:gsm8k_train sft.examples=2000 data.heldout=vendored:gsm8k_test
    reasoner-sft sft.source=outputs/run/stages/03_rejection/data.jsonl model.path=outputs/run/stages/02_rl/checkpoint

Reads the same config as ``reasoner-train`` (``sft.*`` for the fine-tuning, ``data.*`` for the
template, the held-out set and decontamination, ``rollout.*`` for the evaluation engine).
Run directory: ``checkpoint/`` (bf16 safetensors + tokenizer) and ``summary.json`` (held-out
accuracy, mean length, format compliance and language consistency before and after, SFT
statistics, the data-cleaning report).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from reasoner.config import RunConfig, save_config
from reasoner.jobs.common import cold_start, hydra_job, open_run, peak_rss_gb
from reasoner.models import export_pretrained, load_policy

log = logging.getLogger("reasoner")


def run_sft_job(cfg: RunConfig, run_dir: Path, overrides: list[str] = ()) -> dict:
    """Fine-tune ``model.path`` on ``sft.source`` and evaluate it; return the summary (also
    written to ``run_dir/summary.json``, the config and command-line `overrides` to
    ``run_dir/.hydra/``).

    Raises:
        FileNotFoundError: the model or a data source is missing (says what was looked for).
        reasoner.data.BadRowError: a bad data row (names file and row), with ``data.on_bad_row=error``.
        ValueError: no SFT example is left after cleaning, or none fits ``sft.max_tokens``.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    save_config(cfg, run_dir, overrides)
    run = open_run(cfg, cfg.trainer.seed)
    if cfg.trainer.eval_base:
        run.heldout_eval("base")
    policy = load_policy(run.model_path, cfg.trainer.device)
    stats, cleaning = cold_start(cfg, run, policy, exclude=[p.problem for p in run.heldout])
    run.heldout_eval("after_sft")
    export_pretrained(policy, run.tokenizer, run_dir / "checkpoint")
    run.verifier.close()
    heldout = run.heldout
    summary = {
        "heldout": {k: v.as_dict() for k, v in run.heldout_eval.evals.items()},
        "heldout_n": len(heldout),
        "sft": vars(stats),
        "data": cleaning,
        "model": run.model_path,
        "checkpoint": str(run_dir / "checkpoint"),
        "wall_seconds": time.perf_counter() - began,
        **peak_rss_gb(),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    for name, e in summary["heldout"].items():
        print(
            f"  {name:<10} {100 * e['accuracy']:5.1f}%  [{100 * e['ci_low']:.1f}, {100 * e['ci_high']:.1f}]  "
            f"mean length {e['mean_len']:.1f} tokens, {100 * e['well_formed']:.0f}% well formed"
        )
    return summary


main = hydra_job(run_sft_job)


if __name__ == "__main__":
    main()
