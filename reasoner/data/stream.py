"""The seeded stream of RL prompts: which problems each step draws, resumable from its state."""

from __future__ import annotations

import hashlib
import random
from typing import Sequence

from reasoner.types import Problem


class PromptStream:
    """Cycles through problems in a seeded shuffled order, reshuffling each epoch (epoch e's
    order is a shuffle seeded by ``seed + e``), so (epoch, position) fixes the rest of the stream."""

    def __init__(self, problems: Sequence[Problem], seed: int) -> None:
        if not problems:
            raise ValueError("no training problems")
        self.problems, self.seed = list(problems), seed
        self.epoch, self.pos = 0, 0
        self._order = self._shuffled()
        digest = hashlib.sha256()
        for p in self.problems:
            digest.update("\x1f".join((p.id, p.problem, p.answer)).encode("utf-8", "surrogatepass") + b"\x1e")
        self.digest = digest.hexdigest()[:16]

    def state_dict(self) -> dict[str, int | str]:
        """Position in the stream (epoch, position), shuffling seed, and the training set's size
        and digest (sha256 of ids, problems and answers, so a resume can tell it is the same set)."""
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "pos": self.pos,
            "size": len(self.problems),
            "digest": self.digest,
        }

    def load_state_dict(self, state: dict[str, int | str]) -> None:
        """Continue from a `state_dict`.

        Raises:
            ValueError: the training set or seed differs from the one the state was taken on.
        """
        mine = self.state_dict()
        for key in ("seed", "size", "digest"):
            if state[key] != mine[key]:
                raise ValueError(
                    f"the training data differs from the checkpoint's: {key} {state[key]!r} there, {mine[key]!r} now "
                    f"(the checkpoint's set: {state['size']} problems, digest {state['digest']}); "
                    "resume needs the same data"
                )
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._order = self._shuffled()

    def _shuffled(self) -> list[int]:
        order = list(range(len(self.problems)))
        random.Random(self.seed + self.epoch).shuffle(order)
        return order

    def next_batch(self, b: int) -> list[Problem]:
        out = []
        while len(out) < b:
            if self.pos == len(self._order):
                self.epoch, self.pos = self.epoch + 1, 0
                self._order = self._shuffled()
            out.append(self.problems[self._order[self.pos]])
            self.pos += 1
        return out
