"""``reasoner-dpo``: DPO on preference pairs, offline, with the held-out evaluation before and after.

    reasoner-dpo dpo.source=outputs/pairs/pairs.jsonl model.path=outputs/coldstart/checkpoint hydra.run.dir=outputs/dpo

The policy and the frozen reference both start as ``model.path`` (`reasoner.dpo`). The pairs of
``dpo.source`` are split by prompt (``dpo.heldout_fraction``, seeded by ``trainer.seed``); after
training, the held-out pairs measure the implicit reward accuracy (the share whose chosen
completion gained more log-probability over the reference than the rejected one).
The held-out problem set (``data.heldout``) is evaluated with the rollout engine as in
``reasoner-train`` (``base`` unless ``trainer.eval_base=false``, then ``after_dpo``).

Run directory: ``checkpoint/`` (bf16 safetensors + tokenizer), ``summary.json``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

from eval.metrics import wilson
from reasoner.config import RunConfig, save_config
from reasoner.dpo import reference_logprobs, run_dpo
from reasoner.jobs.common import HeapTrimmer, hydra_job, open_run, pair_split, peak_rss_gb, release_free_heap
from reasoner.jobs.rm import proportion
from reasoner.models import export_pretrained, load_policy, load_tokenizer, resolve_model_path
from reasoner.rollout.sync import named_weights, push_weights

log = logging.getLogger("reasoner")


def run_dpo_job(cfg: RunConfig, run_dir: Path, overrides: list[str] = ()) -> dict:
    """Train with DPO and evaluate (module docstring); return the summary (also in
    ``run_dir/summary.json``).

    Raises:
        ValueError: ``dpo.source`` is not set, or no pair is left (after the split or the length limit).
        FileNotFoundError, reasoner.data.BadRowError: a missing model or pairs file, a bad row.
    """
    d, tr = cfg.dpo, cfg.trainer
    run_dir.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    save_config(cfg, run_dir, overrides)
    model_path = resolve_model_path(cfg.model.path)
    split = pair_split(cfg, "dpo", load_tokenizer(model_path))  # bad pairs fail before the engine starts
    train_tok, held_tok = split.train, split.heldout
    run = open_run(cfg, tr.seed, model_path=model_path)
    pad, bf16 = run.tokenizer.pad_token_id, tr.bf16_autocast
    if tr.eval_base:
        run.heldout_eval("base")
    policy = load_policy(run.model_path, cfg.trainer.device)
    held_ref = reference_logprobs(policy, held_tok, pad, d.micro_batch_size, bf16) if held_tok else None
    stats = run_dpo(policy, train_tok, d, pad, bf16, tr.seed, after_step=HeapTrimmer())
    release_free_heap()
    accuracy = None
    if held_ref is not None:
        ratios = reference_logprobs(policy, held_tok, pad, d.micro_batch_size, bf16) - held_ref
        accuracy = wilson(float((ratios[:, 0] > ratios[:, 1]).sum()), len(held_tok))
    push_weights(run.engine, named_weights(policy))
    run.heldout_eval("after_dpo")
    export_pretrained(policy, run.tokenizer, run_dir / "checkpoint")
    run.verifier.close()
    summary = {
        "heldout": {k: v.as_dict() for k, v in run.heldout_eval.evals.items()},
        "heldout_n": len(run.heldout),
        "pairs": {"train": len(train_tok), "heldout": len(held_tok), "dropped_too_long": split.dropped},
        "dpo": asdict(stats),
        "heldout_pairs_reward_accuracy": proportion(accuracy),
        "model": run.model_path,
        "checkpoint": str(run_dir / "checkpoint"),
        "wall_seconds": time.perf_counter() - began,
        **peak_rss_gb(),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    for name, e in summary["heldout"].items():
        print(f"  {name:<10} {100 * e['accuracy']:5.1f}%  [{100 * e['ci_low']:.1f}, {100 * e['ci_high']:.1f}]")
    return summary


main = hydra_job(run_dpo_job)


if __name__ == "__main__":
    main()
