"""Asynchronous RL (``rollout.max_staleness``, `reasoner.rollout.ahead`): the producer keeps the
staleness bound, k = 0 through the producer gives the synchronous loop's metrics and weights, a
batch trained two versions after it was sampled gets the importance weights computed by hand,
and a run with k = 1 trains on stale batches, logs them, and resumes with the same data order."""

from __future__ import annotations

import contextlib
import math
import time

import pytest
import torch
from scripted_verifiers import VowelShare
from tiny_runs import comparable, metrics, run_cfg, same
from transformers import AutoModelForCausalLM, AutoTokenizer

from reasoner.config import AlgorithmConfig, Backend, RewardConfig, RolloutConfig, TrainerConfig, register_configs
from reasoner.data.stream import PromptStream
from reasoner.jobs.rl import run
from reasoner.learner import Learner
from reasoner.prompts import Template
from reasoner.rewards import build_reward
from reasoner.rl_step import Sampled, learn_step, rl_step, sample_step
from reasoner.rollout.ahead import RolloutsAhead
from reasoner.rollout.base import GuardedEngine
from reasoner.rollout.hf_engine import HFEngine
from reasoner.rollout.sync import sync_weights
from reasoner.types import Problem

register_configs()
PROBLEMS = [Problem(f"p{i}", f"What is {i} + {i}?", str(2 * i)) for i in range(6)]


def _fake_batch(step: int, version: int) -> Sampled:
    return Sampled(step, None, [], 1, {}, {}, version)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_the_producer_never_runs_more_than_k_versions_ahead(k):
    """A sample for step s is begun only once the engine holds version s - 1 - k; the learner
    publishes each version late (after a pause), so the producer must wait for the bound."""
    begun: list[tuple[int, int]] = []

    def sample(step, version, prompts):
        begun.append((step, version))
        prompts.next_batch(1)
        return _fake_batch(step, version)

    ahead = RolloutsAhead(sample, PromptStream(PROBLEMS, 0), 1, 6, 0, k)
    try:
        for step in range(1, 7):
            sampled, stream, _ = ahead.next(step)
            assert sampled.step == step and step - 1 - k <= sampled.version <= step - 1
            assert stream.pos == step  # the stream as it was after this batch's one draw
            time.sleep(0.05)  # the learner's phases
            with ahead.engine_turn(step):  # the sync
                pass
    finally:
        ahead.close()
    assert [s for s, _ in begun] == list(range(1, 7))
    assert all(step - 1 - k <= v for step, v in begun)
    if k:  # with time to run ahead, it does: the batch of step 2 comes from version 0
        assert begun[1] == (2, 0)


def test_a_sync_waits_for_the_request_in_progress_only():
    """With k = 2 the producer may run two batches ahead, but a sync waiting for the engine goes
    before the producer's next batch: it waits for at most the one batch in progress."""
    batch_s = 0.2

    def sample(step, version, prompts):
        time.sleep(batch_s)
        return _fake_batch(step, version)

    ahead = RolloutsAhead(sample, PromptStream(PROBLEMS, 0), 1, 6, 0, 2)
    waits = []
    try:
        for step in range(1, 7):
            ahead.next(step)
            with ahead.engine_turn(step):
                waits.append(ahead.turn_wait)
    finally:
        ahead.close()
    assert max(waits) < 1.5 * batch_s, waits


def test_a_failure_in_the_producer_is_raised_to_the_learner():
    def sample(step, version, prompts):
        if step == 2:
            raise RuntimeError("engine died")
        return _fake_batch(step, version)

    ahead = RolloutsAhead(sample, PromptStream(PROBLEMS, 0), 1, 3, 0, 1)
    try:
        assert ahead.next(1)[0].step == 1
        with pytest.raises(RuntimeError, match="engine died"):
            ahead.next(2)
    finally:
        ahead.close()
    assert not ahead._thread.is_alive()


def test_close_stops_a_producer_waiting_for_weights():
    ahead = RolloutsAhead(lambda s, v, p: _fake_batch(s, v), PromptStream(PROBLEMS, 0), 1, 9, 0, 0)
    ahead.next(1)  # the producer now waits for version 1, which never comes
    ahead.close(timeout_s=5)
    assert not ahead._thread.is_alive()


