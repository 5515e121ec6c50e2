"""``reasoner-train``: cold-start SFT, then RL (GRPO by default; ``algorithm=`` picks another) with
vLLM rollouts and verified rewards; or a multi-stage recipe (``recipe=r1``).

    reasoner-train                       # the embedded default (SmolLM2-135M, arithmetic)
    reasoner-train rollout.backend=hf trainer.steps=5
    reasoner-train algorithm=dapo        # or dr_grpo, gspo, rloo, reinforce_pp, ppo
    reasoner-train model.path=/path/to/hf_model data.train=vendored:gsm8k_train data.heldout=vendored:gsm8k_test
    reasoner-train hydra.run.dir=outputs/DATE/TIME      # continue that run (trainer.resume=auto)
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from reasoner.config import CONF_DIR, RunConfig, register_configs, to_config
from reasoner.jobs.recipe import RecipeError, run_recipe
from reasoner.jobs.rl import run_main


def to_run_config(cfg: DictConfig) -> RunConfig:
    """Merged Hydra config -> validated `RunConfig` (`reasoner.config.to_config`: unknown keys are
    refused, every group's `__post_init__` checks run).

    Raises:
        ValueError: an unknown key or a bad value (named).
    """
    return to_config(cfg)


def program() -> list[str]:
    """How to call ``reasoner-train`` in a printed hint so that it runs as shown: by name when
    that name on PATH is this environment's script, else by the script's full path (a virtualenv
    that is not activated), else through ``python -m``."""
    script = Path(sys.executable).parent / "reasoner-train"
    if shutil.which("reasoner-train") == str(script):
        return ["reasoner-train"]
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "reasoner.jobs.cli"]


register_configs()


@hydra.main(version_base=None, config_path=CONF_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    kept = [o for o in hc.overrides.task if not o.startswith(("hydra.run.dir=", "trainer.resume="))]
    run_cfg = to_run_config(cfg)
    command = [*program(), *kept, f"hydra.run.dir={run_dir}"]
    overrides = list(hc.overrides.task)
    if not run_cfg.recipe.stages:
        run_main(run_cfg, run_dir, command, overrides)
        return
    try:
        run_recipe(run_cfg, run_dir, overrides)
    except RecipeError as err:
        print(f"{err}\nresume with: {' '.join(shlex.quote(a) for a in command)}", file=sys.stderr, flush=True)
        sys.exit(err.returncode or 1)


def main() -> None:
    """Console entry point (vLLM spawns workers: this must run under ``__main__``)."""
    _hydra_main()


if __name__ == "__main__":
    main()
