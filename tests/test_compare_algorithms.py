"""scripts/compare_algorithms.py on the tiny model, 2 steps per algorithm."""

import importlib.util
import sys
from pathlib import Path

from reasoner.config import CONF_DIR

SCRIPT = Path(CONF_DIR).parent / "scripts" / "compare_algorithms.py"
TINY = [
    "trainer.steps=2",
    "trainer.prompts_per_step=2",
    "trainer.micro_batch_size=4",
    "algorithm.sampling.group_size=4",
    "rollout=hf",
    "rollout.max_tokens=16",
    "rollout.max_model_len=256",
    "trainer.eval_max_tokens=8",
    "data.heldout_n=4",
    "sft.examples=8",
    "sft.batch_size=4",
    "sft.micro_batch_size=2",
    "trainer.save_checkpoint=false",
]


def _module():
    spec = importlib.util.spec_from_file_location("compare_algorithms", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_compare_two_algorithms_table_and_curves(tiny_model_dir, tmp_path):
    mod = _module()
    results = mod.main(
        [
            "--algorithms",
            "grpo",
            "ppo",
            "--out",
            str(tmp_path),
            "--no-plot",
            "--",
            f"model.path={tiny_model_dir}",
            *TINY,
        ]
    )
    assert list(results) == ["grpo", "ppo"]
    md = (tmp_path / "results.md").read_text()
    assert "| grpo |" in md and "| ppo |" in md and "n=4 problems" in md
    for name in ("grpo", "ppo"):
        rows, summary = results[name]
        assert [r["step"] for r in rows] == [1, 2] and summary["algorithm"] == name
    # a second call resumes: nothing is trained again, the table is rebuilt from the run dirs
    mtime = (tmp_path / "grpo" / "summary.json").stat().st_mtime
    mod.main(["--algorithms", "grpo", "--out", str(tmp_path), "--no-plot"])
    assert (tmp_path / "grpo" / "summary.json").stat().st_mtime == mtime
    mod.plot(results, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 1000
