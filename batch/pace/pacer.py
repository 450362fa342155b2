"""Pacing calls: send slots at a rate shared by every worker thread, and the waits a stop cuts.

Cognito's quota is account-wide and enforced server-side with a token bucket; the cheapest
throttle is the one never sent, so calls are *paced* (one slot every 1/rate seconds, no bursts)
rather than fired and retried. Sending the slots in small groups makes the job's own calls meet
a low bucket before a neighbour's single call does (``controllers.SharedRate``). Clock and sleep
are injected so tests run instantly. Measurements: docs/design/rate-control.md.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

Clock = Callable[[], float]


class Waiter(Protocol):
    """Sleeps up to ``seconds``; returns True if woken early because the job is stopping."""

    def __call__(self, seconds: float) -> bool: ...


def event_waiter(stop: threading.Event) -> Waiter:
    """A sleep that a stopping job interrupts at once."""

    def wait(seconds: float) -> bool:
        return stop.wait(max(0.0, seconds))

    return wait


class Pacer:
    """Hands out send slots at ``rate`` per second, shared by every worker thread.

    Each caller takes a ticket under a lock and sleeps until its slot outside the lock, so
    callers queue fairly and the lock is never held while sleeping. A slot is a function of
    the ticket and the current spacing, not a time fixed when it was taken: a cut moves every
    slot not yet reached, and a caller that wakes early for its moved slot sleeps again.
    (Slots fixed when taken let a cut act only after every waiting worker's call had left at
    the old rate: a group or two, a tenth of a second more into an empty bucket.)

    ``burst`` slots may be taken at once after an idle spell (default 1: strictly paced). With
    ``group`` > 1 the slots come in groups sharing one instant, ``group`` intervals apart: the
    same rate, sent as a small burst that finds a low bucket before a neighbour's single call
    does (see ``SharedRate``).
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float = 1.0,
        group: int = 1,
        clock: Clock = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._interval = 1.0 / rate
        self._burst = max(1.0, burst)
        self._group = max(1, group)
        self._clock = clock
        self._issued = 0  # tickets taken
        self._anchor = 0  # the first ticket of the group at ``_at``; later groups follow it
        self._at = clock()
        self._lock = threading.Lock()

    @property
    def rate(self) -> float:
        return 1.0 / self._interval

    def _slot(self, ticket: int) -> float:
        return self._at + ((ticket - self._anchor) // self._group) * self._group * self._interval

    def set_rate(self, rate: float, *, group: int | None = None) -> None:
        """New spacing (and group size) for every slot not yet reached."""
        with self._lock:
            interval = 1.0 / max(rate, 1e-3)
            new_group = self._group if group is None else max(1, group)
            if interval == self._interval and new_group == self._group:
                return
            now = self._clock()
            span = self._group * self._interval
            # Groups from the anchor whose instant has come (their callers are on their way).
            gone = math.floor((now - self._at) / span) + 1 if now >= self._at else 0
            last = self._at + (gone - 1) * span  # the last instant reached
            self._anchor += gone * self._group
            self._group, self._interval = new_group, interval
            self._at = last + new_group * interval  # one new span after the last that left

    def _take(self) -> int:
        with self._lock:
            ticket = self._issued
            self._issued += 1
            if (ticket - self._anchor) % self._group == 0:
                earliest = self._clock() - (self._burst - 1.0) * self._interval
                if self._slot(ticket) < earliest:  # idle: time is not saved up past the burst
                    self._anchor, self._at = ticket, earliest
            return ticket

    def _delay(self, ticket: int) -> float:
        with self._lock:
            return max(0.0, self._slot(ticket) - self._clock())

    def reserve(self) -> float:
        """Take one slot; return how long to wait for it (0 if it is now), at today's spacing."""
        return self._delay(self._take())

    def acquire(self, wait: Waiter) -> bool:
        """Block until this caller's slot; False if the job stopped meanwhile."""
        ticket = self._take()
        while (delay := self._delay(ticket)) > 0:
            if wait(delay):
                return False
        return True
