"""The rollout-engine interface and its failure guard, shared by every backend
(weight sync: `reasoner.rollout.sync`)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Protocol, Sequence

import torch

from reasoner.types import Completion


class RolloutEngine(Protocol):
    """What the trainer needs from a sampler.

    - ``generate(prompt_ids, n, temperature, top_p, max_tokens, stop=())``: for each of B prompts,
      n completions with token ids, sampler log-probs and finish reason: ``[B][n]`` Completions.
      `max_tokens` is one budget for all prompts or one per prompt (B ints); a completion ends at
      EOS, at the token that completes one of the `stop` strings (kept, with its log-prob;
      finish reason ``stop``), or at its budget (``length``).
    - ``load_weights(named_tensors)``: replace the sampler's weights in memory, in place
      (HF checkpoint names, any float dtype).
    - ``sequence_logprobs(token_ids, prompt_len)``: log p(token_t | tokens_<t) for each
      t >= prompt_len, under the current weights (nats).
    - ``dtype``: the sampler's compute dtype.
    """

    dtype: torch.dtype

    def generate(
        self,
        prompt_ids: list[list[int]],
        n: int,
        temperature: float,
        top_p: float,
        max_tokens: int | Sequence[int],
        stop: Sequence[str] = (),
    ) -> list[list[Completion]]: ...

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None: ...

    def sequence_logprobs(self, token_ids: list[int], prompt_len: int) -> list[float]: ...


def unwrap(engine: Any, method: str) -> Any:
    """`engine`, or the engine it wraps (``.engine``, at any depth: `GuardedEngine`, the episode
    engine), that has `method`; None when none has it. For the capabilities some engines have
    and the `RolloutEngine` protocol does not name: ``pull_weights``, ``sleep``."""
    while engine is not None and not hasattr(engine, method):
        engine = getattr(engine, "engine", None)
    return engine


@contextmanager
def asleep(engine: Any) -> Iterator[None]:
    """Run the block with the engine asleep (``rollout.sleep_during_update``: vLLM's sleep mode
    frees the engine's GPU memory for the learner), and wake it when the block ends, raised or
    not. A no-op for an engine without sleep mode (``sleep``, under the wrappers: `unwrap`)."""
    inner = unwrap(engine, "sleep")
    if inner is None or not inner.sleeps:
        yield
        return
    try:
        inner.sleep()
        yield
    finally:
        inner.wake_up()  # also after a sleep that failed halfway


def budgets(max_tokens: int | Sequence[int], prompts: int) -> list[int]:
    """`max_tokens` of ``generate`` as one budget per prompt (tokens).

    Raises:
        ValueError: a list whose length is not the number of prompts.
    """
    if isinstance(max_tokens, int):
        return [max_tokens] * prompts
    if len(max_tokens) != prompts:
        raise ValueError(f"max_tokens has {len(max_tokens)} budgets for {prompts} prompts")
    return list(max_tokens)


class RolloutEngineError(RuntimeError):
    """The rollout engine itself failed (raised while generating, loading weights or scoring)."""


class GuardedEngine:
    """A `RolloutEngine` whose failures surface as `RolloutEngineError` naming the backend and
    the call, with the engine's own exception chained, so the trainer can tell an engine
    failure from its own errors.

    Args:
        engine: the engine to wrap.
        backend: its name, for messages (``vllm``, ``hf``).
    """

    def __init__(self, engine: RolloutEngine, backend: str) -> None:
        self.engine, self.backend = engine, backend
        self.dtype = engine.dtype

    @contextmanager
    def _guard(self, call: str) -> Iterator[None]:
        try:
            yield
        except Exception as err:
            raise RolloutEngineError(
                f"rollout engine ({self.backend}) failed in {call}: {type(err).__name__}: {err}"
            ) from err

    def generate(
        self,
        prompt_ids: list[list[int]],
        n: int,
        temperature: float,
        top_p: float,
        max_tokens: int | Sequence[int],
        stop: Sequence[str] = (),
    ) -> list[list[Completion]]:
        with self._guard("generate"):
            return self.engine.generate(prompt_ids, n, temperature, top_p, max_tokens, stop)

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        with self._guard("load_weights"):
            self.engine.load_weights(named_tensors)

    def sequence_logprobs(self, token_ids: list[int], prompt_len: int) -> list[float]:
        with self._guard("sequence_logprobs"):
            return self.engine.sequence_logprobs(token_ids, prompt_len)

    @property
    def members(self) -> list[Any]:
        """The wrapped engine's members, each guarded (a group of engines: each is checked after
        a weight sync, `reasoner.rollout.sync.sync_drift`), or this engine alone."""
        members = getattr(self.engine, "members", None)
        return [self] if members is None else [GuardedEngine(m, f"{self.backend} #{i}") for i, m in enumerate(members)]
