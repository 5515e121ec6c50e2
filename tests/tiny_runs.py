"""Short RL runs on the tiny random Llama for the run-level tests (resume, cluster): the config
overrides that make a run take seconds, and readers of what it wrote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir

from reasoner.config import CONF_DIR, RunConfig
from reasoner.jobs.cli import to_run_config

SMALL = [
    "rollout=hf",
    "sft.enabled=false",
    "trainer.prompts_per_step=2",
    "algorithm.sampling.group_size=4",
    "trainer.micro_batch_size=4",
    "rollout.max_tokens=8",
    "trainer.eval_max_tokens=4",
    "data.heldout_n=2",
    "trainer.save_checkpoint=false",
    "reward.format_weight=0.1",
]


def run_cfg(model_dir: Any, train_file: Any, extra: Any = (), verifier: type | None = None) -> RunConfig:
    """The run config of `SMALL` on `model_dir` and `train_file`, then `extra` overrides; the
    correctness verifier replaced by `verifier` (a class) when given."""
    overrides = [f"model.path={model_dir}", f"data.train={train_file}", *SMALL, *extra]
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = to_run_config(compose(config_name="config", overrides=overrides))
    if verifier is not None:
        cfg.reward.verifier = {"_target_": f"{verifier.__module__}.{verifier.__name__}"}
    return cfg


def metrics(run_dir: Path) -> list[dict]:
    """The run's ``metrics.jsonl`` records."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def comparable(record: dict) -> dict:
    """A metrics record without wall-clock figures."""
    return {k: v for k, v in record.items() if not k.startswith(("time/", "perf/"))}


def same(a: Any, b: Any) -> bool:
    """Equal, NaN included (json.loads gives float('nan') for NaN)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
