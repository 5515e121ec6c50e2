"""The engines' side of the weight-update group (`reasoner.distributed.weight_group`): each
process that holds engine weights joins the group as a member of its own and loads what learner
rank 0 broadcasts.

- vLLM: `VLLMWeightReceiver` is a worker extension (``LLM(worker_extension_cls=...)``, vLLM's
  documented RLHF pattern), so every worker of an engine, one per tensor-parallel rank, joins
  and receives the full tensors; vLLM's weight loaders keep each worker's shard. The engine
  calls its workers through ``collective_rpc`` (`reasoner.rollout.vllm_engine.VLLMEngine`).
- transformers: `reasoner.rollout.hf_engine.HFEngine` is one member.

An engine of W workers takes members ``first_rank .. first_rank + W - 1``.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

from reasoner.distributed.weight_group import Layout, WeightGroup


class WeightReceiver:
    """A member of the weight-update group that loads the weights it receives. A subclass says
    where this process sits among its engine's members (`_member_offset`) and how it loads
    (`_load_received`). The names are distinct from a vLLM worker's own (vLLM refuses an
    extension that shadows one)."""

    _weight_group: WeightGroup | None = None

    def _member_offset(self) -> int:
        raise NotImplementedError

    def _load_received(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        raise NotImplementedError

    def join_weight_group(
        self, address: tuple[str, int], first_rank: int, world: int, backend: str, timeout_s: float
    ) -> str | None:
        """Join the group at `address` as member ``first_rank + offset`` of `world`, leaving the
        one this process was in (returns once every member has joined). None, or the error that
        stopped it (the members did not all join within `timeout_s` seconds): errors come back
        as values, not raised, so that every worker of an engine answers its ``collective_rpc``."""
        self.leave_weight_group()
        try:
            self._weight_group = WeightGroup(address, first_rank + self._member_offset(), world, backend, timeout_s)
        except Exception as err:
            return f"{type(err).__name__}: {err}"
        return None

    def in_weight_group(self) -> bool:
        return self._weight_group is not None

    def receive_weights(self, layout: Layout, bucket_bytes: int) -> str | None:
        """Load the weights member 0 broadcasts (`WeightGroup.receive`, one bucket at a time).
        None, or the error that broke the transfer (a member died, or this process is in no
        group); this process has then left the group, so that the sender fails at once instead
        of waiting for it."""
        if self._weight_group is None:
            return "not in a weight-update group"
        try:
            self._load_received(self._weight_group.receive(layout, bucket_bytes))
        except Exception as err:
            self.leave_weight_group()
            return f"{type(err).__name__}: {err}"
        return None

    def leave_weight_group(self) -> None:
        if self._weight_group is not None:
            self._weight_group.close()
            self._weight_group = None


class VLLMWeightReceiver(WeightReceiver):
    """The vLLM worker extension (module docstring); a worker's member offset is its rank in
    its engine (``WorkerBase.rank``: the tensor-parallel rank)."""

    rank: int
    reload_weights: Any

    def _member_offset(self) -> int:
        return self.rank

    def _load_received(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        self.reload_weights(weights_iterator=weights, is_checkpoint_format=True)
