"""Rollout engines: sample completions, take new weights, score fixed sequences."""

from __future__ import annotations

from typing import Any

from reasoner.config import Backend, RolloutConfig
from reasoner.rollout.base import GuardedEngine, RolloutEngine, RolloutEngineError


def make_engine(
    backend: Backend, model_path: str, cfg: RolloutConfig, seed: int, tensor_parallel: int = 1
) -> RolloutEngine:
    """Build the configured backend (vLLM imports only when chosen), wrapped in a
    `GuardedEngine` so that its failures raise `RolloutEngineError`; `tensor_parallel` workers
    (vLLM only).

    Raises:
        ValueError: `tensor_parallel` > 1 with the transformers backend.
    """
    if backend == Backend.vllm:
        from reasoner.rollout.vllm_engine import VLLMEngine

        return GuardedEngine(VLLMEngine(model_path, cfg, seed, tensor_parallel), backend.value)
    if tensor_parallel > 1:
        raise ValueError("cluster.rollout.tensor_parallel > 1 needs rollout.backend=vllm")
    from reasoner.rollout.hf_engine import HFEngine

    return GuardedEngine(HFEngine(model_path, seed), backend.value)


__all__: list[Any] = ["RolloutEngine", "RolloutEngineError", "make_engine"]
