"""One policy update of the sharded learner (2 FSDP2 ranks as Ray actors, gloo) against the
single-process learner on the same batch, and where a rank's time goes.

    python -m bench.ray_update [--keep-unsharded]

Method: a synthetic batch of a GRPO step's shape on the embedded default (8 groups x 8, each a
40-token prompt and 45-token completions of random ids, every advantage non-zero, so nothing is
skipped); two timed updates of `ShardedLearner` (2 ranks, 1 CPU each, bf16 autocast), then a
third under ``torch.profiler`` on each rank (rank 0's top operators by self CPU time are
printed), then two timed updates of one `reasoner.learner.Learner` in this process (2 threads).
Prints only; the figures it gave are in BENCHMARKS.md "Scale-out on Ray".
"""

from __future__ import annotations

import argparse
import time

import torch


def synthetic_batch(groups: int = 8, group_size: int = 8, prompt: int = 40, completion: int = 45):
    """A `TrainBatch` of `groups` x `group_size` random sequences (token ids < 40000) with a
    random non-zero advantage per sequence and random sampler log-probs."""
    from reasoner.types import TrainBatch

    gen = torch.Generator().manual_seed(0)
    seqs, plens, adv, sampler = [], [], [], []
    for _ in range(groups):
        head = torch.randint(3, 40000, (prompt,), generator=gen).tolist()
        for _ in range(group_size):
            seqs.append(head + torch.randint(3, 40000, (completion,), generator=gen).tolist())
            plens.append(prompt)
            adv.append(torch.full((completion,), float(torch.randn((), generator=gen)) or 1.0))
            sampler.append((-torch.rand(completion, generator=gen) * 3).tolist())
    return TrainBatch(seqs, plens, torch.zeros(len(seqs)), group_size, sampler, [False] * len(seqs), advantages=adv)


def profiled_update(worker, batch) -> str:
    """Run on a rank (``__ray_call__``): one update under the profiler; its top operators."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as p:
        worker.learner.update(batch)
    return p.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)


def main() -> None:
    import ray
    from transformers import AutoModelForCausalLM

    from reasoner.config import AlgorithmConfig, TrainerConfig
    from reasoner.distributed.sharded import ShardedLearner
    from reasoner.distributed.worker import LearnerSpec
    from reasoner.learner import Learner
    from reasoner.models import resolve_model_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-unsharded", action="store_true", help="cluster.learner.keep_unsharded=true")
    args = parser.parse_args()
    path, batch = resolve_model_path("embedded:smollm2-135m"), synthetic_batch()
    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False)
    try:
        spec = LearnerSpec(path, AlgorithmConfig(), TrainerConfig(), 0, 1.0, 128, keep_unsharded=args.keep_unsharded)
        sharded = ShardedLearner(spec, 2)
        for _ in range(2):
            start = time.perf_counter()
            sharded.update(batch)
            print(f"2 ranks: update {time.perf_counter() - start:.2f} s", flush=True)
        tables = ray.get([w.__ray_call__.remote(profiled_update, batch) for w in sharded.workers])
        print("rank 0, one update under the profiler:\n" + tables[0])
    finally:
        ray.shutdown()
    local = Learner(
        AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), AlgorithmConfig(), TrainerConfig(), 0, 1.0, 128
    )
    for _ in range(2):
        start = time.perf_counter()
        local.update(batch)
        print(f"1 process ({torch.get_num_threads()} threads): update {time.perf_counter() - start:.2f} s", flush=True)


if __name__ == "__main__":
    main()
