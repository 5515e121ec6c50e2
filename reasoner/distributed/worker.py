"""One rank of the sharded learner: a process (a Ray actor, `reasoner.distributed.sharded`) that
joins a ``torch.distributed`` process group (gloo on CPUs, NCCL on GPUs), loads the policy (and
the reference and critic the algorithm needs), shards each with FSDP2 (``fully_shard`` on every
decoder layer, then on the whole model) and runs a `reasoner.learner.Learner` on its share of
every batch, with the ranks' counts and decisions agreed through
`reasoner.distributed.collective.ProcessGroup`.

Gradients: each rank's loss is its part of the global loss (normalized by the global token and
sequence counts), so the ranks' gradients must be summed, not averaged: FSDP2's reduce-scatter
divide factor is set to 1.
"""

from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from safetensors.torch import load_model

from reasoner.config import AlgorithmConfig, TrainerConfig
from reasoner.distributed.collective import ProcessGroup
from reasoner.distributed.full_state import unit_by_unit
from reasoner.distributed.weight_group import Layout, WeightGroup
from reasoner.learner import Learner, UpdateStats, companions
from reasoner.models import load_policy
from reasoner.types import TrainBatch


@dataclass
class LearnerSpec:
    """What every rank builds its learner from (picklable, sent to each actor).

    Attributes:
        model_path: the policy's HF directory (fp32 weights are loaded from it).
        algo, trainer: the run's algorithm and trainer groups.
        pad_id: the tokenizer's padding id.
        temperature: the rollout temperature.
        max_tokens: the generation budget.
        timeout_s: how long a collective may wait before it fails, naming the rank (seconds).
        weights: a safetensors file of the policy's starting weights (a cold-started policy),
            loaded over `model_path`'s; None: `model_path`'s own.
        keep_unsharded: `reasoner.learner.Learner`'s (``cluster.learner.keep_unsharded``).
        free_gpu_cache: after each update, hand torch's cached free GPU blocks back, for the
            colocated engine that wakes next (``rollout.sleep_during_update`` with
            ``cluster.colocate``).
    """

    model_path: str
    algo: AlgorithmConfig
    trainer: TrainerConfig
    pad_id: int
    temperature: float
    max_tokens: int
    timeout_s: float = 600.0
    weights: str | None = None
    keep_unsharded: bool = False
    free_gpu_cache: bool = False


def shard(model: torch.nn.Module, mesh: Any) -> torch.nn.Module:
    """FSDP2 ``fully_shard`` on every decoder layer of `model` (a `reasoner.logprobs.Scorer`, or a
    module with a ``backbone`` decoder: the critic), then on `model` itself, the root unit (the
    embeddings, the final norm, the LM or value head); gradients reduce as sums (divide factor 1).
    Returns `model`, sharded in place."""
    from torch.distributed.fsdp import FSDPModule, fully_shard

    decoder = model.backbone if hasattr(model, "backbone") else model.lm.get_decoder()
    for layer in decoder.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.set_gradient_divide_factor(1.0)
            m.set_force_sum_reduction_for_comms(True)  # plain sums: gloo has no pre-multiplied sum
    return model


