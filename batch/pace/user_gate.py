"""Cognito's per-user write limit, kept on the client side so no call is sent to be refused."""

from __future__ import annotations

import math
import threading
import time

from batch.pace.pacer import Clock, Waiter


class UserGate:
    """Cognito's per-user write limit: one write at a time per user, spaced ``interval`` apart.

    Bounded memory: a user's entry is dropped once its last write is older than the interval.
    """

    def __init__(self, *, per_user_rate: float = 10.0, clock: Clock = time.monotonic) -> None:
        self.interval = 1.0 / per_user_rate
        self._clock = clock
        self._busy: set[str] = set()
        self._last: dict[str, float] = {}
        self._cond = threading.Condition()

    def enter(self, user: str, wait: Waiter) -> bool:
        """Block until ``user`` may be written; False if the job stopped meanwhile."""
        with self._cond:
            while True:
                if user not in self._busy:
                    delay = self._last.get(user, -math.inf) + self.interval - self._clock()
                    if delay <= 0:
                        self._busy.add(user)
                        return True
                else:
                    delay = self.interval
                self._cond.release()
                try:
                    stopped = wait(min(delay, self.interval))
                finally:
                    self._cond.acquire()
                if stopped:
                    return False

    def leave(self, user: str) -> None:
        with self._cond:
            self._busy.discard(user)
            now = self._clock()
            self._last[user] = now
            if len(self._last) > 4096:
                horizon = now - self.interval
                self._last = {u: t for u, t in self._last.items() if t > horizon}
            self._cond.notify_all()

    @property
    def tracked(self) -> int:
        return len(self._last)
