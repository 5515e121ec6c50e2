"""Typed configuration of ``reasoner-eval`` (``conf/eval.yaml`` chooses the model group and the
run directory; every default lives here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from eval.benchmarks import BUILTIN, Sampling
from reasoner.config import Backend, EnvConfig, ModelConfig


@dataclass
class EvalConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    #: registered benchmark names (`eval.benchmarks`).
    benchmarks: list[str] = field(default_factory=lambda: list(BUILTIN))
    #: sampling; null keeps each benchmark's default (temperature 0.6, top-p 0.95, n per
    #: benchmark, 32768 tokens, cut to the model's context).
    n: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    #: problems per benchmark: the first `limit` of a fixed shuffle, the same in every run; null = all.
    limit: int | None = None
    #: sampling seed (the engine's).
    seed: int = 0
    backend: Backend = Backend.vllm
    #: the engine's context (prompt + completion), tokens; null = the model's maximum.
    max_model_len: int | None = None
    #: vLLM KV-cache size on CPU, GiB; on a GPU ``gpu_memory_utilization`` sizes it.
    kv_cache_gb: float = 1.0
    gpu_memory_utilization: float = 0.8
    #: problems per engine call; an interrupted run loses at most the chunk in flight.
    chunk: int = 32
    #: math benchmarks: also read answers outside a box (answer phrases in several languages,
    #: the last LaTeX span, a standalone last number; `verifiers.math`), for models that do not
    #: box their answer. Off: the last \\boxed{} only, as the benchmarks' prompts ask.
    free_form: bool = False
    #: tools: ``env=python`` / ``env=search`` run each sample as a multi-turn episode
    #: (`reasoner.envs`); ``env=none`` (the default), one completion.
    env: EnvConfig = field(default_factory=EnvConfig)

    def __post_init__(self) -> None:
        checks = [
            ("n", self.n, self.n is None or self.n >= 1, "null or >= 1"),
            ("temperature", self.temperature, self.temperature is None or self.temperature >= 0, "null or >= 0"),
            ("top_p", self.top_p, self.top_p is None or 0 < self.top_p <= 1, "null or in (0, 1]"),
            ("max_tokens", self.max_tokens, self.max_tokens is None or self.max_tokens >= 1, "null or >= 1"),
            ("limit", self.limit, self.limit is None or self.limit >= 1, "null or >= 1"),
            ("chunk", self.chunk, self.chunk >= 1, ">= 1"),
            ("kv_cache_gb", self.kv_cache_gb, self.kv_cache_gb > 0, "> 0"),
            (
                "benchmarks",
                self.benchmarks,
                len(self.benchmarks) > 0 and len(set(self.benchmarks)) == len(self.benchmarks),
                "a non-empty list without repeats",
            ),
        ]
        for name, value, ok, allowed in checks:
            if not ok:
                raise ValueError(f"config field {name}={value!r} is not allowed: must be {allowed}")

    def sampling(self, default: Sampling) -> Sampling:
        """A benchmark's default sampling with this config's overrides applied."""
        pick = lambda mine, theirs: theirs if mine is None else mine  # noqa: E731
        return Sampling(
            pick(self.n, default.n),
            pick(self.temperature, default.temperature),
            pick(self.top_p, default.top_p),
            pick(self.max_tokens, default.max_tokens),
        )


def register_configs() -> None:
    """Store the schema in Hydra's ConfigStore (``conf/eval.yaml`` lists it first)."""
    ConfigStore.instance().store(name="eval_schema", node=EvalConfig)
