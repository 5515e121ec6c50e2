"""The sharded learner as the driver sees it: `ShardedLearner` implements the step's part of
`reasoner.learner.LearnerAPI` (``score``, ``update``, ``export_weights``, ``sequence_logprobs``)
over N `reasoner.distributed.worker.LearnerWorker` Ray actors (one rank each), so the RL step
runs unchanged against it. Checkpoints (``save`` / ``load``) hold the full state in the
single-process learner's files (rank 0 writes them; every rank reads them, so on several nodes
the run directory must be on storage they share), and a run resumes with any number of ranks.

A batch is split across the ranks by whole groups (`split_groups`: GRPO-family advantages and
prompt sharing need a group together), contiguous and balanced by tokens; results come back in
the batch's order (`merge_rows`). Every call goes to every rank at once (their collectives pair
up); results that every rank computes alike (statistics, log-probs) are taken from rank 0.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from reasoner.distributed.full_state import load_full_state
from reasoner.distributed.worker import LearnerSpec, LearnerWorker
from reasoner.learner import UpdateStats
from reasoner.types import TrainBatch


class LearnerWorkerError(RuntimeError):
    """A learner rank failed: its process died, or it raised (a collective that timed out waiting
    for another rank included); the message names the rank. The process group is then unusable."""


#: `TrainBatch` fields that hold one entry per sequence
PER_ROW = ("sequences", "prompt_lens", "sampler_logprobs", "truncated", "loss_masks")
ROWS_OUT = ("old_logp", "ref_logp", "values", "advantages", "returns")


def split_groups(batch: TrainBatch, ranks: int) -> list[list[int]]:
    """Row indices of each rank: contiguous runs of whole groups, cut where the running token
    count (prompt + completion) crosses each rank's equal share. Every rank gets at least one group.

    Raises:
        ValueError: fewer groups than ranks.
    """
    g = batch.group_size
    groups = len(batch) // g
    if groups < ranks:
        raise ValueError(f"{groups} groups cannot be split across {ranks} learner ranks: give every rank at least one")
    tokens = [sum(len(s) for s in batch.sequences[i * g : (i + 1) * g]) for i in range(groups)]
    total, cuts, running = sum(tokens), [], 0
    for i, t in enumerate(tokens):
        running += t
        left_groups, left_ranks = groups - (i + 1), ranks - 1 - len(cuts)
        if len(cuts) < ranks - 1 and (running >= total * (len(cuts) + 1) / ranks or left_groups == left_ranks):
            cuts.append(i + 1)
    bounds = [0, *cuts, groups]
    return [list(range(bounds[r] * g, bounds[r + 1] * g)) for r in range(ranks)]


def take_rows(batch: TrainBatch, rows: Sequence[int]) -> TrainBatch:
    """The sub-batch of `rows` (whole groups, so ``group_size`` still holds)."""
    picked = {f: [getattr(batch, f)[i] for i in rows] for f in PER_ROW}
    filled = {f: [getattr(batch, f)[i] for i in rows] for f in ROWS_OUT if getattr(batch, f) is not None}
    return replace(batch, rewards=batch.rewards[list(rows)], **picked, **filled)


def merge_rows(batch: TrainBatch, shards: Sequence[TrainBatch], parts: Sequence[Sequence[int]]) -> TrainBatch:
    """`batch` with the per-row outputs (`ROWS_OUT`) the shards filled, put back in place."""
    out = {}
    for f in ROWS_OUT:
        if getattr(shards[0], f) is None:
            out[f] = getattr(batch, f)
            continue
        rows: list = [None] * len(batch)
        for shard, part in zip(shards, parts):
            for i, row in zip(part, getattr(shard, f)):
                rows[i] = row
        out[f] = rows
    return replace(batch, **out)


class ShardedLearner:
    """`reasoner.learner.LearnerAPI` over `workers` Ray actors of `LearnerWorker`, set up as one
    process group (rank 0 hosts the rendezvous).

    Args:
        spec: what every rank builds (`LearnerSpec`).
        workers: the number of ranks (learner processes).
        cpus_per_worker, gpus_per_worker: each actor's Ray resources.
        placement: Ray actor options of each rank (its placement-group bundle), or None.
    Raises:
        RuntimeError: Ray is not initialized (``ray.init`` first).
    """

    def __init__(
        self,
        spec: LearnerSpec,
        workers: int,
        cpus_per_worker: float = 1,
        gpus_per_worker: float = 0,
        placement: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        import ray

        if not ray.is_initialized():
            raise RuntimeError("ShardedLearner needs a Ray cluster: call ray.init() first")
        actor = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker)(LearnerWorker)
        self.workers = [actor.options(**(placement[r] if placement else {})).remote() for r in range(workers)]
        master = ray.get(self.workers[0].address.remote())
        self._all("setup", [(r, workers, master, spec) for r in range(workers)])
        self.spec, self.kl_coef = spec, spec.algo.kl.beta

    def _all(self, method: str, args: Sequence[tuple]) -> list[Any]:
        """Call `method` on every rank at once, rank r with ``args[r]`` (only ranks 0..len(args)-1);
        their results in rank order.

        Raises:
            LearnerWorkerError: a rank failed (the first to fail is named); the others, which
                would wait for it in their collectives, are not waited for.
        """
        import ray

        futures = [getattr(w, method).remote(*a) for w, a in zip(self.workers, args)]
        pending = list(futures)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                ray.get(done[0])
            except Exception as err:  # the rank raised, or Ray lost its process
                rank = futures.index(done[0])
                raise LearnerWorkerError(
                    f"learner rank {rank} of {len(self.workers)} failed in {method}: {type(err).__name__}: {err}"
                ) from err
        return ray.get(futures)

    def _same(self, method: str, *args: Any) -> list[Any]:
        return self._all(method, [args] * len(self.workers))

    def _split(self, batch: TrainBatch) -> tuple[list[list[int]], list[tuple[TrainBatch]]]:
        parts = split_groups(batch, len(self.workers))
        return parts, [(take_rows(batch, p),) for p in parts]

    def score(self, batch: TrainBatch) -> TrainBatch:
        parts, shards = self._split(batch)
        return merge_rows(batch, self._all("score", shards), parts)

    def update(self, batch: TrainBatch) -> UpdateStats:
        _, shards = self._split(batch)
        stats = self._all("update", shards)[0]  # global statistics, alike on every rank
        self.kl_coef = stats.kl_coef
        return stats

    def gradient(self, batch: TrainBatch) -> dict[str, torch.Tensor]:
        """The policy's gradient of `batch` as one mini-batch, summed over the ranks (for tests)."""
        _, shards = self._split(batch)
        return self._all("gradient", shards)[0]

    def export_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        return iter(self._same("export_weights")[0])

    def sequence_logprobs(self, token_ids: list[int], prompt_len: int, bf16: bool) -> list[float]:
        return self._same("sequence_logprobs", token_ids, prompt_len, bf16)[0]

    # the weight-update group (`reasoner.distributed.weight_group`): rank 0 is its member 0

    def weight_group_address(self) -> tuple[str, int]:
        """(rank 0's host, a free port there): where the weight-update group meets."""
        import ray

        return ray.get(self.workers[0].address.remote())

    def join_weight_group(self, address: tuple[str, int], world: int, backend: str, timeout_s: float) -> None:
        """Rank 0 joins a weight-update group of `world` members as member 0 (returns once all have)."""
        self._all("join_weight_group", [(address, world, backend, timeout_s)])  # one entry: rank 0 only

    def weight_layout(self, dtype: torch.dtype) -> Any:
        """The `reasoner.distributed.weight_group.Layout` rank 0 sends, as `dtype`."""
        return self._all("weight_layout", [(dtype,)])[0]

    def send_weights(self, layout: Any, bucket_bytes: int) -> str | None:
        """Every rank gathers the policy's weights and rank 0 broadcasts them to the weight-update
        group (the engines receive them at once); None, or the error that broke the broadcast."""
        return self._same("send_weights", layout, bucket_bytes)[0]

    def save(self, path: Path) -> None:
        """Write the checkpoint files of `reasoner.learner.Learner.save` into `path` (rank 0)."""
        self._same("save", str(path))

    def load(self, path: Path) -> None:
        """Restore what `save` (or a single-process learner) wrote; every rank keeps its shards."""
        self._same("load", str(path))
        self.kl_coef = self._same("kl_coef")[0]

    def export_pretrained(self, path: Path, tokenizer: Any) -> None:
        """The policy as one HF model directory (`reasoner.models.export_pretrained`): the full
        weights, gathered from the shards, in a model built from the spec's directory here.

        Raises:
            ValueError: the weights do not fit that model (`reasoner.distributed.full_state.load_full_state`).
        """
        from transformers import AutoModelForCausalLM

        from reasoner.models import export_pretrained

        model = AutoModelForCausalLM.from_pretrained(self.spec.model_path, dtype=torch.float32)
        load_full_state(model, dict(self.export_weights()), f"the learner's weights for {self.spec.model_path}")
        export_pretrained(model, tokenizer, path)

    def close(self) -> None:
        """End every rank's actor (its process, and with it the process group: also after a
        rank failed, when the others may still wait in a collective)."""
        import ray

        for w in self.workers:
            ray.kill(w)
        self.workers = []

    @property
    def closed(self) -> bool:
        """Whether `close` has ended the ranks."""
        return not self.workers
