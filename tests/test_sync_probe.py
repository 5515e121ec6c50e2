"""The weight-sync check's probe: a fixed completion's numerical floor grows as the policy grows
confident away from it (a false alarm in a healthy run), while the engine's own greedy
completion stays at its floor and still catches an engine left on old weights. On a tiny random
Llama with a transformers engine holding the learner's weights rounded to bf16 (the rounding
gap of a bf16 sampler)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from transformers import AutoModelForCausalLM

from reasoner.logprobs import sequence_logprobs
from reasoner.rollout.hf_engine import HFEngine
from reasoner.rollout.sync import SyncCheckCadence, SyncProbe, WeightSyncError, check_sync, named_weights, sync_drift

TOL = 0.05  # rollout.sync_check_tol's default


def test_a_greedy_probe_follows_the_policy_where_a_fixed_one_drifts(tiny_model_dir):
    engine = HFEngine(str(tiny_model_dir), seed=0)
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    learner = lambda ids, plen, bf16: sequence_logprobs(policy, ids, plen, bf16)  # noqa: E731

    def sync():
        engine.load_weights([(n, t.bfloat16().float()) for n, t in named_weights(policy)])

    ids = torch.randint(10, 1000, (40,), generator=torch.Generator().manual_seed(0)).tolist()
    fixed = SyncProbe(ids, 8)
    sync()
    fixed = replace(fixed, baseline=sync_drift(engine, learner, fixed))
    follow = replace(fixed, follow=True, baseline=sync_drift(engine, learner, replace(fixed, follow=True)))
    # an engine left on the old weights fails the following check
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    with pytest.raises(WeightSyncError):
        check_sync(engine, learner, follow, TOL)
    # the policy grows confident (logits x 128): in sync, yet the fixed probe's drift is past the tolerance
    with torch.no_grad():
        policy.model.norm.weight.mul_(128.0)
    sync()
    drift_fixed, drift_follow = sync_drift(engine, learner, fixed), check_sync(engine, learner, follow, TOL)
    print(f"confident policy, in sync: fixed probe {drift_fixed:.4f}, greedy probe {drift_follow:.4f} nats/token")
    assert drift_fixed > fixed.baseline + TOL and drift_follow < drift_fixed / 3


def test_the_sync_is_checked_at_the_first_sync_then_at_multiples_of_n():
    """`SyncCheckCadence` as the training loop drives it: a check is pending at a process's first
    step, and stays pending past a due step that synced nothing."""

    def checked(first, every, last, unsynced=()):
        cadence, done = SyncCheckCadence(every), []
        for step in range(first, last + 1):
            due = cadence.due(step)
            ran = due and step not in unsynced
            done += [step] if ran else []
            cadence.done(due, ran)
        return done

    assert checked(1, 10, 35) == [1, 10, 20, 30]
    assert checked(1, 1, 4) == [1, 2, 3, 4]
    assert checked(14, 10, 35) == [14, 20, 30]  # resumed after step 13: its first step is checked
    # steps 1 and 20 took no optimizer step (nothing synced): the next syncs, 2 and 21, are checked
    assert checked(1, 10, 35, unsynced=(1, 20)) == [2, 10, 21, 30]
