"""How many calls to keep in flight when the rate is not what limits the job.

The runner's window follows Little's law: rate x latency calls in flight fill the rate. That
sizing assumes the rate binds. When it does not (a raised quota, ``--rate`` set high, or the
local emulator at its ceiling), latency is no longer the network's: it is this process and the
server queueing on their CPUs, and Little's law grows the window with the queue it creates.
Extra threads then buy no throughput, only GIL contention (measured in bench/: 8 threads cost
~1.4x a bare boto3 call's CPU per update at the ceiling, 1 thread ~1.1x).

``ConcurrencyClimber`` hill-climbs on delivered throughput instead, in epochs of at least
``epoch_s`` seconds and ``min_calls`` completed calls. It starts at ``maximum``; at its first
epoch where the rate does not bind it drops straight to one call in flight, and keeps one if
that costs no more than ``loss`` of the throughput, else halves from the top while halving
costs no more. Then it probes every ``hold_epochs``, alternately down (half) and up (double):
a step down that costs more than ``loss``, or a step up that buys less than ``gain``, is taken
back. The bar for more threads is higher than for fewer: on this shared machine the same
work's CPU and throughput moved by 15-60 % between runs a minute apart, and where the rate
does not bind, fewer threads for about the same throughput is the better trade (at the
ceiling, 2 threads cost ~20 % more CPU per update than 1 and were not faster).

It acts only where Little's law has no answer: when the window it asks for (rate x latency,
uncapped) is more than ``maximum`` *and* calls complete at under ``bound_share`` of the rate.
Otherwise it stands aside and keeps its limit at or above Little's window, so it never holds
back a job that the quota limits, nor one whose ``--rate auto`` is still climbing (a first
version judged only throughput against the rate; during auto's slow start throughput lags the
doubling rate, and it cut the window to one: 0.93·Q instead of 0.975·Q in the bench).
Time is injected; tests drive it with a manual clock.
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
        min_calls: int = 20,
        gain: float = 0.25,
        loss: float = 0.05,
        bound_share: float = 0.9,
        hold_epochs: int = 5,
    ) -> None:
        self.maximum = max(1, maximum)
        self.limit = self.maximum
        self.low = self.high = self.limit  # the range it moved in, for the summary
        self._clock = clock
        self._epoch_s = epoch_s
        self._min_calls = min_calls
        self._gain = gain
        self._loss = loss
        self._bound_share = bound_share
        self._hold_epochs = hold_epochs
        self._lock = threading.Lock()
        self._start = clock()
        self._calls = 0
        self._base = 0.0  # calls/s at the limit before the step being judged
        self._step = 0  # the step being judged: +1 up, -1 down, 0 none
        self._before = self.limit  # the limit before that step
        self._hold = 0  # epochs to stay before the next probe
        self._phase: Phase = "jump"
        self._next_probe = -1

    def on_call(self, rate: float, wanted: int) -> None:
        """One call completed. ``rate``: the pacer's; ``wanted``: Little's window, uncapped."""
        with self._lock:
            self._calls += 1
            now = self._clock()
            elapsed = now - self._start
            if elapsed < self._epoch_s or self._calls < self._min_calls:
                return
            throughput = self._calls / elapsed
            self._start, self._calls = now, 0
            self._epoch(throughput, rate, wanted)
            self.low = min(self.low, self.limit)
            self.high = max(self.high, self.limit)

    def _epoch(self, throughput: float, rate: float, wanted: int) -> None:
        if wanted <= self.maximum or throughput >= self._bound_share * rate:
            # Little's law can size the window, or the rate binds: be no tighter than it.
            self.limit = min(self.maximum, max(self.limit, wanted))
            self._step, self._hold, self._phase = 0, 0, "probe"
            return
        step, self._step = self._step, 0
        if step > 0:
            if throughput > self._base * (1 + self._gain):
                self._base = throughput
                self._move(+1)  # it paid: keep climbing
            else:
                self._back("probe")
            return
        if step < 0:
            if throughput < self._base * (1 - self._loss):
                self._back("halve" if self._phase == "jump" else "probe")
                return
            self._base = throughput
            if self._phase == "halve":
                self._move(-1)  # as fast with half: keep halving
            else:
                self._phase, self._hold = "probe", self._hold_epochs
            return
        self._base = throughput
        if self._hold > 0:
            self._hold -= 1
        elif self._phase == "jump":
            self._go(1, -1)
        elif self._phase == "halve":
            self._move(-1)
        else:
            self._move(self._next_probe)
            self._next_probe = -self._next_probe

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
