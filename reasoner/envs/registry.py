"""Build tools and environments from config specs, as verifiers are built
(`verifiers.registry`): ``{_target_: pkg.Class, **kwargs}`` through Hydra's ``instantiate``, or
``{name: N, **kwargs}`` looked up in an entry-point group: ``reasoner.tools`` (this package
registers ``python`` and ``search`` in pyproject.toml) or ``reasoner.environments``; another
package adds its own under ``[project.entry-points."reasoner.tools"]``."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Mapping

from reasoner.config import EnvConfig
from reasoner.envs.base import Environment, Tool

TOOLS, ENVIRONMENTS = "reasoner.tools", "reasoner.environments"


def build(spec: Mapping[str, Any], group: str, field: str) -> Any:
    """The object `spec` describes (module docstring); `field` names it in errors.

    Raises:
        ValueError: neither ``_target_`` nor ``name``, or a name not registered in `group` (the
            message lists the registered ones).
        ImportError: ``_target_`` cannot be imported.
        TypeError: a keyword argument the class does not take.
    """
    kwargs = dict(spec)
    if "_target_" in kwargs:
        from hydra.utils import instantiate

        return instantiate(kwargs, _convert_="all")
    if "name" not in kwargs:
        raise ValueError(f"{field} needs '_target_' (a class path) or 'name' (registered), got keys {sorted(kwargs)}")
    name = kwargs.pop("name")
    known = {ep.name: ep for ep in entry_points(group=group)}
    if name not in known:
        raise ValueError(
            f"{field}: nothing named {name!r} in entry-point group {group!r}; registered: {', '.join(sorted(known))}"
        )
    return known[name].load()(**kwargs)


def build_environment(cfg: EnvConfig) -> Environment | None:
    """The run's environment: ``env.environment`` when set, else a
    `reasoner.envs.tools.ToolEnvironment` over ``env.tools``; None when neither is set
    (single-turn rollouts). Tools are built here, so a missing sandbox or corpus fails before any
    model loads.

    Raises:
        as `build`; TypeError: a built tool lacks ``name``, ``run`` or ``new_state``.
    """
    if cfg.environment is not None:
        return build(cfg.environment, ENVIRONMENTS, "env.environment")
    if not cfg.tools:
        return None
    from reasoner.envs.tools import ToolEnvironment

    tools: list[Tool] = []
    for i, spec in enumerate(cfg.tools):
        tool = build(spec, TOOLS, f"env.tools[{i}]")
        if not all(hasattr(tool, a) for a in ("name", "description", "new_state", "run", "close")):
            raise TypeError(f"env.tools[{i}]: {type(tool).__name__} is not a tool (reasoner.envs.base.Tool)")
        tools.append(tool)
    return ToolEnvironment(tools)
