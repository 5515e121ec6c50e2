"""Evaluation samples: one scored completion per record, kept in a run's ``samples.jsonl``.

Records are appended as they are produced, so an interrupted evaluation keeps every finished
batch; a restart reads the file and skips the (benchmark, problem, sample index) keys found.
A crash in the middle of a write leaves at most one partial last line, which `SampleFile.load`
cuts off.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterable

from verifiers.base import VerifyResult

Key = tuple[str, str, int]


@dataclass(frozen=True)
class Sample:
    """One completion and its verdict.

    Attributes:
        benchmark: benchmark name.
        problem_id: `Problem.id`.
        index: sample number within the problem, 0 .. n-1.
        prompt: the prompt as the model saw it (chat template applied, decoded).
        completion: the generated text.
        tokens: completion length, in tokens.
        truncated: the completion hit the token budget.
        correct: the verifier's verdict.
        score: the verifier's score in [0, 1].
        extracted: the answer (math) or program (code) the verifier took from the completion.
        reason: the verifier's reason (``"numeric match"``, ``"no answer"``, ``"failed ..."``).
        turns, tool_calls, tool_errors, transcript: of a multi-turn episode
            (`reasoner.types.Episode`: the whole episode as text, tool messages included); 1, 0, 0,
            None for a single completion.
    """

    benchmark: str
    problem_id: str
    index: int
    prompt: str
    completion: str
    tokens: int
    truncated: bool
    correct: bool
    score: float
    extracted: str | None
    reason: str
    turns: int = 1
    tool_calls: int = 0
    tool_errors: int = 0
    transcript: str | None = None

    @property
    def key(self) -> Key:
        return (self.benchmark, self.problem_id, self.index)

    def with_verdict(self, v: VerifyResult) -> Sample:
        """This sample re-scored with verdict `v`."""
        return replace(self, correct=v.correct, score=v.score, extracted=v.extracted, reason=v.reason)


class SampleFile:
    """A run's samples JSONL: read what is there, append new records as they are produced."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> list[Sample]:
        """Every complete record, first occurrence of a key kept, in file order.

        A partial last line (an interrupted write) is removed from the file.

        Raises:
            ValueError: a malformed line other than the last, named by line number.
        """
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with self.path.open("r+b") as f:
                f.truncate(keep)
            data = data[:keep]
        samples: dict[Key, Sample] = {}
        for number, line in enumerate(data.decode().splitlines(), 1):
            try:
                sample = Sample(**json.loads(line))
            except (json.JSONDecodeError, TypeError) as err:
                raise ValueError(f"{self.path}: line {number} is not a sample record: {err}") from err
            samples.setdefault(sample.key, sample)
        return list(samples.values())

    def append(self, samples: Iterable[Sample]) -> None:
        """Append records and flush them to disk."""
        with self.path.open("a") as f:
            for s in samples:
                f.write(json.dumps(asdict(s), ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def replace(self, samples: Iterable[Sample]) -> None:
        """Rewrite the file with `samples` (atomically: a temporary file renamed over it)."""
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.unlink(missing_ok=True)
        SampleFile(tmp).append(samples)
        tmp.replace(self.path)