def _setup(tiny_model_dir, tis_cap=0.0, lr=1e-5):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    algo = AlgorithmConfig(tis_cap=tis_cap)
    trainer = TrainerConfig(bf16_autocast=False, micro_batch_size=4, lr=lr)
    learner = Learner(policy, algo, trainer, tok.pad_token_id, 1.0, 6)
    rollout = RolloutConfig(backend=Backend.hf, max_tokens=6, max_model_len=256)
    reward = build_reward(RewardConfig(format_weight=0.1), Template.plain, VowelShare())
    engine = GuardedEngine(HFEngine(str(tiny_model_dir), seed=0), "hf")
    sync_weights(engine, learner)
    return tok, learner, algo, rollout, reward, engine


def test_max_staleness_0_through_the_producer_equals_the_synchronous_loop(tiny_model_dir):
    """Three steps of `rl_step` against three through `RolloutsAhead` with k = 0, from the same
    seed: the same metrics (wall-clock ones aside) and bitwise-equal weights."""
    runs = []
    for through_producer in (False, True):
        torch.manual_seed(0)  # the transformers engine samples from torch's global stream
        tok, learner, algo, rollout, reward, engine = _setup(tiny_model_dir)
        stream = PromptStream(PROBLEMS, 0)
        records = []
        if not through_producer:
            for step in range(1, 4):
                result = rl_step(step, stream, tok, Template.plain, engine, reward, learner, algo, rollout, 2, None)
                records.append(result.metrics())
        else:
            args = (tok, Template.plain, engine, reward, algo, rollout, 2)
            ahead = RolloutsAhead(lambda s, v, p: sample_step(s, v, p, *args), stream, 1, 3, 0, 0)
            try:
                for step in range(1, 4):
                    result, _ = ahead.train_step(step, engine, learner, algo, rollout, None)
                    records.append(result.metrics())
            finally:
                ahead.close()
        weights = {k: v.clone() for k, v in learner.model.state_dict().items()}
        runs.append((records, weights))
    (sync_records, sync_weights_), (ahead_records, ahead_weights) = runs
    assert [r["rollout/staleness"] for r in ahead_records] == [0.0, 0.0, 0.0]
    assert all(r["policy/optimizer_steps"] >= 1 for r in sync_records)
    for a, b in zip(sync_records, ahead_records):
        assert same(comparable(a), comparable(b))
    assert all(torch.equal(sync_weights_[k], ahead_weights[k]) for k in sync_weights_)


def test_a_batch_two_versions_stale_gets_the_capped_importance_weights(tiny_model_dir):
    """A batch sampled at version 0 and trained at version 2 (k = 2): the weights the update
    applies are min(exp(logp_learner - logp_sampler), tis_cap), computed here by hand from the
    learner's log-probs of each sequence (one at a time) and the sampler's own."""
    cap = 1.2
    tok, learner, algo, rollout, reward, engine = _setup(tiny_model_dir, tis_cap=cap, lr=3e-3)
    stream = PromptStream(PROBLEMS, 0)
    args = (tok, Template.plain, engine, reward, algo, rollout, 2)
    stale = sample_step(3, 0, stream, *args)  # for step 3, sampled by version 0
    for step in (1, 2):  # two updates (and syncs) on other batches: the learner is at version 2
        learn_step(sample_step(step, step - 1, stream, *args), engine, learner, algo, rollout, None)
    assert stale.kept
    ratios = []
    for b in stale.kept:
        prompt = stale.scored.rollouts.prompts.prompt_ids[b]
        for c in stale.scored.rollouts.completions[b]:
            learner_lp = learner.sequence_logprobs(prompt + c.token_ids, len(prompt), bf16=False)
            ratios += [math.exp(lq - ls) for lq, ls in zip(learner_lp, c.logprobs)]
    assert max(abs(r - 1) for r in ratios) > 0.05  # the two updates moved the policy
    assert min(abs(r - cap) for r in ratios) > 1e-4  # no token at the cap's edge
    result = learn_step(stale, engine, learner, algo, rollout, None)
    s = result.stats
    assert result.staleness == 2
    assert s.is_ratio_mean == pytest.approx(sum(ratios) / len(ratios), rel=1e-5)
    assert s.is_ratio_max == pytest.approx(max(ratios), rel=1e-5)
    assert s.is_weight_mean == pytest.approx(sum(min(r, cap) for r in ratios) / len(ratios), rel=1e-5)
    assert s.tis_clip_frac == pytest.approx(sum(r > cap for r in ratios) / len(ratios), abs=1e-9)
    assert 0 < s.tis_clip_frac < 1


