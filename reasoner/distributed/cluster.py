"""The Ray side of a ``cluster=ray`` run: join (or start) a Ray cluster, reserve every role's
resources in one placement group, and build the rollout engines and the sharded learner in it.

Placement: one bundle per learner rank and one per engine (``cluster.colocate=false``: split
pools, each role on its own CPUs / GPUs), or one bundle per learner rank that also holds an
engine (``cluster.colocate=true``: engine i shares rank i's bundle and devices; on CPUs the two
processes share the cores and take turns, since the step is synchronous). ``cluster.strategy``
is Ray's placement strategy: ``PACK`` (as few nodes as possible), ``SPREAD``, ``STRICT_PACK``.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Any, Iterator

from reasoner.config import Backend, ClusterConfig, ClusterKind, RolloutConfig

log = logging.getLogger("reasoner")


def bundles(cfg: ClusterConfig) -> list[dict[str, float]]:
    """The placement group's bundles: the learner ranks' first, then the engines' (split pools),
    or each rank's with its engine's resources added (colocated)."""
    ln, ro = cfg.learner, cfg.rollout
    rank = {"CPU": ln.cpus_per_worker, "GPU": ln.gpus_per_worker}
    engine = {"CPU": ro.cpus_per_engine, "GPU": ro.gpus_per_engine}
    if cfg.colocate:
        both = {k: rank[k] + engine[k] for k in rank}
        out = [both] * ln.workers
    else:
        out = [rank] * ln.workers + [engine] * ro.engines
    return [{k: v for k, v in b.items() if v} for b in out]


class RayCluster:
    """A connection to a Ray cluster with this run's placement group reserved (module docstring).

    Args:
        cfg: the ``cluster`` group.
    Raises:
        RuntimeError: the cluster cannot hold the placement group within
            ``cluster.placement_timeout_s`` (names the bundles and what the cluster has).
    """

    def __init__(self, cfg: ClusterConfig) -> None:
        import ray
        from ray.util.placement_group import placement_group

        self.cfg, self.group = cfg, None
        wanted = bundles(cfg)
        self.started = cfg.address is None
        if self.started:  # a new cluster here (not one found running), with the CPUs the placement asks for
            cpus = max(os.cpu_count() or 1, sum(b.get("CPU", 0) for b in wanted))
            ray.init(address="local", num_cpus=int(-(-cpus // 1)), include_dashboard=False, configure_logging=False)
        else:
            ray.init(address=cfg.address, configure_logging=False)
        try:
            self.group = placement_group(wanted, strategy=cfg.strategy)
            ray.get(self.group.ready(), timeout=cfg.placement_timeout_s)
        except ray.exceptions.GetTimeoutError:
            have = ray.cluster_resources()
            self.close()
            raise RuntimeError(
                f"the Ray cluster cannot place this run within {cfg.placement_timeout_s:.0f} s: it needs the bundles "
                f"{wanted} ({cfg.strategy}); the cluster has {have}. Lower cluster.learner / cluster.rollout "
                "resources or add nodes"
            ) from None
        except BaseException:
            self.close()
            raise
        where = "a new local" if self.started else cfg.address
        log.info("ray: %s cluster; placement group of %d bundles %s (%s)", where, len(wanted), wanted, cfg.strategy)

    def _at(self, bundle: int) -> dict[str, Any]:
        """Actor options that put an actor in `bundle` of the placement group."""
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        strategy = PlacementGroupSchedulingStrategy(self.group, placement_group_bundle_index=bundle)
        return {"scheduling_strategy": strategy}

    def engines(self, backend: Backend, model_path: str, rollout: RolloutConfig, seed: int) -> Any:
        """The rollout engines (`reasoner.distributed.rollout.RayEngines`), placed."""
        from reasoner.distributed.rollout import RayEngines

        c, first = self.cfg, 0 if self.cfg.colocate else self.cfg.learner.workers
        return RayEngines(
            backend,
            model_path,
            rollout,
            seed,
            engines=c.rollout.engines,
            cpus_per_engine=c.rollout.cpus_per_engine,
            gpus_per_engine=c.rollout.gpus_per_engine,
            tensor_parallel=c.rollout.tensor_parallel,
            max_restarts=c.rollout.max_restarts,
            placement=[self._at(first + i) for i in range(c.rollout.engines)],
            weight_sync=c.weight_sync,
            weight_backend=c.weight_backend,
            bucket_bytes=int(c.weight_bucket_mb * (1 << 20)),
            timeout_s=c.collective_timeout_s / 2,  # a stuck transfer fails before the other ranks' gathers do
        )

    def learner(self, spec: Any) -> Any:
        """The sharded learner (`reasoner.distributed.sharded.ShardedLearner`) of `spec`, placed."""
        from reasoner.distributed.sharded import ShardedLearner

        ln = self.cfg.learner
        return ShardedLearner(
            spec,
            ln.workers,
            ln.cpus_per_worker,
            ln.gpus_per_worker,
            placement=[self._at(r) for r in range(ln.workers)],
        )

    def close(self) -> None:
        """Free the placement group (its actors end with it) and leave the cluster; a cluster
        this run started is shut down."""
        import ray
        from ray.util.placement_group import remove_placement_group

        if ray.is_initialized():
            if self.group is not None:
                remove_placement_group(self.group)
            ray.shutdown()


@contextmanager
def cluster_session(cfg: ClusterConfig) -> Iterator[RayCluster | None]:
    """A `RayCluster` for ``cluster.kind=ray`` (closed on exit, whatever happens), None for ``local``."""
    if cfg.kind is ClusterKind.local:
        yield None
        return
    cluster = RayCluster(cfg)
    try:
        yield cluster
    finally:
        cluster.close()
