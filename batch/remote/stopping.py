"""Signals while the end of an S3-report run is put in S3: recorded, not the default action.

The run's own handlers (``engine/signals.py``) are gone by then; without these a scheduler's
SIGTERM would kill the process half way through the puts (exit 143, no graceful stop).
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any


class StopDeferred:
    """SIGTERM, SIGINT and SIGHUP recorded (``name``) instead of their default action for the
    length of a ``with`` block, in the main thread; the handlers before it come back after.
    A second SIGINT exits at once (130), as during the run."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self) -> None:
        self.name = ""
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopDeferred:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                if signal.getsignal(signum) == signal.SIG_IGN:
                    continue  # nohup: the operator asked to ride it out
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.name and signum == signal.SIGINT:
            os._exit(128 + signum)
        self.name = self.name or signal.Signals(signum).name
