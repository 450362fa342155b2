"""The brake: stop a run whose rows fail everywhere, let one with a few failures finish.

A file keyed by employee ID against a pool keyed by UUID fails every row with
UserNotFoundException; without a brake it spends the account's whole update quota on nothing
(2 million rows: 22 hours). AWS's own fleet tools stop such runs early (SSM Run Command's
MaxErrors, CloudFormation StackSets' failure tolerance); this is the same idea per row.

What counts: only *row failures*, results ``failed`` with a code that is permanent for that
user (``RowError``: UserNotFound, InvalidParameter, AliasExists, UserLambdaValidation, ...).
Throttles and faults are retried by the runner and never count, not even a row that gave up on
them (that is the quota's problem, not the file's). The denominator, *rows decided*, is every
row that reached Cognito and ended ``updated`` or with a row failure; invalid, unchanged and
skipped rows cost no write and count for nothing.

The limit (``--max-failures``, ``max_failures`` in a job file):

- ``N`` (a whole number): stop once more than N rows failed. ``0`` stops at the first one.
- ``P%``: stop once more than P % of the rows decided so far failed, judged on at least
  ``SAMPLE`` (100) rows: the threshold is ``P/100 * max(decided, 100)``, so one unlucky early
  row does not stop a run at 10 %.
- ``auto`` (the default): ``max(50, 10 %)``, i.e. stop once failures exceed both 50 and 10 %
  of the rows decided. A file where every row fails stops at the 51st failure (51 calls: well
  inside the first 200). A file where 5 % of the users were deleted never gets there: at
  5 % the failures are ~0.05 n against a limit of max(50, 0.1 n), and the binomial spread
  (sd = sqrt(0.05 n)) is far smaller than the gap at every n (at n = 1,000, 50 +- 7 against
  100; the chance of 51 failures in the first 200 rows is below 1e-20).
- ``none``: no brake.

Why cumulative and not a sliding window: the question the brake answers is "is this file
wrong for this pool?", which the whole run so far answers better than the last few hundred
rows; a window of W rows would also stop a correct file that happens to hold a cluster of
deleted users (a file sorted by department, one department gone). The price: a run that
starts fine and turns bad late stops later (at 10 % of the rows decided). A stretch of rows
that all fail because the pool itself broke (permissions, the pool deleted) is stopped by the
fatal-error rule at once, not by this one. What the file gets wrong at its start (the first
50 rows all deleted users) trips the default: give ``--max-failures`` a number then.

When the brake trips, the job stops like a fatal error: calls in flight finish, no new call
starts, every row not applied is ``skipped`` with the reason, exit 2.
"""

from __future__ import annotations

import threading

from batch.errors import RowError, classify_code
from batch.models import RowResult, Status
from batch.specs import FailureLimit

__all__ = ["Brake", "FailureLimit", "is_row_failure"]

def is_row_failure(result: RowResult) -> bool:
    """A ``failed`` row whose code is permanent for that user (not a throttle or fault)."""
    if result.status != Status.FAILED or not result.error_code:
        return False
    return issubclass(classify_code(result.error_code), RowError)


class Brake:
    """Counts results as they are reported; ``add`` says when the run must stop. Thread-safe."""

    def __init__(self, limit: FailureLimit) -> None:
        self.limit = limit
        self.decided = 0
        self.failures = 0
        self.reason = ""
        self._lock = threading.Lock()

    @property
    def tripped(self) -> bool:
        return bool(self.reason)

    def add(self, result: RowResult) -> bool:
        """Count one result; True exactly once, when the limit is first exceeded."""
        failure = is_row_failure(result)
        if not failure and result.status != Status.UPDATED:
            return False
        with self._lock:
            self.decided += 1
            self.failures += failure
            if self.reason or self.failures <= self.limit.threshold(self.decided):
                return False
            self.reason = (
                f"{self.failures} of {self.decided} rows failed, over --max-failures "
                f"{self.limit.describe()}: the file or its settings look wrong for this pool"
            )
            return True
