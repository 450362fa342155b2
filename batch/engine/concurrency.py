"""How many calls to keep in flight when the rate is not what limits the job.

The runner's window follows Little's law: rate x latency calls in flight fill the rate. Where
the rate does not bind (a raised quota, ``--rate`` set high, the local emulator at its
ceiling), the latency may be this process and the server queueing on their CPUs, and Little's
law would grow the window with the queue it creates: extra threads then buy only GIL
contention. Or the answers may simply be slow (a Lambda trigger, a far region), and then the
window is all that limits the job. The latency each call measures tells them apart: queued
calls answer faster when fewer are in flight; slow answers do not.

``ConcurrencyClimber`` hill-climbs on delivered throughput, in epochs of at least ``epoch_s``
and ``min_calls`` calls (or ``max_epoch_s``, so slow answers judge in seconds), the first from
the first answer. It acts only when Little's window (uncapped) is over ``maximum``, calls
complete under ``bound_share`` of the rate, and the window is full of calls (throughput x
latency over ``full_share`` of it: rows waiting on their reads are no CPU queue); otherwise it
stands aside at or above Little's window. Acting, it first tries one
call in flight, keeps it if that costs no more than ``loss``, else halves from the top while
halving costs no more; then probes every ``hold_epochs``, down (half) and up (double), up only
if it buys ``gain``. A step down whose calls were not faster shows slow answers, not a queue:
it steps back and stands aside until the latency rises ``queueing`` x over that level.
Measurements and history: docs/design/concurrency.md. Time is injected; tests use a manual clock.
"""

from __future__ import annotations

import threading
import time
from typing import Literal

from batch.pace.pacer import Clock

# "jump": straight to one; if that costs, "halve" from the top; then "probe" half or double.
Phase = Literal["jump", "halve", "probe"]


