"""RL runs with ``cluster=ray`` on a tiny random Llama: 2 FSDP2 learner ranks (gloo) and 1
transformers rollout engine as Ray actors on a Ray cluster the run starts on this machine. The
run trains, its weight-sync check passes on the engine, its first step matches the
single-process run's, and a stopped-and-resumed run equals an uninterrupted one bit for bit."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from scripted_verifiers import VowelShare
from tiny_runs import comparable, metrics, run_cfg, same

from reasoner.config import Backend, RolloutConfig
from reasoner.distributed.cluster import bundles
from reasoner.jobs.rl import run
from reasoner.rollout import make_engine

pytest.importorskip("ray")

RAY = ["cluster=ray", "cluster.learner.workers=2", "cluster.rollout.engines=1"]
#: real updates (two mini-batches: each rank shuffles its rows), a checkpoint every step, the final policy
RUN = [
    "trainer.lr=1e-3",
    "algorithm.mini_batches=2",
    "trainer.checkpoint_every=1",
    "trainer.eval_base=false",
    "trainer.save_checkpoint=true",
    "rollout.sync_check_every=1",  # the sync check after every update (by default only some are)
]


def test_placement_bundles_split_or_colocated(train_file):
    gpus = ["cluster.learner.gpus_per_worker=1", "cluster.rollout.gpus_per_engine=1"]
    split = [{"CPU": 1, "GPU": 1}] * 2 + [{"CPU": 2, "GPU": 1}]  # conf/cluster/ray.yaml: 2 CPUs per engine
    assert bundles(run_cfg("unused", train_file, RAY + gpus).cluster) == split
    colocated = ["cluster.colocate=true", "cluster.rollout.engines=2"]
    assert bundles(run_cfg("unused", train_file, RAY + colocated).cluster) == [{"CPU": 3}] * 2
    with pytest.raises(ValueError, match="cluster.colocate=True is not allowed"):
        run_cfg("unused", train_file, RAY + ["cluster.colocate=true"])
    # tensor-parallel engines: a GPU per worker, all in the engine's bundle
    tp = ["rollout=vllm", "cluster.rollout.tensor_parallel=2", "cluster.rollout.gpus_per_engine=2"]
    assert bundles(run_cfg("unused", train_file, RAY + tp).cluster)[-1] == {"CPU": 2, "GPU": 2}
    with pytest.raises(ValueError, match="cluster.rollout.gpus_per_engine=1.0 is not allowed"):
        run_cfg("unused", train_file, RAY + ["cluster.rollout.tensor_parallel=2", "cluster.rollout.gpus_per_engine=1"])
    with pytest.raises(ValueError, match="cluster.rollout.tensor_parallel=2 is not allowed: .*rollout.backend=vllm"):
        run_cfg("unused", train_file, RAY + tp[1:])  # the transformers engine
    with pytest.raises(ValueError, match="rollout.sleep_during_update=True is not allowed: .*without GPUs"):
        run_cfg("unused", train_file, RAY + ["rollout=vllm", "rollout.sleep_during_update=true"])
    with pytest.raises(ValueError, match="tensor_parallel > 1 needs rollout.backend=vllm"):
        make_engine(Backend.hf, "unused", RolloutConfig(), 0, tensor_parallel=2)


def test_ray_run_trains_syncs_and_resumes_exactly(tiny_model_dir, train_file, tmp_path, caplog):
    local, straight, halves = tmp_path / "local", tmp_path / "straight", tmp_path / "halves"
    cfg = lambda *extra: run_cfg(tiny_model_dir, train_file, [*RUN, *extra], VowelShare)  # noqa: E731
    run(cfg("trainer.steps=1"), local)
    with caplog.at_level("INFO", logger="reasoner"):
        summary = run(cfg(*RAY, "trainer.steps=2"), straight)
    # the weights went over the weight-update group (cluster.weight_sync=collective, the default)
    assert "learner rank 0 and 1 engine(s) (1 worker(s)) joined a weight-update group (gloo)" in caplog.text
    a = metrics(straight)
    assert [m["step"] for m in a] == [1, 2] and all(m["policy/optimizer_steps"] == 2 for m in a)
    # the weight-sync check ran on the engine after each update and passed (else WeightSyncError)
    assert all(m["sync/logprob_diff"] < summary["sync_probe_baseline"] + 0.05 for m in a)
    assert (straight / "checkpoint" / "config.json").exists()  # the final policy, one HF directory
    # the same prompts as one process (the engine samples from a stream seeded by the driver)
    assert [m["data/problem_ids"] for m in a[:1]] == [m["data/problem_ids"] for m in metrics(local)]

    run(cfg(*RAY, "trainer.steps=1"), halves)
    resumed = run(cfg(*RAY, "trainer.steps=2"), halves)
    assert resumed["resumed_from_step"] == 1
    b = metrics(halves)
    assert [m["step"] for m in b] == [1, 2]  # continued, nothing repeated
    assert all(same(comparable(x), comparable(y)) for x, y in zip(a, b))  # data order, samples, updates
    pa = load_file(straight / "checkpoints/step_000002/policy.safetensors")
    pb = load_file(halves / "checkpoints/step_000002/policy.safetensors")
    assert pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)
    sa = torch.load(straight / "checkpoints/step_000002/trainer.pt", weights_only=True)
    sb = torch.load(halves / "checkpoints/step_000002/trainer.pt", weights_only=True)
    for p, state in sa["optimizer"]["state"].items():
        assert all(torch.equal(state[k], sb["optimizer"]["state"][p][k]) for k in state)
    assert sa["scheduler"] == sb["scheduler"]


def test_ray_run_samples_ahead_of_the_ranks_and_syncs_between_requests(tiny_model_dir, train_file, tmp_path):
    """``rollout.max_staleness=1`` with the engine in its Ray actor: the producer samples step
    s+1 while the ranks train on step s, every sync reaches the engine (its check passes), and
    the importance weights of the stale batches are logged."""
    out = tmp_path / "ahead"
    ahead = ["rollout.max_staleness=1", "algorithm.tis_cap=2.0", "trainer.steps=3"]
    summary = run(run_cfg(tiny_model_dir, train_file, [*RUN, *RAY, *ahead], VowelShare), out)
    a = metrics(out)
    assert [m["step"] for m in a] == [1, 2, 3]
    assert a[0]["rollout/staleness"] == 0 and 1.0 in [m["rollout/staleness"] for m in a[1:]]
    assert sum(summary["staleness_histogram"].values()) == 3
    assert all(m["sync/logprob_diff"] < summary["sync_probe_baseline"] + 0.05 for m in a)
    assert all(m["policy/is_ratio_max"] >= m["policy/is_ratio_mean"] > 0 for m in a)
