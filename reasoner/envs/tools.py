"""The built-in environment: the model calls tools by tag, ``<name>arguments</name>``."""

from __future__ import annotations

import re
from typing import Any, Sequence

from reasoner.envs.base import EnvStep, Tool, ToolOutput


class ToolEnvironment:
    """An `reasoner.envs.base.Environment` over `tools`: a model turn that ends with a closed call
    (``<python>...</python>``: the closing tags are the engine's stop strings, so a turn holds at
    most one call, at its end) gets the tool's output as the next observation; a turn without one
    ends the episode (it holds the final answer). An opening tag left unclosed at the end of a turn
    that did not end the episode cannot happen (the engine stops only at a closing tag or EOS); one
    left at EOS is a final answer like any other. Each episode's state is one state per tool.

    Raises:
        ValueError: no tools, or two with one name.
    """

    def __init__(self, tools: Sequence[Tool]) -> None:
        names = [t.name for t in tools]
        if not tools or len(set(names)) != len(names):
            raise ValueError(f"env.tools: need one or more tools with distinct names, got {names}")
        self.tools = {t.name: t for t in tools}
        self.stop = tuple(f"</{n}>" for n in names)
        alternatives = "|".join(re.escape(n) for n in names)
        self._call = re.compile(rf"<({alternatives})>(.*?)</\1>", re.S)
        listed = "\n".join(f"- <{t.name}>...</{t.name}>: {t.description}" for t in tools)
        self.instructions = (
            "You can use tools. To call one, write its tag with the input inside, then stop; the result "
            f"comes back in a tool message.\n{listed}\nWhen you know the answer, write it as \\boxed{{answer}}."
        )

    def reset(self) -> dict[str, Any]:
        """A new episode's state: each tool's own (`reasoner.envs.base.Tool.new_state`), by name."""
        return {name: tool.new_state() for name, tool in self.tools.items()}

    def step(self, states: list[Any], turns: list[str]) -> list[EnvStep]:
        """Run the call each turn ends with, the calls of one tool as one batch; a turn without a
        call ends its episode.

        Raises:
            RuntimeError: a tool returned another number of outputs than it was given calls.
        """
        out: list[EnvStep | None] = [None] * len(turns)
        batches: dict[str, list[tuple[int, str]]] = {}
        for i, text in enumerate(turns):
            calls = list(self._call.finditer(text))
            if not calls:
                out[i] = EnvStep(None, True, {"tool": None})
                continue
            batches.setdefault(calls[-1].group(1), []).append((i, calls[-1].group(2)))
        for name, items in batches.items():
            results = self.tools[name].run([(states[i][name], args) for i, args in items])
            if len(results) != len(items):
                raise RuntimeError(f"tool {name!r} returned {len(results)} outputs for {len(items)} calls")
            for (i, _), result in zip(items, results):
                out[i] = _observed(name, result)
        return out  # type: ignore[return-value]

    def close(self) -> None:
        for tool in self.tools.values():
            tool.close()


def _observed(name: str, result: ToolOutput) -> EnvStep:
    """The `EnvStep` of a call's result: its text as the observation, the episode goes on."""
    return EnvStep(result.text, False, {"tool": name, "error": result.error, "seconds": result.seconds})
