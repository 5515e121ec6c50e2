"""What the ranks of a data-parallel learner must agree on, behind one small interface: sums of
counts (the loss normalizers, the update's statistics) and the largest count (how many
micro-batches every rank runs, so that the FSDP2 collectives of their forward and backward
passes pair up). `Local` is the single process: both are the identity."""

from __future__ import annotations

from typing import Any, Protocol, Sequence, TypeVar

import torch
import torch.distributed as dist

Number = TypeVar("Number", int, float)


class Collective(Protocol):
    """``world``: the number of ranks; ``rank``: this one's (0 writes checkpoints);
    ``sum(values)``: each value summed over the ranks; ``max(value)``: the largest over the
    ranks (an int or a float, as given); ``gather(obj)``: every rank's `obj` (picklable), in
    rank order; ``barrier()``: wait for every rank. Every rank must make the same calls in the same order."""

    world: int
    rank: int

    def sum(self, values: Sequence[float]) -> list[float]: ...

    def max(self, value: Number) -> Number: ...

    def gather(self, obj: Any) -> list[Any]: ...

    def barrier(self) -> None: ...


class Local:
    """One process: nothing to agree on."""

    world, rank = 1, 0

    def sum(self, values: Sequence[float]) -> list[float]:
        return list(values)

    def max(self, value: Number) -> Number:
        return value

    def gather(self, obj: Any) -> list[Any]:
        return [obj]

    def barrier(self) -> None:
        pass


class ProcessGroup:
    """The default ``torch.distributed`` process group (it must be initialized): one all-reduce
    per call, in float64 (exact for counts up to 2^53)."""

    def __init__(self) -> None:
        self.world, self.rank = dist.get_world_size(), dist.get_rank()

    def sum(self, values: Sequence[float]) -> list[float]:
        t = torch.tensor(list(values), dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def max(self, value: Number) -> Number:
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return type(value)(t.item())

    def barrier(self) -> None:
        dist.barrier()

    def gather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out
