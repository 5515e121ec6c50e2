"""What a multi-turn rollout needs from its environment and tools (`reasoner.envs.episodes` runs the
episodes).

An episode alternates model turns and observations: the model writes until it closes a tool call
(``<python>...</python>``, ``<search>...</search>``: the closing tags are the engine's stop
strings) or ends its turn (EOS: the final answer); a tool call is executed and its output comes
back as a tool message; up to ``env.max_turns`` model turns and ``env.max_episode_tokens`` tokens.

- A `Tool` executes calls: a batch of them at once (the episodes of a step are advanced together),
  each with its episode's state. A bad call (malformed, hostile, too slow) gets an error as its
  output, never an exception.
- An `Environment` turns a model turn into the next observation, or ends the episode; the built-in
  one is `reasoner.envs.tools.ToolEnvironment` over registered tools (`reasoner.envs.registry`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ToolOutput:
    """One call's result.

    Attributes:
        text: what the model is shown (already cut to the tool's output limit).
        error: None, or a short class of failure: ``timeout``, ``malformed``, ``error`` (the call
            raised or exited non-zero), ``unavailable`` (the tool itself could not run it).
        seconds: wall time of the call.
    """

    text: str
    error: str | None = None
    seconds: float = 0.0


class Tool(Protocol):
    """A tool the model can call as ``<name>arguments</name>``.

    - ``name``: the tag; ``description``: one line for the system prompt.
    - ``new_state()``: a fresh per-episode state (``None`` for a stateless tool); `run` may change it.
    - ``run(calls)``: the outputs of ``[(state, arguments), ...]``, in order; bad calls become
      error outputs. Raises only when the tool as a whole is broken (its sandbox will not start).
    - ``close()``: release processes and threads.
    """

    name: str
    description: str

    def new_state(self) -> Any: ...

    def run(self, calls: list[tuple[Any, str]]) -> list[ToolOutput]: ...

    def close(self) -> None: ...


@dataclass
class EnvStep:
    """What an environment answers to one model turn.

    Attributes:
        observation: the tool message's text, or None when the episode ends (``done``).
        done: the episode is over (a final answer, or nothing to do).
        info: ``tool`` (the tool called, or ``""`` for a malformed call), ``error``
            (`ToolOutput.error`), ``seconds``.
    """

    observation: str | None
    done: bool
    info: dict[str, Any] = field(default_factory=dict)


class Environment(Protocol):
    """A multi-turn environment.

    - ``instructions``: text for the system prompt (the tools, how to call them).
    - ``stop``: strings that end a model turn (the closing tags of tool calls).
    - ``reset()``: a new episode's state.
    - ``step(states, turns)``: for each live episode (its state and the text of the model's last
      turn), the `EnvStep`; batched, so a tool runs the calls of many episodes at once.
    - ``close()``: release the tools.
    """

    instructions: str
    stop: tuple[str, ...]

    def reset(self) -> Any: ...

    def step(self, states: list[Any], turns: list[str]) -> list[EnvStep]: ...

    def close(self) -> None: ...