def test_stale_batches_need_the_importance_weights_and_no_sleep_mode():
    with pytest.raises(ValueError, match=r"algorithm.tis_cap=0.0 .*rollout.max_staleness > 0"):
        run_cfg("m", "t", ["rollout.max_staleness=1"])
    with pytest.raises(ValueError, match=r"rollout.sleep_during_update=True .*max_staleness"):
        run_cfg(
            "m",
            "t",
            ["rollout=vllm", "rollout.max_staleness=1", "algorithm.tis_cap=2", "rollout.sleep_during_update=true"],
        )
    with pytest.raises(ValueError, match=r"rollout.max_staleness=-1"):
        run_cfg("m", "t", ["rollout.max_staleness=-1"])


ASYNC = ["rollout.max_staleness=1", "algorithm.tis_cap=2.0", "trainer.eval_every=2"]


def test_a_run_with_max_staleness_1_trains_on_stale_batches_and_resumes_in_order(tiny_model_dir, train_file, tmp_path):
    straight = tmp_path / "straight"
    every_step = ["trainer.steps=4", "trainer.checkpoint_every=1", "trainer.keep_last=4"]
    cfg = run_cfg(tiny_model_dir, train_file, [*ASYNC, *every_step], VowelShare)
    summary = run(cfg, straight)
    records = metrics(straight)
    staleness = [r["rollout/staleness"] for r in records]
    assert staleness[0] == 0 and set(staleness) <= {0.0, 1.0}
    assert 1.0 in staleness  # the producer samples step 2 while step 1 trains
    assert summary["max_staleness"] == 1
    assert sum(summary["staleness_histogram"].values()) == 4
    for r in records:
        assert r["time/learner_idle"] >= 0 and r["time/engine_idle"] >= 0
        assert r["policy/is_ratio_max"] >= r["policy/is_ratio_mean"] > 0
        assert 0 < r["policy/is_weight_mean"] <= 2.0
    assert "eval/heldout_accuracy" in records[1]

    # resume from the step-2 checkpoint, written while the producer had drawn step 3's batch already
    resumed_dir = tmp_path / "resumed"
    ckpt = straight / "checkpoints" / "step_000002"
    resumed_cfg = run_cfg(tiny_model_dir, train_file, [*ASYNC, "trainer.steps=4", f"trainer.resume={ckpt}"], VowelShare)
    resumed = run(resumed_cfg, resumed_dir)
    assert resumed["resumed_from_step"] == 2
    again = metrics(resumed_dir)
    assert [r["step"] for r in again] == [1, 2, 3, 4]
    # the batches sampled ahead of the checkpoint are drawn again: the same problems, in order
    assert [r["data/problem_ids"] for r in again] == [r["data/problem_ids"] for r in records]
    assert again[2]["rollout/staleness"] == 0  # the first batch after a resume comes from its weights


def test_evaluations_take_the_engines_turn_only_when_due():
    """The held-out hook holds the engine (waits for the producer's batch in progress) only on an
    evaluation step: a hook that took the turn every step would serialize sampling and learning."""
    from types import SimpleNamespace

    from reasoner.jobs.rl import heldout_hook

    turns, evals = [], {}

    def turn():
        turns.append("turn")
        return contextlib.nullcontext()

    def heldout_eval(name):
        evals[name] = SimpleNamespace(accuracy=SimpleNamespace(value=0.5), well_formed=1.0)
        return evals[name]

    heldout_eval.evals = evals
    trainer = SimpleNamespace(eval_every=2, steps=6)
    run_ = SimpleNamespace(cfg=SimpleNamespace(trainer=trainer), ctx=SimpleNamespace(heldout_eval=heldout_eval))
    run_.engine_turn = turn
    for step in range(1, 7):
        heldout_hook(run_, step, {})
    assert turns == ["turn", "turn"]  # steps 2 and 4 (6 is the last: the final evaluation covers it)
