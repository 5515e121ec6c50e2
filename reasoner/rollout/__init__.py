"""Rollout engines: sample completions, take new weights, score fixed sequences."""

from __future__ import annotations

from typing import Any

from reasoner.config import Backend, RolloutConfig
from reasoner.rollout.base import RolloutEngine


def make_engine(backend: Backend, model_path: str, cfg: RolloutConfig, seed: int) -> RolloutEngine:
    """Build the configured backend (vLLM imports only when chosen)."""
    if backend == Backend.vllm:
        from reasoner.rollout.vllm_engine import VLLMEngine

        return VLLMEngine(model_path, cfg, seed)
    from reasoner.rollout.hf_engine import HFEngine

    return HFEngine(model_path, seed)


__all__: list[Any] = ["RolloutEngine", "make_engine"]
