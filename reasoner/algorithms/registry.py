"""Algorithms by name: advantage estimators, policy losses, loss aggregations and KL estimators.

Each kind is a table of `Entry` (the function and what it needs). The built-ins register in
`reasoner.algorithms.builtin`, which the package imports, so they are there whenever this
module is; a user's module registers its own
with the same decorator, and the config names it (``algorithm.estimator=my_estimator``). A name
not yet registered is looked up, in order, among the modules of the ``reasoner.algorithms``
entry-point group (each imported once), then as an import path ``package.module:function`` or
``package.module.function`` of a registered function. An unknown name raises `UnknownAlgorithm`
listing the valid ones.

One signature per kind (shapes: N sequences, n in a micro-batch, T completion tokens padded):

- ``advantage``: ``fn(x: AdvantageInput, algo) -> (advantages (N, T), returns (N, T) or None)``;
  `algo` is the run's ``AlgorithmConfig`` (hyperparameters by attribute).
- ``policy_loss``: ``fn(logp, old_logp, advantages, mask, algo) -> (per-token loss, clipped)``,
  all (n, T); `clipped` is bool.
- ``loss_agg``: ``fn(per_token, mask, total_tokens, total_seqs, max_tokens) -> scalar``; the
  counts cover the whole mini-batch, so micro-batching does not change the gradient.
- ``kl``: ``fn(logp, ref_logp) -> (n, T)`` per-token estimate of KL(π || π_ref).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Callable

import torch

KINDS = ("advantage", "policy_loss", "loss_agg", "kl")
_TABLES: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
_ENTRY_POINTS_LOADED = False


class UnknownAlgorithm(ValueError):
    """A name that no entry of its kind has; the message lists the valid names."""


@dataclass(frozen=True)
class Entry:
    """One registered algorithm.

    Attributes:
        kind: one of `KINDS`.
        name: the config name.
        fn: the function (signature of its kind, module docstring).
        needs_critic: an advantage estimator that reads critic values (the job builds a critic).
        token_level: an advantage estimator that builds per-token returns, so the KL may enter
            as a per-token reward (``algorithm.kl.placement=reward``).
        zero_at_zero_advantage: a policy loss whose value and gradient are 0 at every token
            whose advantage is 0, so the learner may leave such sequences out of the update
            (``trainer.skip_zero_advantage``); False (never skipped) unless declared.
    """

    kind: str
    name: str
    fn: Callable[..., Any]
    needs_critic: bool = False
    token_level: bool = False
    zero_at_zero_advantage: bool = False


@dataclass(frozen=True)
class AdvantageInput:
    """What an advantage estimator sees, for the N = B*G sequences of a rollout batch
    (group-major: sequence b*G + g is completion g of prompt b).

    Attributes:
        rewards: (N,) float32 outcome rewards.
        group_size: G.
        mask: (N, T) bool, the tokens the policy generated (T: the longest such count).
        values: (N, T) critic values, or None without a critic.
        kl: (N, T) per-token KL estimate of the sampling policy against the reference, when the
            KL is a per-token reward (``algorithm.kl.placement=reward``), else None.
        kl_coef: β, the KL coefficient now (it moves with an adaptive target).
    """

    rewards: torch.Tensor
    group_size: int
    mask: torch.Tensor
    values: torch.Tensor | None = None
    kl: torch.Tensor | None = None
    kl_coef: float = 0.0

    @property
    def grouped(self) -> torch.Tensor:
        """(B, G) rewards."""
        return self.rewards.float().reshape(-1, self.group_size)


def register(
    kind: str, name: str, *, needs_critic: bool = False, token_level: bool = False, zero_at_zero_advantage: bool = False
) -> Callable:
    """Decorator: register the function under (`kind`, `name`); returns it unchanged.

    Raises:
        ValueError: an unknown kind, or the name is taken by another function.
    """
    if kind not in _TABLES:
        raise ValueError(f"unknown algorithm kind {kind!r}; kinds: {', '.join(KINDS)}")

    def add(fn: Callable) -> Callable:
        old = _TABLES[kind].get(name)
        if old is not None and old.fn is not fn and old.fn.__qualname__ != fn.__qualname__:
            raise ValueError(f"{kind} {name!r} is already registered ({old.fn.__module__}.{old.fn.__qualname__})")
        _TABLES[kind][name] = Entry(kind, name, fn, needs_critic, token_level, zero_at_zero_advantage)
        fn.registered_as = (kind, name)  # type: ignore[attr-defined]
        return fn

    return add


def names(kind: str) -> list[str]:
    """The registered names of a kind, sorted."""
    return sorted(_TABLES[kind])


def get(kind: str, name: str) -> Entry:
    """The entry of `kind` called `name` (module docstring for where names come from).

    Raises:
        UnknownAlgorithm: no such entry; the message lists the valid names.
    """
    global _ENTRY_POINTS_LOADED
    table = _TABLES[kind]
    if name in table:
        return table[name]
    if not _ENTRY_POINTS_LOADED:
        _ENTRY_POINTS_LOADED = True
        for ep in entry_points(group="reasoner.algorithms"):
            ep.load()
        if name in table:
            return table[name]
    fn = _import_path(name)
    tag = getattr(fn, "registered_as", None)
    if tag is not None and tag[0] == kind:
        return table[tag[1]]
    raise UnknownAlgorithm(
        f"unknown {kind} {name!r}; registered: {', '.join(sorted(table))} "
        "(register your own with reasoner.algorithms.registry.register, then name it or its import path)"
    )


def _import_path(path: str) -> Any:
    module, sep, attr = path.partition(":") if ":" in path else path.rpartition(".")
    if not sep or not module:
        return None
    try:
        return getattr(import_module(module), attr, None)
    except ImportError:
        return None
