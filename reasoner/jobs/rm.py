"""``reasoner-rm``: train a Bradley-Terry reward model on preference pairs.

    reasoner-rm rm.source=outputs/pairs/pairs.jsonl model.path=outputs/coldstart/checkpoint hydra.run.dir=outputs/rm

The reward model is ``model.path``'s backbone with a new scalar head (`reasoner.reward_model`).
The pairs of ``rm.source`` (`reasoner.data.preferences`, ``data.on_bad_row`` applies) are split
by prompt into training and held-out pairs (``rm.heldout_fraction``, seeded by ``trainer.seed``).
Pairwise accuracy on the held-out pairs (Wilson 95% interval) is measured before and after
training.

Run directory: ``model/`` (the reward model and tokenizer, for ``AutoModelForSequenceClassification``
and `reasoner.learned_rewards.RewardModelTerm`, with ``reward_model.json``: the prompt template it
was trained with), ``summary.json``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

from eval.metrics import Proportion, wilson
from reasoner.config import RunConfig, save_config
from reasoner.jobs.common import HeapTrimmer, hydra_job, pair_split, peak_rss_gb, setup_process
from reasoner.models import export_pretrained, load_tokenizer, resolve_model_path
from reasoner.reward_model import load_reward_model, pairwise_accuracy, train_reward_model, write_card

log = logging.getLogger("reasoner")


def run_rm(cfg: RunConfig, run_dir: Path, overrides: list[str] = ()) -> dict:
    """Train and export the reward model (module docstring); return the summary (also in
    ``run_dir/summary.json``).

    Raises:
        ValueError: ``rm.source`` is not set, or no pair is left (after the split or the length limit).
        FileNotFoundError, reasoner.data.BadRowError: a missing model or pairs file, a bad row.
    """
    r, tr = cfg.rm, cfg.trainer
    run_dir.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    save_config(cfg, run_dir, overrides)
    setup_process(tr)
    model_path = resolve_model_path(cfg.model.path)
    tokenizer = load_tokenizer(model_path)
    split = pair_split(cfg, "rm", tokenizer)
    train_tok, held_tok = split.train, split.heldout
    model = load_reward_model(model_path, tokenizer.pad_token_id, new_head=True)
    pad, bf16 = tokenizer.pad_token_id, tr.bf16_autocast
    before = wilson(pairwise_accuracy(model, held_tok, pad, bf16=bf16)[0], len(held_tok)) if held_tok else None
    stats = train_reward_model(model, train_tok, r, pad, bf16, tr.seed, after_step=HeapTrimmer())
    after, gaps = None, None
    if held_tok:
        right, gaps = pairwise_accuracy(model, held_tok, pad, bf16=bf16)
        after = wilson(right, len(held_tok))
    export_pretrained(model, tokenizer, run_dir / "model")
    write_card(run_dir / "model", cfg.data.template, model_path)
    summary = {
        "model": str(run_dir / "model"),
        "base": model_path,
        "pairs": {"train": len(train_tok), "heldout": len(held_tok), "dropped_too_long": split.dropped},
        "training": asdict(stats),
        "heldout_accuracy_before": proportion(before),
        "heldout_accuracy": proportion(after),
        "heldout_mean_gap": None if gaps is None else float(gaps.mean()),
        "wall_seconds": time.perf_counter() - began,
        **peak_rss_gb(),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if after is not None:
        print(
            f"  held-out pairwise accuracy {100 * after.value:.1f}% [{100 * after.low:.1f}, {100 * after.high:.1f}] "
            f"(n={after.n}; before training {100 * before.value:.1f}%)"
        )
    return summary


def proportion(p: Proportion | None) -> dict | None:
    """A `Proportion` as JSON: accuracy, its interval, k and n."""
    return None if p is None else {"accuracy": p.value, "ci_low": p.low, "ci_high": p.high, "k": p.k, "n": p.n}


main = hydra_job(run_rm)


if __name__ == "__main__":
    main()
