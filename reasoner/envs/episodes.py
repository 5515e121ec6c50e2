"""Multi-turn rollouts: `EpisodeEngine` runs episodes of model turns and tool messages on a
rollout engine, behind the same ``generate`` as a single-turn engine, so the RL step, dynamic
sampling, rewards and evaluation take episodes unchanged.

Token in, token out: an episode's ids are the prompt, then each turn's sampled ids as the engine
returned them, then each tool message's ids (`reasoner.envs.render.ToolMessages`), appended;
decoded text is never re-tokenized, so the learner scores exactly what the sampler drew. The tool
messages get loss-mask 0 (no loss, no KL, not counted as response length) and no sampler
log-probs. The episodes of a batch advance together: one ``generate`` call per turn over every
live episode (the first turn samples the G episodes of a prompt as one group: n = G), then one
`Environment.step` over every episode whose turn called a tool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import torch

from reasoner.config import EnvConfig
from reasoner.envs.base import Environment
from reasoner.envs.render import ToolMessages
from reasoner.rollout.base import RolloutEngine, budgets
from reasoner.types import Completion, Episode, ToolCallRecord


@dataclass
class _Live:
    """An episode being rolled out: its prompt, environment state, tokens after the prompt with
    their loss mask (1: sampled), the sampler log-probs of the sampled ones (`has_logprobs` False
    once a turn came without them), each model turn's text, the tool calls, the model turns so
    far, why it ended (None while it runs; `reasoner.types.Episode.ended`) and its finish reason."""

    prompt: list[int]
    state: Any
    ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    has_logprobs: bool = True
    texts: list[str] = field(default_factory=list)
    calls: list[ToolCallRecord] = field(default_factory=list)
    turns: int = 0
    ended: str | None = None
    finish: str = "stop"

    def add(self, ids: list[int], policy: bool) -> None:
        self.ids += ids
        self.mask += [int(policy)] * len(ids)


class EpisodeEngine:
    """A `reasoner.rollout.base.RolloutEngine` whose samples are episodes (module docstring).

    Budgets: a turn may write ``min(max_tokens, what is left of env.max_episode_tokens, what is
    left of max_model_len)`` tokens; an episode ends when a turn writes no tool call (``answer``),
    when a turn calls a tool in the last of ``env.max_turns`` turns (``max_turns``: the call is not
    run), or when a turn is cut by its budget or a tool message would not fit (``budget``,
    finish reason ``length``: a truncated sample).

    Args:
        engine: the engine that samples each turn (stop strings: the environment's).
        env: the environment (`reasoner.envs.base.Environment`).
        tokenizer: the policy's tokenizer (decoding turns, rendering tool messages).
        cfg: the ``env`` group (turns, budgets).
        max_model_len: the engine's context (prompt + episode), tokens.
    """

    def __init__(
        self, engine: RolloutEngine, env: Environment, tokenizer: Any, cfg: EnvConfig, max_model_len: int
    ) -> None:
        self.engine, self.env, self.tokenizer, self.cfg = engine, env, tokenizer, cfg
        self.max_model_len = max_model_len
        self.dtype = engine.dtype
        self.instructions = env.instructions
        self.messages = ToolMessages(tokenizer, cfg.max_observation_tokens)

    def generate(
        self,
        prompt_ids: list[list[int]],
        n: int,
        temperature: float,
        top_p: float,
        max_tokens: int | Sequence[int],
        stop: Sequence[str] = (),
    ) -> list[list[Completion]]:
        """B x n episodes (`RolloutEngine.generate`; `stop` adds to the environment's)."""
        caps = budgets(max_tokens, len(prompt_ids))
        stops = [*self.env.stop, *stop]
        eps = [_Live(p, self.env.reset()) for p in prompt_ids for _ in range(n)]
        first_caps = [self._cap(eps[b * n], caps[b]) for b in range(len(prompt_ids))]
        first = self.engine.generate(prompt_ids, n, temperature, top_p, first_caps, stops)
        outs = [c for group in first for c in group]
        live = list(range(len(eps)))
        while live:
            called = [i for i, c in zip(live, outs) if self._take_turn(eps[i], c)]
            self._run_tools([eps[i] for i in called])
            live = [i for i in called if eps[i].ended is None]
            if live:
                prompts = [eps[i].prompt + eps[i].ids for i in live]
                turn_caps = [self._cap(eps[i], caps[i // n]) for i in live]
                outs = [g[0] for g in self.engine.generate(prompts, 1, temperature, top_p, turn_caps, stops)]
        done = [self._completion(e) for e in eps]
        return [done[b * n : (b + 1) * n] for b in range(len(prompt_ids))]

    def _room(self, e: _Live) -> int:
        """Tokens `e` may still add: what is left of ``env.max_episode_tokens`` and of the context."""
        return min(self.cfg.max_episode_tokens - len(e.ids), self.max_model_len - len(e.prompt) - len(e.ids))

    def _cap(self, e: _Live, turn_cap: int) -> int:
        """Tokens the next turn of `e` may write (at least 1: an episode only goes on after a tool
        message that left room, `_run_tools`)."""
        return max(1, min(turn_cap, self._room(e)))

    def _take_turn(self, e: _Live, c: Completion) -> bool:
        """Append a turn's sampled tokens to `e`; whether the episode goes on to the environment."""
        e.turns += 1
        e.add(c.token_ids, policy=True)
        e.logprobs += c.logprobs
        e.has_logprobs = e.has_logprobs and len(c.logprobs) == len(c.token_ids)
        e.texts.append(self.tokenizer.decode(c.token_ids, skip_special_tokens=True))
        if c.truncated:  # cut by its cap (a turn that ends in EOS or a call on the budget is whole)
            e.ended, e.finish = "budget", "length"
            return False
        return True

    def _run_tools(self, eps: list[_Live]) -> None:
        """One `Environment.step` over the episodes whose turn just ended; append each tool
        message, or end the episode."""
        last = [e for e in eps if e.turns >= self.cfg.max_turns]  # no tool runs after the last turn
        for e in last:
            e.ended = "max_turns" if any(s in e.texts[-1] for s in self.env.stop) else "answer"
        eps = [e for e in eps if e.ended is None]
        if not eps:
            return
        steps = self.env.step([e.state for e in eps], [e.texts[-1] for e in eps])
        for e, s in zip(eps, steps):
            if s.done or s.observation is None:
                e.ended = "answer"
                continue
            ids = self.messages.ids(s.observation)
            e.calls.append(ToolCallRecord(s.info.get("tool") or "", s.info.get("error"), s.info.get("seconds", 0.0)))
            if len(ids) >= self._room(e):  # no room for the message and a turn after it
                e.ended, e.finish = "budget", "length"
                continue
            e.add(ids, policy=False)

    def _completion(self, e: _Live) -> Completion:
        episode = Episode(e.turns, e.calls, e.ended or "answer")
        logprobs = e.logprobs if e.has_logprobs else []  # a turn without them (greedy): none at all
        return Completion(e.ids, "\n".join(e.texts), logprobs, e.finish, e.mask, episode)

    # ------------------------------------------------------------------ the engine's other calls

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        self.engine.load_weights(named_tensors)

    def sequence_logprobs(self, token_ids: list[int], prompt_len: int) -> list[float]:
        return self.engine.sequence_logprobs(token_ids, prompt_len)

    @property
    def members(self) -> list[Any]:
        """The wrapped engine's members (the weight-sync check runs on each)."""
        return getattr(self.engine, "members", [self.engine])
