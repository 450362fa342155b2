"""Progress: a tqdm bar on a terminal; plain periodic lines elsewhere (cron, CI, log files).

Both show when the run will end as a local wall-clock time (who reads a progress line at
night wants "done by 03:40", not "12,800 s"), and, when the enforced quota is known (the
``quota`` extra), the share of it the job's calls are taking over the last ten seconds.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from batch.models import Counters, RowResult, Status
from batch.view.logs import EventLog

JSON_INTERVAL = 5.0  # seconds between progress events in JSON mode
Extra = Callable[[], dict[str, float]]


@dataclass(frozen=True, slots=True)
class Tick:
    """The run so far, as a listener (the Python API's ``on_progress``, live metrics) sees it
    on the progress line's cadence and once at the end. Counts only: never a value."""

    done: int
    total: int
    elapsed_s: float
    counts: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    calls: int = 0
    throttles: int = 0
    rate: float = 0.0
    final: bool = False


Listener = Callable[[Tick], None]


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
        wall: Callable[[], float] = time.time,
        log: EventLog | None = None,
        listeners: Sequence[Listener] = (),
    ) -> None:
        self.total = total
        self._listeners = tuple(listeners)
        self._last_tick = clock()
        self.counters = Counters()
        self._extra = extra or (lambda: {})
        self._stream = stream or sys.stderr
        self._quiet = quiet
        self._interval = interval
        self._clock = clock
        self._wall = wall
        self._start = clock()
        self._calls: deque[tuple[float, float]] = deque([(self._start, 0.0)])  # (time, calls)
        self._last_line = self._start
        self._lock = threading.Lock()
        self._carried: dict[str, int] = {}
        self._done = 0
        self._bar = None
        self._log = log
        if log is not None and log.json:
            self._interval = min(interval, JSON_INTERVAL)
        if not quiet and self._stream.isatty() and (log is None or not log.json):
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="row", file=self._stream, dynamic_ncols=True)

    def add(self, result: RowResult) -> None:
        tick = None
        with self._lock:
            self.counters.add(result)
            self._done += 1
            if self._listeners:
                now = self._clock()
                if now - self._last_tick >= self._interval:
                    self._last_tick = now
                    tick = self._tick(now)
            self._show()
        if tick is not None:  # outside the lock: a slow listener must not hold the workers
            self._notify(tick)

    def _show(self) -> None:
        """The bar, or a line on the interval (the caller holds the lock)."""
        if self._bar is not None:
            self._bar.update(1)
            if self._done % 25 == 0 or self._done == self.total:
                self._bar.set_postfix(self._postfix(), refresh=False)
            return
        now = self._clock()
        if not self._quiet and now - self._last_line >= self._interval:
            self._last_line = now
            if self._log is not None:
                self._log.emit("progress", self.line(now), **self.fields(now))
                return
            self._stream.write(self.line(now) + "\n")
            self._stream.flush()

    def add_carried(self, counts: Counters) -> None:
        """A resume's carried rows, counted at once (from the carry's thread, mid-run): in the
        totals, not in this attempt's own results (``own_statuses``)."""
        with self._lock:
            for name, count in counts.by_status.items():
                self._carried[name] = self._carried.get(name, 0) + count
            self._count(counts)

    def own_statuses(self) -> dict[str, int]:
        """The results of this attempt by status (the carried rows left out): the timeline's."""
        with self._lock:
            return {name: count - self._carried.get(name, 0)
                    for name, count in self.counters.by_status.items()}

    def add_counts(self, counts: Counters) -> None:
        """Count many results at once (rows never reached): no work per row."""
        with self._lock:
            self._count(counts)

    def _count(self, counts: Counters) -> None:
        """(The caller holds the lock.)"""
        n = sum(counts.by_status.values())
        for mine, theirs in ((self.counters.by_status, counts.by_status),
                             (self.counters.by_error, counts.by_error)):
            for name, count in theirs.items():
                mine[name] = mine.get(name, 0) + count
        self._done += n
        if self._bar is not None and n:
            self._bar.update(n)

    def note(self, message: str) -> None:
        """A message shown once, on its own line (above the bar on a terminal)."""
        if self._quiet:
            return
        with self._lock:
            if self._bar is not None:
                self._bar.write(f"cognito-batch: {message}", file=self._stream)
            elif self._log is not None:
                self._log.warning(message)
            else:
                self._stream.write(f"cognito-batch: {message}\n")
                self._stream.flush()

    def _postfix(self) -> dict[str, object]:
        extra = self._extra()
        now = self._clock()
        failed = self.counters.by_status.get(Status.FAILED.value, 0)
        postfix: dict[str, object] = {
            "failed": failed,
            "throttled": int(extra.get("throttles", 0)),
            "rate": f"{extra.get('rate', 0):.1f}/s",
        }
        share = self._quota_share(now, extra)
        if share:
            postfix["quota"] = share
        finish = self._finish(now)
        if finish:
            postfix["done"] = finish
        return postfix

    def _finish(self, now: float) -> str:
        """The expected end as a local time ("03:40", or "Tue 03:40" beyond a day)."""
        elapsed = now - self._start
        left = max(self.total - self._done, 0)
        if self._done == 0 or elapsed <= 0:
            return ""
        seconds = left / (self._done / elapsed)
        end = datetime.fromtimestamp(self._wall() + seconds)
        return end.strftime("%a %H:%M" if seconds >= 20 * 3600 else "%H:%M")

    def _quota_share(self, now: float, extra: dict[str, float]) -> str:
        """The job's calls per second over the last ten seconds, as a share of the quota."""
        quota = extra.get("quota") or 0.0
        if "calls" not in extra:
            return ""
        self._calls.append((now, extra["calls"]))
        while len(self._calls) > 2 and now - self._calls[1][0] >= 10.0:
            self._calls.popleft()
        first_t, first_calls = self._calls[0]
        if quota <= 0 or now - first_t <= 0:
            return ""
        return f"{100.0 * (extra['calls'] - first_calls) / (now - first_t) / quota:.0f}%"

    def line(self, now: float) -> str:
        elapsed = max(now - self._start, 1e-9)
        speed = self._done / elapsed
        left = max(self.total - self._done, 0)
        eta = f"{left / speed:.0f}s" if speed > 0 else "?"
        finish = self._finish(now)
        if finish:
            eta += f" (done ~{finish})"
        extra = self._extra()
        share = self._quota_share(now, extra)
        pct = 100.0 * self._done / self.total if self.total else 100.0
        failed = self.counters.by_status.get(Status.FAILED.value, 0)
        invalid = self.counters.by_status.get(Status.INVALID.value, 0)
        return (
            f"progress: {self._done}/{self.total} rows ({pct:.0f}%), {speed:.1f} rows/s, "
            f"failed {failed}, invalid {invalid}, throttled {int(extra.get('throttles', 0))}, "
            f"rate {extra.get('rate', 0):.1f}/s"
            + (f" ({share} of the {extra['quota']:g}/s quota)" if share else "")
            + f", eta {eta}"
        )

    def fields(self, now: float) -> dict[str, Any]:
        """The progress line as a ``progress`` event's fields (batch.view.logs)."""
        elapsed = max(now - self._start, 1e-9)
        speed = self._done / elapsed
        left = max(self.total - self._done, 0)
        extra = self._extra()
        return {
            "done": self._done, "total": self.total,
            "percent": round(100.0 * self._done / self.total, 1) if self.total else 100.0,
            "rows_per_s": round(speed, 2), "elapsed_s": round(elapsed, 1),
            "eta_s": round(left / speed, 1) if speed > 0 else None,
            "counts": dict(self.counters.by_status),
            "throttles": int(extra.get("throttles", 0)), "rate": round(extra.get("rate", 0), 2),
        }

    def _tick(self, now: float, *, final: bool = False) -> Tick:
        extra = self._extra()
        return Tick(done=self._done, total=self.total, elapsed_s=round(now - self._start, 3),
                    counts=dict(self.counters.by_status), errors=dict(self.counters.by_error),
                    calls=int(extra.get("calls", 0)), throttles=int(extra.get("throttles", 0)),
                    rate=round(extra.get("rate", 0.0), 2), final=final)

    def _notify(self, tick: Tick) -> None:
        for listener in self._listeners:
            listener(tick)

    def close(self) -> None:
        with self._lock:
            tick = self._tick(self._clock(), final=True) if self._listeners else None
        if tick is not None:
            self._notify(tick)
        with self._lock:
            if self._bar is not None:
                self._bar.set_postfix(self._postfix(), refresh=True)
                self._bar.close()
                self._bar = None
