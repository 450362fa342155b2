"""Rate controllers: how fast to send, from what the calls experience.

``SharedRate`` is the tool's controller once the quota is known (the default, ``--rate auto``,
``--rate N`` / ``P%`` as ceilings): the bucket serves every application in the account and
region, and a throttle means it is empty *for everyone*, so the controller cuts deep at the
first throttle, comes back to a plateau just under where the bucket ran out, holds, then
probes. ``MeasuredRate`` discovers a quota that could not be read (``--rate auto``).
``FixedRate`` never moves (tests and benches). Why each step is what it is, and every round
measured against the alternatives: docs/design/rate-control.md.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from batch.pace.pacer import Clock


@dataclass
class RateHistory:
    """The rate's changes, for the progress line and the summary (bounded)."""

    changes: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=200))
    low: float = math.inf
    high: float = 0.0

    def record(self, now: float, rate: float) -> None:
        self.changes.append((now, rate))
        self.low = min(self.low, rate)
        self.high = max(self.high, rate)


class RateController(Protocol):
    """Decides the rate from what calls experience."""

    history: RateHistory

    @property
    def rate(self) -> float: ...

    def on_success(self, sent_at: float, now: float) -> None: ...

    def on_throttle(self, sent_at: float, now: float) -> None: ...


class FixedRate:
    """The operator's rate, unchanged by throttles (the retry back-off absorbs those)."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self.history = RateHistory()
        self.history.record(0.0, rate)

    @property
    def rate(self) -> float:
        return self._rate

    def on_success(self, sent_at: float, now: float) -> None:
        pass

    def on_throttle(self, sent_at: float, now: float) -> None:
        pass


class AcceptedRate:
    """Successful calls per second over a sliding window."""

    def __init__(self, window: float = 1.0) -> None:
        self.window = window
        self._times: deque[float] = deque()

    def add(self, now: float) -> None:
        self._times.append(now)
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window:
            self._times.popleft()

    def rate(self, now: float) -> float:
        self._trim(now)
        return len(self._times) / self.window


class Adaptive:
    """What the adaptive controllers share: bounds, the accepted rate, history, a lock."""

    def __init__(self, initial: float, max_rate: float, min_rate: float, now: float) -> None:
        self._rate = min(initial, max_rate)
        self.max_rate = max_rate
        self.min_rate = min_rate
        self._accepted = AcceptedRate()
        self._lock = threading.Lock()
        self.history = RateHistory()
        self.history.record(now, self._rate)

    @property
    def rate(self) -> float:
        return self._rate

    def _set(self, rate: float, now: float) -> None:
        if abs(rate - self._rate) >= 0.01 * self._rate or rate < self._rate:
            self.history.record(now, rate)
        self._rate = rate


class MeasuredRate(Adaptive):
    """``--rate auto`` when the quota is not known: cut to the rate Cognito accepted, then probe.

    Three phases:
    1. Slow start: from ``initial`` the rate doubles every second until the first throttle.
       Cognito's bucket lets a burst through before it throttles, so by then the rate has
       overshot; it is halved (the lower of it and the rate accepted over the last second).
    2. Recovery: the rate grows 20 % a second until the next throttle.
    3. Probing: each throttle cuts the rate to ``beta`` (0.98) times the lower of the current
       rate and the rate Cognito accepted over the last second (when its bucket is empty, the
       accepted rate *is* the free share of the quota), then the rate grows as
       ``base * (1 + a * t**2)``: slowly near the level just found, faster the longer no
       throttle comes, so quota that other applications release is found again (a 2x rise
       takes about 50 s).
    Only a throttle on a call sent after the last cut cuts again (once per round trip).
    Against AIMD and CUBIC (bench/controllers.py): docs/design/rate-control.md.
    """

    def __init__(
        self,
        *,
        initial: float = 10.0,
        max_rate: float = 10_000.0,
        min_rate: float = 0.5,
        beta: float = 0.98,
        probe: float = 0.0004,
        clock: Clock = time.monotonic,
    ) -> None:
        now = clock()
        super().__init__(initial, max_rate, min_rate, now)
        self.beta = beta
        self.probe = probe
        self._phase = 0  # 0 slow start, 1 recovery, 2 probing
        self._last_cut = -math.inf
        self._base = self._rate
        self._last_grow = now

    def on_success(self, sent_at: float, now: float) -> None:
        with self._lock:
            self._accepted.add(now)
            elapsed = now - self._last_grow
            if elapsed < 0.05:
                return
            self._last_grow = now
            if self._phase == 0:
                new = self._rate * 2.0**elapsed
            elif self._phase == 1:
                new = self._rate * 1.2**elapsed
            else:
                t = now - self._last_cut
                new = self._base * (1.0 + self.probe * t * t)
            self._set(min(new, self.max_rate), now)

    def on_throttle(self, sent_at: float, now: float) -> None:
        with self._lock:
            if sent_at < self._last_cut:
                return
            if self._phase == 0:
                # The overshoot's last second still includes the server's burst: halve the
                # lower of the two, not the rate alone.
                accepted = self._accepted.rate(now)
                basis = 0.5 * (min(self._rate, accepted) if accepted > 0 else self._rate)
            else:
                accepted = self._accepted.rate(now)
                basis = self.beta * (min(self._rate, accepted) if accepted > 0 else self._rate)
            self._phase = min(2, self._phase + 1)
            self._last_cut = now
            self._base = max(self.min_rate, basis)
            self._set(self._base, now)


class SharedRate(Adaptive):
    """A share of a quota that other applications use too: cut hard at the first throttle,
    come back just under where the bucket ran out, wait, then probe, never above ``ceiling``.

    ``group``: calls the pacer sends together (why each step is what it is, and what was
    measured against what: docs/design/rate-control.md).
    """

    def __init__(
        self,
        *,
        ceiling: float,
        initial: float | None = None,
        min_rate: float = 0.5,
        beta: float = 0.5,
        keep: float = 0.9,
        headroom: float | None = None,
        confirm_s: float = 1.0,
        settle_s: float = 2.0,
        hold_s: float = 5.0,
        hold_max_s: float = 32.0,
        probe: float = 0.03,
        group: int = 4,
        clock: Clock = time.monotonic,
    ) -> None:
        now = clock()
        super().__init__(ceiling if initial is None else initial, ceiling, min_rate, now)
        # Under 20/s a group would be a burst the bucket may not hold.
        self.group = self._group0 = group if ceiling >= 20 else 1
        self._singles = 0  # times cut after cut turned the groups off
        self._cuts: deque[tuple[float, float]] = deque(maxlen=4)  # (when, rate before)
        self.beta, self.keep, self.confirm_s, self.settle_s = beta, keep, confirm_s, settle_s
        self.hold_s, self.hold_max_s, self.probe = hold_s, hold_max_s, probe
        # A plateau ``headroom`` calls/s under the level where the bucket ran out (a margin
        # of the quota, the same whatever the neighbours take) instead of ``keep`` x it.
        self.headroom = headroom
        self._hold = hold_s
        self._cut_at = -math.inf
        self._floor = self._rate  # the rate right after the last cut
        self._plateau = self.max_rate  # where the return from a cut levels off
        self._last_limit = math.inf  # the rate at which the bucket last ran out
        self._last_grow = now

    def on_success(self, sent_at: float, now: float) -> None:
        with self._lock:
            self._accepted.add(now)
            if (self._singles == 1 and self.group < self._group0
                    and self._rate >= 0.5 * self.max_rate):
                # Back at half the ceiling: the neighbours, not a small bucket, had caused the
                # cuts. Groups again, once; a second spiral keeps the job on single calls.
                self.group = self._group0
            if now - self._last_grow < 0.05 or self._rate >= self.max_rate:
                return
            self._last_grow = now
            t = now - self._cut_at
            if t < self.confirm_s:
                return
            if t < self._hold:
                reach = 1.0 - math.exp(-(t - self.confirm_s) / self.settle_s)
                new = self._floor + (self._plateau - self._floor) * reach
            else:
                p = t - self._hold
                new = self._plateau + self.probe * self.max_rate * p * p
            self._set(min(self.max_rate, max(self._rate, new)), now)

    def on_throttle(self, sent_at: float, now: float) -> None:
        with self._lock:
            if sent_at < self._cut_at:
                return  # sent before the last cut: says nothing about the rate since
            # The level at which the bucket ran out: what was accepted over the last second,
            # but no less than half the rate (rows in back-off, or a few calls, measure low,
            # and cut after cut on such a measure would spiral down to the minimum).
            accepted = self._accepted.rate(now)
            limit = max(min(self._rate, accepted), 0.5 * self._rate)
            t = now - self._cut_at
            if t >= self._hold and limit < 1.15 * self._last_limit:
                # A probe that found no more room than the last one: probe less often.
                self._hold = min(self.hold_max_s, 2 * self._hold)
            elif limit >= 1.15 * self._last_limit:
                self._hold = self.hold_s
            self._last_limit = limit
            if t >= self._hold:
                self._cuts.clear()  # a probe's end, not a cut on top of a cut
            self._cuts.append((now, self._rate))
            if (self.group > 1 and len(self._cuts) == 4
                    and self.beta * limit < 0.1 * self.max_rate):
                # Cut after cut, never back to probing, down to a tenth of the ceiling: the
                # bucket may hold less than a group, which then throttles at any rate. Send
                # singly, from where the cuts began. (A quarter of the rate the cuts began at
                # was the rule before: a neighbour rising from 10 to 30/s met it, and single
                # calls for the rest of the run cost it twice as many refused calls.)
                self._singles += 1
                self.group = 1
                limit = self._cuts[0][1]
            plateau = self.keep * limit if self.headroom is None else limit - self.headroom
            self._plateau = max(self.min_rate, plateau)
            self._floor = max(self.min_rate, self.beta * limit)
            self._cut_at = now
            self._last_grow = now
            self._set(self._floor, now)
