"""Reads that never hold the writes below the write quota (issue 22 item 3).

Per-row reads (AdminGetUser, UserRead ~120/s) cap a run's writes at the read rate when the
write quota is raised above it (150/s, say): the writes wait for their reads. Paging the pool
(ListUsers, UserList ~30/s, 60 users a page: ~1,500 users/s) reads faster, but all of it before
the first write. ``Overlapped`` does both at once: the snapshot fills in its own thread while
the rows are written; a row whose user the snapshot already holds needs no read, any other is
read on its own (AdminGetUser) until the snapshot is complete. The writes start at once, at
up to the read rate, and go to the full write rate as soon as the pool has been paged (a few
seconds for thousands of users, minutes for millions).

``plan_reads`` is the choice, weighing the read quotas against the write ceiling.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from batch.plan.lookup import LIST_PAGE, Lookup, choose


def plan_reads(
    *, input_rows: int, pool_users: int | None, key: str, list_rate: float, get_rate: float,
    writes: float, every_row: bool,
) -> str:
    """``"live"``, ``"snapshot"`` or ``"overlap"``.

    ``writes``: the most the run will write a second (its ceiling under the quota);
    ``every_row``: each row is written whatever it holds (before-images only: no diff needed
    before the write). Per-row reads at ``get_rate`` keep up with the writes when that is at
    least ``writes``: live, no wait up front. Else, for usernames, the snapshot overlapped with
    per-row reads, so neither the paging nor the read quota holds the writes back (a diff that
    pages the pool anyway keeps paging first: reading each row as well would only spend the
    read quota the pool's own application needs). Other keys are read by ListUsers either
    way: the cheaper in seconds (``choose``)."""
    how = choose(input_rows=input_rows, pool_users=pool_users, key=key, list_rate=list_rate,
                 get_rate=get_rate)
    if key != "username":
        return how
    if get_rate >= writes:
        return "live" if every_row else how
    if not every_row and how == "snapshot":
        return how  # every row waits for its diff anyway: page first, then write at full rate
    if pool_users is not None and pool_users / (LIST_PAGE * list_rate) > input_rows / writes:
        return "live"  # paging the pool would take longer than writing every row at full rate
    return "overlap"


class Overlapped:
    """A snapshot filling in the background, per-row reads for what it does not hold yet."""

    def __init__(
        self, snapshot: Lookup, live: Lookup, fill: Callable[[], None], cancel: threading.Event
    ) -> None:
        """``cancel``: the event the fill's paced reads wait on; ``close`` sets it."""
        self.snapshot, self.live, self.cancel = snapshot, live, cancel
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._fill, args=(fill,), daemon=True,
                                        name="cognito-batch-snapshot")
        self._thread.start()

    def _fill(self, fill: Callable[[], None]) -> None:
        try:
            fill()
        except BaseException as exc:  # noqa: BLE001 - the live reads carry on alone
            self.error = exc
        else:
            self.done.set()

    @property
    def reads(self) -> int:  # the ``Lookup`` protocol's attribute, summed
        return int(self.snapshot.reads) + int(self.live.reads)

    @reads.setter
    def reads(self, value: int) -> None:
        raise AttributeError("the reads are counted by the two lookups")

    def find(self, key: str) -> list[dict[str, str]]:
        """From the snapshot when it holds the user; else read on its own, unless the
        snapshot is complete and paged the whole pool (then the user does not exist). One
        paged by segments (``plan.segments``) may have missed a key: read on its own."""
        if self.done.is_set() and getattr(self.snapshot, "covers_all", True):
            return self.snapshot.find(key)
        if self.error is None:
            found = self.snapshot.find(key)
            if found:
                return found
        return self.live.find(key)

    def close(self) -> None:
        """The run is over: a fill still paging stops at its next read."""
        self.cancel.set()
        self._thread.join()
        self.snapshot.close()
        self.live.close()
