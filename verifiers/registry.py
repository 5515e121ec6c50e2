"""Build the reward's verifier from config: a Hydra ``_target_`` or a registered name.

A spec is a mapping, either

- ``{"_target_": "package.module.Class", **kwargs}``: built by `hydra.utils.instantiate`
  (any importable class or factory; nothing to register), or
- ``{"name": "code", **kwargs}``: the class registered under that name in the
  ``reasoner.verifiers`` entry-point group (this package registers ``math`` and ``code`` in
  pyproject.toml; another package adds its own under ``[project.entry-points."reasoner.verifiers"]``).

Either way the result must satisfy `verifiers.base.Verifier`. Keyword arguments the class does
not take are left out with a warning naming them: ``reward.verifier._target_=pkg.MyVerifier``
replaces only the class of the reward group's node, whose other keys (the math verifier's
``timeout_s``, ``workers``, ...) stay, so a custom verifier works from that one override.
"""

from __future__ import annotations

import inspect
import logging
from importlib.metadata import entry_points
from typing import Any, Callable, Mapping

from verifiers.base import Verifier

ENTRY_POINT_GROUP = "reasoner.verifiers"
log = logging.getLogger("reasoner")


def registered() -> dict[str, Any]:
    """Name -> entry point of every verifier registered in the ``reasoner.verifiers`` group."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def accepted(factory: Callable[..., Any], kwargs: dict[str, Any], what: str) -> dict[str, Any]:
    """`kwargs` without the keywords `factory` does not take (all of them if it takes
    ``**kwargs``), warning once with the names left out and where they came from (`what`)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no introspectable signature: pass everything
        return kwargs
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return kwargs
    names = {p.name for p in params if p.kind is not inspect.Parameter.POSITIONAL_ONLY}
    dropped = sorted(set(kwargs) - names)
    if dropped:
        log.warning(
            "%s takes no %s: left out (they come from the reward group's verifier node)", what, ", ".join(dropped)
        )
    return {k: v for k, v in kwargs.items() if k in names}


def build_verifier(spec: Mapping[str, Any]) -> Verifier:
    """The verifier described by `spec` (see the module docstring).

    Raises:
        ValueError: `spec` has neither ``_target_`` nor ``name``, or names an unregistered
            verifier (the message lists the registered ones).
        ImportError: ``_target_`` cannot be imported.
        TypeError: the built object lacks ``verify_batch`` / ``close``.
    """
    kwargs = dict(spec)
    if "_target_" in kwargs:
        from hydra.utils import get_object, instantiate

        target = kwargs.pop("_target_")
        kwargs = accepted(get_object(target), kwargs, f"reward.verifier._target_={target}")
        verifier = instantiate({"_target_": target, **kwargs}, _convert_="all")
    elif "name" in kwargs:
        name = kwargs.pop("name")
        known = registered()
        if name not in known:
            raise ValueError(
                f"no verifier named {name!r} in entry-point group {ENTRY_POINT_GROUP!r}; "
                f"registered: {', '.join(sorted(known)) or 'none'}"
            )
        factory = known[name].load()
        verifier = factory(**accepted(factory, kwargs, f"reward.verifier.name={name}"))
    else:
        raise ValueError(
            "a verifier spec needs '_target_' (a class path) or 'name' (a registered verifier), "
            f"got keys {sorted(kwargs)}"
        )
    if not isinstance(verifier, Verifier):
        raise TypeError(f"{type(verifier).__name__} is not a verifier: it needs verify_batch(pairs) and close()")
    return verifier
