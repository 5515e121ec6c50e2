"""``rollout.sleep_during_update`` (vLLM's sleep mode around the learner's phases). vLLM sleeps
only on CUDA / ROCm, so here: the settings it cannot run with are refused by name, and
`reasoner.rollout.base.asleep` finds the engine under its wrappers, puts it to sleep for the
block and wakes it when the block ends, also when the block raises, and an RL step scores and
updates with the engine asleep and syncs the weights into it awake."""

from __future__ import annotations

import pytest
import torch

from reasoner.config import Backend, RolloutConfig
from reasoner.rollout.base import GuardedEngine, asleep
from reasoner.rollout.hf_engine import HFEngine


def test_sleep_mode_is_refused_where_it_cannot_run(tiny_model_dir):
    with pytest.raises(ValueError, match=r"rollout.sleep_during_update=True .*backend=hf"):
        RolloutConfig(backend=Backend.hf, sleep_during_update=True)
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the CPU refusal cannot be seen here")
    from reasoner.rollout.vllm_engine import VLLMEngine

    with pytest.raises(ValueError, match="rollout.sleep_during_update=true needs vLLM on a GPU"):
        VLLMEngine(str(tiny_model_dir), RolloutConfig(sleep_during_update=True, max_model_len=256), seed=0)


class SleepyEngine(HFEngine):
    """The transformers engine with sleep / wake calls that record the engine's state (vLLM's
    own cannot run on a CPU)."""

    sleeps = True

    def __init__(self, model_path: str, seed: int) -> None:
        super().__init__(model_path, seed)
        self.events: list[str] = []

    def sleep(self) -> None:
        self.events.append("sleep")

    def wake_up(self) -> None:
        self.events.append("wake")


def test_the_block_runs_asleep_and_the_engine_wakes_even_when_it_raises(tiny_model_dir):
    inner = SleepyEngine(str(tiny_model_dir), seed=0)
    engine = GuardedEngine(inner, "hf")
    with asleep(engine):
        assert inner.events == ["sleep"]
    assert inner.events == ["sleep", "wake"]
    with pytest.raises(RuntimeError, match="update failed"), asleep(engine):
        raise RuntimeError("update failed")
    assert inner.events == ["sleep", "wake"] * 2
    [[completion]] = engine.generate([[1, 5, 9]], 1, 1.0, 1.0, 3)  # awake: it samples
    assert len(completion.token_ids) >= 1

    inner.sleeps = False  # the setting off: nothing happens
    with asleep(engine):
        pass
    plain = GuardedEngine(HFEngine(str(tiny_model_dir), seed=0), "hf")
    with asleep(plain):  # an engine without sleep mode
        pass
    assert inner.events == ["sleep", "wake"] * 2


def test_an_rl_step_scores_and_updates_while_the_engine_sleeps(tiny_model_dir):
    """`reasoner.rl_step.rl_step` on the real transformers engine (with the recording sleep) and
    the real learner: generation runs awake, scoring and the update asleep, the weight sync
    awake again after them."""
    from scripted_verifiers import VowelShare
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasoner.config import AlgorithmConfig, RewardConfig, TrainerConfig
    from reasoner.data.stream import PromptStream
    from reasoner.learner import Learner
    from reasoner.prompts import Template
    from reasoner.rewards import build_reward
    from reasoner.rl_step import rl_step
    from reasoner.types import Problem

    inner = SleepyEngine(str(tiny_model_dir), seed=0)
    states: dict[str, str] = {}
    awake = lambda: not inner.events or inner.events[-1] == "wake"  # noqa: E731

    class Watched(Learner):
        def score(self, batch):
            states["score"] = "awake" if awake() else "asleep"
            return super().score(batch)

        def update(self, batch):
            states["update"] = "awake" if awake() else "asleep"
            return super().update(batch)

        def export_weights(self):
            states["sync"] = "awake" if awake() else "asleep"
            return super().export_weights()

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    trainer = TrainerConfig(bf16_autocast=False, micro_batch_size=4)
    learner = Watched(policy, AlgorithmConfig(), trainer, tok.pad_token_id, 1.0, 6)
    problems = [Problem(f"p{i}", f"What is {i} + {i}?", str(2 * i)) for i in range(4)]
    rollout = RolloutConfig(backend=Backend.hf, max_tokens=6, max_model_len=256)
    reward = build_reward(RewardConfig(), Template.plain, VowelShare())
    engine = GuardedEngine(inner, "hf")
    result = rl_step(1, PromptStream(problems, 0), tok, Template.plain, engine, reward, learner,
                     AlgorithmConfig(), rollout, 2, probe=None)  # fmt: skip
    assert result.stats.optimizer_steps >= 1
    assert states == {"score": "asleep", "update": "asleep", "sync": "awake"}
    assert inner.events == ["sleep", "wake"]
