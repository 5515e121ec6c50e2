"""Build the reward's verifier from config: a Hydra ``_target_`` or a registered name.

A spec is a mapping, either

- ``{"_target_": "package.module.Class", **kwargs}``: built by `hydra.utils.instantiate`
  (any importable class or factory; nothing to register), or
- ``{"name": "code", **kwargs}``: the class registered under that name in the
  ``reasoner.verifiers`` entry-point group (this package registers ``math`` and ``code`` in
  pyproject.toml; another package adds its own under ``[project.entry-points."reasoner.verifiers"]``).

Either way the result must satisfy `verifiers.base.Verifier`. ``reward.verifier._target_=pkg.MyVerifier``
replaces only the class of the reward group's node, whose other keys (the math verifier's
``timeout_s``, ``workers``, ...) stay: those the class does not take are left out with a warning
naming them, so a custom verifier works from that one override; any other key it does not take
is an error (`accepted`).
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


def _parameters(factory: Callable[..., Any]) -> tuple[set[str], bool] | None:
    """Keyword parameter names of `factory` and whether it takes ``**kwargs``; None when it has no
    introspectable signature."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    names = {p.name for p in params if p.kind not in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_KEYWORD)}
    return names, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def builtin_keys() -> set[str]:
    """The keyword arguments of the verifiers this package registers (math, code): the keys a
    reward group's node (conf/reward/*.yaml) holds besides its ``_target_``."""
    known, keys = registered(), set()
    for name in ("math", "code"):
        found = _parameters(known[name].load()) if name in known else None
        keys |= found[0] if found else set()
    return keys


def accepted(factory: Callable[..., Any], kwargs: dict[str, Any], what: str) -> dict[str, Any]:
    """`kwargs` fit for `factory`: a key it does not take is left out, with one warning naming
    them, when it belongs to a built-in verifier (`builtin_keys`: the reward group's node keeps
    them when only ``_target_`` is overridden); any other is a mistake and raises. Hydra's own
    keys (``_partial_``, ...) pass through.

    Raises:
        TypeError: a key neither `factory` nor a built-in verifier takes (a typo), named.
    """
    found = _parameters(factory)
    if found is None or found[1]:
        return kwargs
    names, _ = found
    unknown = {k for k in kwargs if k not in names and not (k.startswith("_") and k.endswith("_"))}
    if not unknown:
        return kwargs
    typos = sorted(unknown - builtin_keys())
    if typos:
        raise TypeError(f"{what} takes no keyword argument {', '.join(typos)} (it takes: {', '.join(sorted(names))})")
    log.warning("%s takes no %s: left out (the reward group's node has them)", what, ", ".join(sorted(unknown)))
    return {k: v for k, v in kwargs.items() if k not in unknown}


def build_verifier(spec: Mapping[str, Any]) -> Verifier:
    """The verifier described by `spec` (see the module docstring).

    Raises:
        ValueError: `spec` has neither ``_target_`` nor ``name``, or names an unregistered
            verifier (the message lists the registered ones).
        ImportError: ``_target_`` cannot be imported.
        TypeError: a keyword argument neither the verifier nor a built-in one takes (`accepted`), or
            the built object lacks ``verify_batch`` / ``close``.
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
