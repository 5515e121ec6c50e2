"""SIGTERM / SIGINT during training: stop at the next step boundary, or at once on a second signal."""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)


class TrainingInterrupted(Exception):
    """The run stopped on a signal after writing a checkpoint.

    Attributes:
        signum: the signal received.
        step: RL steps done.
        checkpoint: the checkpoint to resume from (None when nothing was trained yet).
    """

    def __init__(self, signum: int, step: int, checkpoint: Any) -> None:
        name = signal.Signals(signum).name
        where = f"checkpoint {checkpoint}" if checkpoint is not None else "no checkpoint (nothing trained yet)"
        super().__init__(f"stopped by {name} after RL step {step}; {where}")
        self.signum, self.step, self.checkpoint = signum, step, checkpoint


class StopRequest:
    """While active (a ``with`` block), the first SIGTERM or SIGINT only sets `signum`: the loop
    checks it between steps, writes a checkpoint and stops. A second one ends the process at once
    with that signal's default action (exit status 128 + signal number, no checkpoint).

    Outside the main thread (where Python cannot install handlers) it does nothing.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            log.warning("second signal (%s): exiting now, without a checkpoint", name)
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        log.warning(
            "%s received: finishing the current step, then writing a checkpoint and exiting "
            "(send it again to exit at once)",
            name,
        )
