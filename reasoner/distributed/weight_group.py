"""Weights from learner rank 0 to the rollout engines over a process group of their own (the
weight-update group: NCCL between GPUs, gloo between CPUs), instead of through the driver and
Ray's object store: vLLM's documented RLHF pattern (the trainer and the engines join one group
and the trainer broadcasts), with the engine in the actor's process as everywhere here.

The group is made without ``torch.distributed``'s global state (a ``TCPStore`` at rank 0 and a
``ProcessGroupGloo`` / ``ProcessGroupNCCL`` over it), so it lives beside the learner ranks' own
process group and the one vLLM makes in an engine's process. Member 0 is learner rank 0; the
engines' workers (one per tensor-parallel rank, `reasoner.rollout.weight_receiver`) follow, engine
by engine.

What travels is fixed by a `Layout` (names and shapes in the order rank 0 sends them, and the
engines' dtype), which both sides cut into the same buckets (`buckets`): per bucket, rank 0
broadcasts one flat buffer; an engine views it as the bucket's tensors and streams them into its
``load_weights``. One bucket is in flight at a time, so the sender holds one bucket beyond the
gathered unit (`reasoner.distributed.full_state.unit_by_unit`) and a receiver a bucket plus
whatever its loader keeps until a fused layer is complete (a fresh buffer per bucket: vLLM's
layer-wise reload may keep a view until then).
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Layout:
    """What one sync sends: `names` and `shapes` of the tensors, in order, sent as `dtype` (the
    engines' compute dtype: they would cast to it anyway)."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        """Bytes of one sync (every tensor once)."""
        return sum(math.prod(s) for s in self.shapes) * torch.empty(0, dtype=self.dtype).element_size()


def buckets(layout: Layout, bucket_bytes: int) -> list[range]:
    """Consecutive runs of `layout`'s tensors (index ranges), each as large as fits in
    `bucket_bytes`, with at least one tensor each (a larger tensor travels alone).

    Raises:
        ValueError: `bucket_bytes` < 1.
    """
    if bucket_bytes < 1:
        raise ValueError(f"bucket_bytes must be >= 1, got {bucket_bytes}")
    size = torch.empty(0, dtype=layout.dtype).element_size()
    out, start, used = [], 0, 0
    for i, shape in enumerate(layout.shapes):
        nbytes = math.prod(shape) * size
        if i > start and used + nbytes > bucket_bytes:
            out.append(range(start, i))
            start, used = i, 0
        used += nbytes
    if start < len(layout.shapes):
        out.append(range(start, len(layout.shapes)))
    return out


class WeightGroup:
    """This process's membership of a weight-update group (module docstring).

    Args:
        address: (host, port) of member 0, where its ``TCPStore`` listens.
        rank: this member's index (0: the sender, learner rank 0).
        world: members (1 + the engines' workers).
        backend: ``gloo`` (tensors on the CPU) or ``nccl`` (on this process's current GPU).
        timeout_s: how long joining or one broadcast may wait for the other members (seconds).
    Raises:
        ValueError: an unknown backend.
        RuntimeError (torch's DistNetworkError included): the members did not all join in time.
    """

    def __init__(self, address: tuple[str, int], rank: int, world: int, backend: str, timeout_s: float) -> None:
        if backend not in ("gloo", "nccl"):
            raise ValueError(f"weight-update group backend must be gloo or nccl, got {backend!r}")
        timeout = datetime.timedelta(seconds=timeout_s)
        host, port = address
        store = dist.TCPStore(host, port, world, is_master=rank == 0, timeout=timeout)
        prefixed = dist.PrefixStore("reasoner-weights", store)
        if backend == "gloo":
            self.group = dist.ProcessGroupGloo(prefixed, rank, world, timeout)
            self.device = torch.device("cpu")
        else:
            options = dist.ProcessGroupNCCL.Options()
            options._timeout = timeout
            self.group = dist.ProcessGroupNCCL(prefixed, rank, world, options)
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.store, self.rank, self.world = store, rank, world

    def _broadcast(self, buffer: torch.Tensor) -> None:
        """Member 0's `buffer` into every member's, returning once this member's copy is done (on
        NCCL, ``wait`` only orders the current stream after the collective: the stream is
        synchronized too, so one bucket is in flight and a failure surfaces here)."""
        options = dist.BroadcastOptions()
        options.rootRank = 0
        self.group.broadcast([buffer], options).wait()
        if buffer.is_cuda:
            torch.cuda.current_stream(buffer.device).synchronize()

    def send(self, layout: Layout, tensors: Iterable[tuple[str, torch.Tensor]], bucket_bytes: int) -> None:
        """Broadcast `tensors` (member 0: full tensors in `layout`'s order, any float dtype; each
        is copied at once, so a view valid until the next is drawn will do).

        Raises:
            ValueError: a tensor's name or shape is not the layout's (nothing is sent after it).
        """
        stream = iter(tensors)
        for run in buckets(layout, bucket_bytes):
            buffer = torch.empty(sum(math.prod(layout.shapes[i]) for i in run), dtype=layout.dtype, device=self.device)
            offset = 0
            for i in run:
                name, t = next(stream)
                if name != layout.names[i] or tuple(t.shape) != layout.shapes[i]:
                    raise ValueError(
                        f"weight {i}: got {name!r} {tuple(t.shape)}, "
                        f"the layout has {layout.names[i]!r} {layout.shapes[i]}"
                    )
                buffer[offset : offset + t.numel()].copy_(t.reshape(-1))
                offset += t.numel()
            self._broadcast(buffer)

    def receive(self, layout: Layout, bucket_bytes: int) -> Iterator[tuple[str, torch.Tensor]]:
        """The tensors member 0 sends (`send`), by name, as views of one buffer per bucket
        (received when the iteration reaches it; iterate to the end)."""
        for run in buckets(layout, bucket_bytes):
            shapes = [layout.shapes[i] for i in run]
            buffer = torch.empty(sum(math.prod(s) for s in shapes), dtype=layout.dtype, device=self.device)
            self._broadcast(buffer)
            offset = 0
            for i, shape in zip(run, shapes):
                n = math.prod(shape)
                yield layout.names[i], buffer[offset : offset + n].view(shape)
                offset += n

    def close(self) -> None:
        """Leave the group (its connections close; the other members' next broadcast fails)."""
        self.group.shutdown()