class ConcurrencyClimber:
    """A limit on calls in flight, found by hill-climbing on completed calls per second."""

    def __init__(
        self,
        maximum: int,
        *,
        clock: Clock = time.monotonic,
        epoch_s: float = 1.0,
        max_epoch_s: float = 2.0,
        min_calls: int = 20,
        gain: float = 0.25,
        loss: float = 0.05,
        bound_share: float = 0.9,
        hold_epochs: int = 5,
        slow_share: float = 0.9,
        queueing: float = 2.0,
        full_share: float = 0.5,
    ) -> None:
        self.maximum = max(1, maximum)
        self.limit = self.maximum
        self.low = self.high = self.limit  # the range the limit moved in
        self._used: tuple[int, int] | None = None  # the windows calls were sent in (low, high)
        self._clock = clock
        self._epoch_s = epoch_s
        self._max_epoch_s = max_epoch_s
        self._min_calls = min_calls
        self._gain = gain
        self._loss = loss
        self._bound_share = bound_share
        self._hold_epochs = hold_epochs
        self._slow_share = slow_share
        self._queueing = queueing
        self._full_share = full_share  # calls (throughput x latency) over the window to act
        self._lock = threading.Lock()
        self._start = clock()
        self._calls = 0
        self._seconds = 0.0  # the epoch's calls' latencies, summed
        self._base = 0.0  # calls/s at the limit before the step being judged
        self._base_latency = 0.0  # a call's mean seconds then
        self._step = 0  # the step being judged: +1 up, -1 down, 0 none
        self._before = self.limit  # the limit before that step
        self._hold = 0  # epochs to stay before the next probe
        self._phase: Phase = "jump"
        self._next_probe = -1
        self._acting = False
        self.slow = 0.0  # the latency found slow, not queued (0: none found)

    def on_call(self, rate: float, wanted: int, latency: float = 0.0) -> None:
        """One call completed in ``latency`` seconds. ``rate``: the pacer's; ``wanted``:
        Little's window, uncapped."""
        with self._lock:
            if self._used is None:
                # The first answer starts the first epoch: the wait before it is the latency,
                # not a throughput (judged from the start, 2 s at 1 s an answer held 2 calls:
                # "1/s delivered", and the window jumped to one call in flight).
                self._start, self._calls, self._seconds = self._clock(), 0, 0.0
            window = max(1, min(self.maximum, wanted, self.limit))  # the runner's window
            low, high = self._used or (window, window)
            self._used = (min(low, window), max(high, window))
            self._calls += 1
            self._seconds += latency
            now = self._clock()
            elapsed = now - self._start
            short = elapsed < self._max_epoch_s or self._calls < 2  # slow answers: seconds
            if elapsed < self._epoch_s or (self._calls < self._min_calls and short):
                return
            throughput, mean = self._calls / elapsed, self._seconds / self._calls
            self._start, self._calls, self._seconds = now, 0, 0.0
            self._epoch(throughput, rate, wanted, mean)
            self.low = min(self.low, self.limit)
            self.high = max(self.high, self.limit)

    def summary(self, final: int) -> dict[str, int]:
        """The window at the end and the range it was in, from the first call on (not from
        ``maximum``, a bound the window may never have reached)."""
        with self._lock:
            low, high = self._used or (final, final)
        return {"final": final, "low": min(low, final), "high": max(high, final)}

    def _epoch(self, throughput: float, rate: float, wanted: int, latency: float) -> None:
        window = max(1, min(self.maximum, wanted, self.limit))
        if (wanted <= self.maximum or throughput >= self._bound_share * rate
                or (not self._acting and 0 < latency < self._queueing * self.slow)
                or (not self._acting and 0 < throughput * latency < self._full_share * window)):
            # Little's law can size the window, the rate binds, the answers are as slow as
            # they were found to be without a queue, or the window is not full of calls (the
            # rows hold their slots in reads: fewer in flight could only deliver less): be
            # no tighter than Little's window.
            self._stand_aside(wanted)
            return
        self._acting = True
        step, self._step = self._step, 0
        if step < 0 and latency >= self._slow_share * self._base_latency > 0:
            # Fewer in flight, yet each call took about as long: slow answers, not a queue.
            self.slow, self.limit = latency, self._before
            self._stand_aside(wanted)
            return
        if step > 0:
            if throughput > self._base * (1 + self._gain):
                self._take_base(throughput, latency)
                self._move(+1)  # it paid: keep climbing
            else:
                self._back("probe")
            return
        if step < 0:
            if throughput < self._base * (1 - self._loss):
                self._back("halve" if self._phase == "jump" else "probe")
                return
            self._take_base(throughput, latency)
            if self._phase == "halve":
                self._move(-1)  # as fast with half: keep halving
            else:
                self._phase, self._hold = "probe", self._hold_epochs
            return
        self._take_base(throughput, latency)
        if self._hold > 0:
            self._hold -= 1
        elif self._phase == "jump":
            self._go(1, -1)
        elif self._phase == "halve":
            self._move(-1)
        else:
            self._move(self._next_probe)
            self._next_probe = -self._next_probe

    def _stand_aside(self, wanted: int) -> None:
        self.limit = min(self.maximum, max(self.limit, wanted))
        self._step, self._hold, self._acting = 0, 0, False
        # Once answers were found slow, a queue that forms later is sized afresh (one call in
        # flight first: a short experiment); else probing goes on from here.
        self._phase = "jump" if self.slow else "probe"

    def _take_base(self, throughput: float, latency: float) -> None:
        self._base, self._base_latency = throughput, latency

    def _move(self, direction: int) -> None:
        """Double (+1) or halve (-1)."""
        self._go(self.limit * 2 if direction > 0 else (self.limit + 1) // 2, direction)

    def _go(self, target: int, direction: int) -> None:
        """Step to ``target``, to be judged next epoch; at a bound, hold and probe later."""
        target = max(1, min(self.maximum, target))
        if target == self.limit:
            self._phase, self._hold = "probe", self._hold_epochs
            return
        self._before, self.limit, self._step = self.limit, target, direction

    def _back(self, phase: Phase) -> None:
        """Take the step back; halving goes on at once, probing waits ``hold_epochs``."""
        self.limit = self._before
        self._phase = phase
        self._hold = 0 if phase == "halve" else self._hold_epochs
