"""``reasoner-eval``: evaluate a model on benchmarks with the field's protocol (Hydra), compare
two runs, or re-score a run.

    reasoner-eval                                          # all seven benchmarks, embedded model, vLLM
    reasoner-eval benchmarks=[aime24,math500] n=8 limit=100 max_tokens=4096
    reasoner-eval model.path=outputs/2025-01-01/12-00-00/checkpoint backend=hf
    reasoner-eval hydra.run.dir=outputs/eval/mine          # run again to resume an interrupted run
    reasoner-eval compare RUN_A RUN_B                      # side-by-side table, 95% intervals of B - A
    reasoner-eval rescore RUN                              # judge a run's samples again (verifier changed)

The run directory (Hydra's output dir, ``outputs/eval/<date>/<time>`` by default) is described
in `eval.pipeline`; every default is in `eval.config.EvalConfig`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from eval.config import EvalConfig, register_configs
from eval.pipeline import load_summaries, rescore_run, run_eval
from eval.report import compare
from reasoner.config import CONF_DIR, to_config

register_configs()


def to_eval_config(cfg: DictConfig) -> EvalConfig:
    """Merged Hydra config -> validated `EvalConfig` (`reasoner.config.to_config`: unknown keys
    are refused, its `__post_init__` checks run).

    Raises:
        ValueError: an unknown key or a bad value (named).
    """
    return to_config(cfg)


@hydra.main(version_base=None, config_path=CONF_DIR, config_name="eval")
def _hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    run_eval(to_eval_config(cfg), Path(hc.runtime.output_dir), overrides=list(hc.overrides.task))


def _subcommand(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="reasoner-eval", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmp = sub.add_parser("compare", help="side-by-side table of two finished runs")
    cmp.add_argument("run_a", type=Path)
    cmp.add_argument("run_b", type=Path)
    again = sub.add_parser("rescore", help="judge a run's samples again and rewrite its outputs")
    again.add_argument("run", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "compare":
            print(compare(load_summaries(args.run_a), load_summaries(args.run_b), str(args.run_a), str(args.run_b)))
        else:
            rescore_run(args.run)
    except (FileNotFoundError, ValueError) as err:  # a missing or unfinished run directory: no traceback
        parser.exit(2, f"reasoner-eval {args.command}: {err}\n")


def main() -> None:
    """Console entry point: ``compare`` / ``rescore`` subcommands, else a Hydra evaluation run
    (vLLM spawns workers: this must run under ``__main__``)."""
    if sys.argv[1:2] in (["compare"], ["rescore"]):
        _subcommand(sys.argv[1:])
    else:
        _hydra_main()


if __name__ == "__main__":
    main()
