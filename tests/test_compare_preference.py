"""scripts/compare_preference.py on the tiny model: reward model, DPO, GRPO with the verifier and with
the reward model, from a pairs stage given in advance (a random tiny model never answers right,
so it cannot make its own pairs)."""

import importlib.util
import json
import sys
from pathlib import Path

from reasoner.config import CONF_DIR
from reasoner.data.preferences import PreferencePair, write_pairs

SCRIPTS = Path(CONF_DIR).parent / "scripts"
TINY = [
    "trainer.steps=2",
    "trainer.prompts_per_step=2",
    "algorithm.sampling.group_size=4",
    "rollout=hf",
    "rollout.max_tokens=12",
    "rollout.max_model_len=256",
    "trainer.eval_max_tokens=8",
    "data.heldout_n=4",
    "trainer.save_checkpoint=false",
    "rm.batch_size=8",
    "dpo.batch_size=8",
]


def _module():
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec = importlib.util.spec_from_file_location("compare_preference", SCRIPTS / "compare_preference.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(SCRIPTS))
    return mod


def test_three_way_comparison_table_and_overoptimization_plot(tiny_model_dir, tmp_path):
    pairs_dir = tmp_path / "pairs"
    pairs_dir.mkdir()
    pairs = [
        PreferencePair(str(i), f"What is {i} + 1?", f"\\boxed{{{i + 1}}}", "no idea", answer=str(i + 1))
        for i in range(20)
    ]
    write_pairs(pairs_dir / "pairs.jsonl", pairs)
    made = {"pair_count": 20, "prompts_with_a_pair": 20, "prompts": 20, "samples": 80, "sample_accuracy": 0.3}
    (pairs_dir / "summary.json").write_text(json.dumps({**made, "wall_seconds": 1.0}))
    md = _module().main(["--coldstart", str(tiny_model_dir), "--out", str(tmp_path), "--", *TINY])
    for row in ("| (i) DPO, offline | 20 verifier-labelled pairs | 80 |", "| (ii) GRPO, online | verifier | 16 |"):
        assert row in md
    assert "| (iii) GRPO, online | reward model (KL β 0.04) | 16 |" in md and "Reward model: held-out pairwise" in md
    rows = [json.loads(line) for line in (tmp_path / "grpo_rm" / "metrics.jsonl").read_text().splitlines()]
    assert all("reward/rm" in r and r["reward/mean"] == r["reward/rm"] for r in rows)  # the RM's score is the reward
    assert all(0.0 <= r["reward/accuracy"] <= 1.0 for r in rows)  # and the verifier still grades
    assert (tmp_path / "rm_overoptimization.png").stat().st_size > 1000
    assert (tmp_path / "results.md").read_text().endswith(md)
