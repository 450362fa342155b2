"""Giving up on a dead endpoint: the whole job stops when nothing answers for too long.

Per-row retries are bounded (``--max-attempts``, ``max_row_seconds``), but a run is not: with
the endpoint gone, every remaining row would make all its attempts, and 100k rows would take
days. This breaker watches every call's outcome, across rows and threads. A transport failure
(connection refused or reset, a timeout, HTTP 5xx: ``TransientError``) is a sign the endpoint
may be gone; any answer at all (a success, a throttle, a user not found) proves it is there.
When no call has been answered for ``give_up_after`` seconds and failures keep coming, it
trips once, and the runner stops the job as on a fatal error: rows not applied are reported
``skipped`` with the reason, the journal stays unfinished, and a rerun resumes.

Time runs from the last answer (or the start), not from the first failure: against a frozen
endpoint the first failure is a read timeout, itself ``read_timeout`` seconds after the last
answer. At least ``min_failures`` failures are required, so one slow call at a very low rate
does not end a run.
"""

from __future__ import annotations

import threading
import time

from batch.pace.pacer import Clock

DEFAULT_GIVE_UP_AFTER = 60.0


class EndpointBreaker:
    """Trips once when no call was answered for ``give_up_after`` s while calls kept failing.

    ``give_up_after`` 0 never trips. ``answered`` is on the hot path of every call: it takes no
    lock (two attribute writes; a racing failure at worst counts once more).
    """

    def __init__(
        self, give_up_after: float, *, clock: Clock = time.monotonic, min_failures: int = 3
    ) -> None:
        self.give_up_after = give_up_after
        self.min_failures = min_failures
        self._clock = clock
        self._lock = threading.Lock()
        self._answered_at = clock()
        self._failures = 0
        self.tripped = False
        self.reason = ""  # why it tripped: for the summary and every skipped row (no values)

    def answered(self) -> None:
        """A call got an answer from the endpoint, whatever it said."""
        self._failures = 0
        self._answered_at = self._clock()

    def failed(self, code: str) -> bool:
        """A call got no usable answer. True exactly once: when this failure trips it."""
        if self.give_up_after <= 0:
            return False
        with self._lock:
            self._failures += 1
            if self.tripped or self._failures < self.min_failures:
                return False
            silent = self._clock() - self._answered_at
            if silent < self.give_up_after:
                return False
            self.tripped = True
            self.reason = (
                f"the endpoint gave no answer for {silent:.0f} s ({self._failures} failed "
                f"calls in a row, last {code}); gave up (--give-up-after "
                f"{self.give_up_after:g}): rerun the same command to resume"
            )
            return True
