"""Progress: a tqdm bar on a terminal; plain periodic lines elsewhere (cron, CI, log files)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

from batch.models import Counters, RowResult, Status

Extra = Callable[[], dict[str, float]]


class Progress:
    """Counts results; shows them. Thread-safe. Never shows attribute values."""

    def __init__(
        self,
        total: int,
        *,
        extra: Extra | None = None,
        stream: TextIO | None = None,
        quiet: bool = False,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.counters = Counters()
        self._extra = extra or (lambda: {})
        self._stream = stream or sys.stderr
        self._quiet = quiet
        self._interval = interval
        self._clock = clock
        self._start = clock()
        self._last_line = self._start
        self._lock = threading.Lock()
        self._done = 0
        self._bar = None
        if not quiet and self._stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="row", file=self._stream, dynamic_ncols=True)

    def add(self, result: RowResult) -> None:
        with self._lock:
            self.counters.add(result)
            self._done += 1
            if self._bar is not None:
                self._bar.update(1)
                if self._done % 25 == 0 or self._done == self.total:
                    self._bar.set_postfix(self._postfix(), refresh=False)
                return
            now = self._clock()
            if not self._quiet and now - self._last_line >= self._interval:
                self._last_line = now
                self._stream.write(self.line(now) + "\n")
                self._stream.flush()

    def note(self, message: str) -> None:
        """A message shown once, on its own line (above the bar on a terminal)."""
        if self._quiet:
            return
        with self._lock:
            if self._bar is not None:
                self._bar.write(f"cognito-batch: {message}", file=self._stream)
            else:
                self._stream.write(f"cognito-batch: {message}\n")
                self._stream.flush()

    def _postfix(self) -> dict[str, object]:
        extra = self._extra()
        failed = self.counters.by_status.get(Status.FAILED.value, 0)
        return {
            "failed": failed,
            "throttled": int(extra.get("throttles", 0)),
            "rate": f"{extra.get('rate', 0):.1f}/s",
        }

    def line(self, now: float) -> str:
        elapsed = max(now - self._start, 1e-9)
        speed = self._done / elapsed
        left = max(self.total - self._done, 0)
        eta = f"{left / speed:.0f}s" if speed > 0 else "?"
        extra = self._extra()
        pct = 100.0 * self._done / self.total if self.total else 100.0
        failed = self.counters.by_status.get(Status.FAILED.value, 0)
        invalid = self.counters.by_status.get(Status.INVALID.value, 0)
        return (
            f"progress: {self._done}/{self.total} rows ({pct:.0f}%), {speed:.1f} rows/s, "
            f"failed {failed}, invalid {invalid}, throttled {int(extra.get('throttles', 0))}, "
            f"rate {extra.get('rate', 0):.1f}/s, eta {eta}"
        )

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.set_postfix(self._postfix(), refresh=True)
                self._bar.close()
                self._bar = None
