"""Build the reward's verifier from config: a Hydra ``_target_`` or a registered name.

A spec is a mapping, either

- ``{"_target_": "package.module.Class", **kwargs}``: built by `hydra.utils.instantiate`
  (any importable class or factory; nothing to register), or
- ``{"name": "code", **kwargs}``: the class registered under that name in the
  ``reasoner.verifiers`` entry-point group (this package registers ``math`` and ``code`` in
  pyproject.toml; another package adds its own under ``[project.entry-points."reasoner.verifiers"]``).

Either way the result must satisfy `verifiers.base.Verifier`.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Mapping

from verifiers.base import Verifier

ENTRY_POINT_GROUP = "reasoner.verifiers"


def registered() -> dict[str, Any]:
    """Name -> entry point of every verifier registered in the ``reasoner.verifiers`` group."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def build_verifier(spec: Mapping[str, Any]) -> Verifier:
    """The verifier described by `spec` (see the module docstring).

    Raises:
        ValueError: `spec` has neither ``_target_`` nor ``name``, or names an unregistered
            verifier (the message lists the registered ones).
        TypeError: the built object lacks ``verify_batch`` / ``close``.
    """
    kwargs = dict(spec)
    if "_target_" in kwargs:
        from hydra.utils import instantiate

        verifier = instantiate(kwargs, _convert_="all")
    elif "name" in kwargs:
        name = kwargs.pop("name")
        known = registered()
        if name not in known:
            raise ValueError(
                f"no verifier named {name!r} in entry-point group {ENTRY_POINT_GROUP!r}; "
                f"registered: {', '.join(sorted(known)) or 'none'}"
            )
        verifier = known[name].load()(**kwargs)
    else:
        raise ValueError(
            "a verifier spec needs '_target_' (a class path) or 'name' (a registered verifier), "
            f"got keys {sorted(kwargs)}"
        )
    if not isinstance(verifier, Verifier):
        raise TypeError(f"{type(verifier).__name__} is not a verifier: it needs verify_batch(pairs) and close()")
    return verifier
