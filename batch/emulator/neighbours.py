"""Neighbours: background load from other applications that share the account's quota.

A schedule of calls/s per quota category (``10@20s,30@20s,5@20s,10``: 10/s for 20 s, then 30/s
for 20 s, then 5/s for 20 s, then 10/s from then on) drawn from the same token buckets as the
calls the front serves, paced or Poisson, never retried, and counted apart. The front starts
one thread per category when its settings name a schedule, and restarts them (from the
schedule's beginning) on every configure or reset, so each benchmark run sees the same load.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

Segment = tuple[float, float]  # (calls/s, seconds; inf for the last)


def parse_schedule(text: str) -> tuple[Segment, ...]:
    """``"10@20s,30@20s,5"`` -> ((10, 20), (30, 20), (5, inf)); ValueError names the part."""
    segments: list[Segment] = []
    parts = [p.strip() for p in str(text).split(",")]
    for i, part in enumerate(parts):
        rate_text, sep, seconds_text = part.partition("@")
        try:
            rate = float(rate_text)
            seconds = float(seconds_text.strip().removesuffix("s")) if sep else math.inf
        except ValueError:
            raise ValueError(f"neighbour schedule {text!r}: {part!r} is not RATE@SECONDS") from None
        if rate < 0 or not seconds > 0 or (seconds == math.inf and i < len(parts) - 1):
            raise ValueError(
                f"neighbour schedule {text!r}: {part!r} needs a rate >= 0 and a duration > 0 "
                "(only the last part may go on for ever)"
            )
        segments.append((rate, seconds))
    return tuple(segments)


def rate_at(schedule: tuple[Segment, ...], elapsed: float) -> tuple[float, float]:
    """The rate at ``elapsed`` seconds into the schedule, and the seconds until it changes."""
    start = 0.0
    for rate, seconds in schedule:
        if elapsed < start + seconds:
            return rate, start + seconds - elapsed
        start += seconds
    return 0.0, math.inf  # a schedule whose every part ended: silence


@dataclass
class NeighbourCounts:
    calls: int = 0
    accepted: int = 0
    throttled: int = 0


class Neighbour:
    """One category's background load, on its own thread until ``stop()``."""

    def __init__(
        self,
        category: str,
        schedule: tuple[Segment, ...],
        take: Callable[[], bool],
        *,
        poisson: bool,
        seed: int,
        clock: Callable[[], float],
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        self.category = category
        self.schedule = schedule
        self.counts = NeighbourCounts()
        self._take = take
        self._poisson = poisson
        self._random = random.Random(seed)
        self._clock = clock
        self._stop = threading.Event()
        # Sleeps up to the given seconds; True when stopped. Tests pass one that moves a clock.
        self._wait = wait or self._stop.wait
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"neighbour-{category}",
                                        daemon=True)

    def start(self) -> None:
        self._start = self._clock()
        self._thread.start()

    def run_here(self) -> None:
        """Run the schedule on the calling thread until ``wait`` says stop (for tests)."""
        self._start = self._clock()
        self._run()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)

    def gap(self, rate: float) -> float:
        """Seconds to the next call at ``rate``."""
        return self._random.expovariate(rate) if self._poisson else 1.0 / rate

    def _run(self) -> None:
        due = self._clock()
        while not self._stop.is_set():
            rate, left = rate_at(self.schedule, due - self._start)
            if rate <= 0:
                if left == math.inf:
                    return
                due += left
            else:
                due += self.gap(rate)
            if self._wait(max(0.0, due - self._clock())) or self._stop.is_set():
                return
            if rate > 0:
                ok = self._take()
                with self._lock:
                    self.counts.calls += 1
                    self.counts.accepted += int(ok)
                    self.counts.throttled += int(not ok)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            c = self.counts
            return {"calls": c.calls, "accepted": c.accepted, "throttled": c.throttled}


def start_neighbours(
    schedules: Mapping[str, str],
    takes: Mapping[str, Callable[[], bool]],
    *,
    poisson: bool,
    seed: int,
    clock: Callable[[], float],
) -> list[Neighbour]:
    neighbours = []
    for i, (category, text) in enumerate(sorted(schedules.items())):
        take = takes.get(category, lambda: True)  # no quota on the category: always accepted
        n = Neighbour(category, parse_schedule(text), take, poisson=poisson, seed=seed + i,
                      clock=clock)
        n.start()
        neighbours.append(n)
    return neighbours