def free_port() -> int:
    """A TCP port free on this host now."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class LearnerWorker:
    """One rank (module docstring). Methods are called on every rank with the same arguments
    except for the batch, each rank's share (`reasoner.distributed.sharded.split_groups`)."""

    def address(self) -> tuple[str, int]:
        """(this host's address, a free port): where rank 0 listens for the process group."""
        import ray

        return ray.util.get_node_ip_address(), free_port()

    def setup(self, rank: int, world: int, master: tuple[str, int], spec: LearnerSpec) -> None:
        """Join the process group (rank `rank` of `world`, rendezvous at `master`) and build the
        sharded learner of `spec`."""
        from torch.distributed.device_mesh import init_device_mesh

        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = master[0], str(master[1])
        # Ray shows an actor only the GPUs it was given (CUDA_VISIBLE_DEVICES; none without
        # cluster.learner.gpus_per_worker): its GPU is cuda:0, and without one the rank runs on CPUs
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(0)
        timeout = datetime.timedelta(seconds=spec.timeout_s)
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world, timeout=timeout)
        self.rank = rank
        self.free_gpu_cache = cuda and spec.free_gpu_cache
        torch.manual_seed(spec.trainer.seed)  # every rank starts from the same critic head
        mesh = init_device_mesh("cuda" if cuda else "cpu", (world,))
        policy = load_policy(spec.model_path, "cuda" if cuda else "cpu")
        if spec.weights is not None:
            load_model(policy, spec.weights)
        ref, critic = companions(policy, spec.algo)
        self.learner = Learner(
            policy,
            spec.algo,
            spec.trainer,
            spec.pad_id,
            spec.temperature,
            spec.max_tokens,
            ref,
            critic,
            collective=ProcessGroup(),
            shard=partial(shard, mesh=mesh),
            keep_unsharded=spec.keep_unsharded,
        )

    def score(self, batch: TrainBatch) -> TrainBatch:
        return self.learner.score(batch)

    def update(self, batch: TrainBatch) -> UpdateStats:
        stats = self.learner.update(batch)
        if self.free_gpu_cache:
            torch.cuda.empty_cache()
        return stats

    def kl_coef(self) -> float:
        return self.learner.kl_coef

    def gradient(self, batch: TrainBatch) -> dict[str, torch.Tensor] | None:
        """The policy's full gradient of one mini-batch of this rank's `batch` (all its rows),
        summed over the ranks, without an optimizer step (then zeroed); rank 0 returns it by
        parameter name, the others None."""
        self.learner.model.train()
        self.learner.accumulate(batch, list(range(len(batch))))
        grads = {}
        for name, p in self.learner.model.named_parameters():
            g = p.grad.full_tensor() if p.grad is not None else torch.zeros(p.shape)
            grads[name] = g.detach().cpu()
        self.learner.optimizer.zero_grad(set_to_none=True)
        return grads if self.rank == 0 else None

    def _gathered(self) -> Iterator[tuple[str, torch.Tensor]]:
        """The policy's full weights by HF name, gathered one FSDP2 unit at a time (a collective)."""
        names = [name for name, _ in self.learner.export_weights()]
        return unit_by_unit(self.learner._policy, self.learner.model, names)

    def export_weights(self) -> list[tuple[str, torch.Tensor]] | None:
        """The policy's full weights by HF name (gathered from the shards, on every rank, onto the
        CPU, for the object store); rank 0 returns them, the others None."""
        gathered = self._gathered()
        if self.rank != 0:
            for _ in gathered:  # take part in every all-gather, keep nothing
                pass
            return None
        return [(name, t.cpu().clone()) for name, t in gathered]

    def weight_layout(self, dtype: torch.dtype) -> Layout:
        """The `Layout` of `send_weights`: the policy's weights by HF name, sent as `dtype`."""
        named = list(self.learner.export_weights())
        return Layout(tuple(n for n, _ in named), tuple(tuple(t.shape) for _, t in named), dtype)

    def join_weight_group(self, address: tuple[str, int], world: int, backend: str, timeout_s: float) -> None:
        """Rank 0: join the weight-update group as its member 0 (`reasoner.distributed.weight_group`),
        leaving the one it was in."""
        if getattr(self, "weight_group", None) is not None:
            self.weight_group.close()
        self.weight_group = WeightGroup(address, 0, world, backend, timeout_s)

    def send_weights(self, layout: Layout, bucket_bytes: int) -> str | None:
        """Every rank gathers the policy's weights (a collective); rank 0 broadcasts them to the
        weight-update group. Returns None, or (rank 0) the error that broke the broadcast (an
        engine died): the gathering still runs to the end, so the other ranks are not left
        waiting, and the learner stays usable."""
        weights, error = self._gathered(), None
        if self.rank == 0:
            try:
                self.weight_group.send(layout, weights, bucket_bytes)
            except Exception as err:  # the group is broken: leave it (engines waiting in it fail at once)
                self.weight_group.close()
                self.weight_group, error = None, f"{type(err).__name__}: {err}"
        for _ in weights:  # the rest of the gathering (all of it on ranks > 0), and the last units resharded
            pass
        return error

    def sequence_logprobs(self, token_ids: list[int], prompt_len: int, bf16: bool) -> list[float]:
        return self.learner.sequence_logprobs(token_ids, prompt_len, bf16)

    def save(self, path: str) -> None:
        """`reasoner.learner.Learner.save` (a collective: rank 0 writes)."""
        self.learner.save(Path(path))

    def load(self, path: str) -> None:
        self.learner.load(Path(path))
