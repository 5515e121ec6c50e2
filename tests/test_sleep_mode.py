"""``rollout.sleep_during_update`` (vLLM's sleep mode around the learner's phases). vLLM sleeps
only on CUDA / ROCm, so here: the settings it cannot run with are refused by name, and
`reasoner.rollout.base.asleep` finds the engine under its wrappers, puts it to sleep for the
block and wakes it when the block ends, also when the block raises."""

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
