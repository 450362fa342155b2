"""The lease is never taken from a live run (issue 20 item 11). Injected clocks and a slow fake
store (a PUT that blocks until the test lets it go); nothing here sleeps.

1. A segment upload that hangs does not hold up the renewals: they have their own thread.
   -> test_renewals_go_on_while_a_segment_upload_hangs
2. A run that cannot renew (its renewal PUT hangs) stops itself at half the ttl, before the
   lease can expire on any clock within the assumed skew.
   -> test_a_run_that_cannot_renew_stops_before_the_lease_can_expire
3. A successor takes over only once the expiry has passed by the assumed clock skew.
   -> test_a_successor_waits_out_the_clock_skew
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from batch.models import RowResult, Status
from batch.record.journal import Journal, JournalHeader
from batch.remote.checkpoint import Checkpoint
from batch.remote.lease import CLOCK_SKEW_SECONDS, STOP_FRACTION, Lease, LeaseKeeper
from batch.store.storage import LocalStorage, Location, ObjectInfo, parse

GUARD = 30.0  # a bound on a wait that only a broken test reaches; no assertion on time


class Hanging:
    """Local storage whose puts under ``hang`` block until ``release`` is set."""

    def __init__(self, hang: str) -> None:
        self.inner = LocalStorage()
        self.hang = hang
        self.entered = threading.Event()
        self.release = threading.Event()
        self.renewals = 0
        self.renewed = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put(self, location: Location, data: bytes, **kwargs: Any) -> ObjectInfo:
        if self.hang in str(location):
            self.entered.set()
            assert self.release.wait(GUARD)
        elif str(location).endswith(".lease") and kwargs.get("if_match"):
            self.renewals += 1
            if self.renewals >= 3:
                self.renewed.set()
        return self.inner.put(location, data, **kwargs)


def test_renewals_go_on_while_a_segment_upload_hangs(tmp_path: Path) -> None:
    # GIVEN a run holding its lease, whose next segment upload hangs (a 30 s PUT)
    store = Hanging(hang="seg-")
    lease = Lease(store, parse(str(tmp_path / "r.csv.lease")), ttl=4)  # type: ignore[arg-type]
    lease.acquire()
    done = threading.Event()
    checkpoint = Checkpoint(store, parse(str(tmp_path / "segs")), tmp_path / "r.csv.journal",  # type: ignore[arg-type]
                            lease=lease, interval=3600,
                            lease_wait=lambda seconds: done.wait(0.001))
    journal = Journal(tmp_path / "r.csv.journal", JournalHeader("sha", "s"))
    journal.write(RowResult(1, "u1", Status.UPDATED, 1))
    journal.sync()
    (tmp_path / "segs").mkdir()
    checkpoint.begin(resumed=False, restored_segments=0, clear=lambda: None)
    checkpoint.start()
    upload = threading.Thread(target=checkpoint.upload)
    upload.start()
    try:
        assert store.entered.wait(GUARD)
        # WHEN the upload is stuck, THEN the lease is renewed all the same
        assert store.renewed.wait(GUARD)
        assert upload.is_alive() and not checkpoint.lost
    finally:
        store.release.set()
        done.set()
        upload.join()
        checkpoint.close()
        journal.close()


def test_a_run_that_cannot_renew_stops_before_the_lease_can_expire(tmp_path: Path) -> None:
    # GIVEN a lease of 30 s, a monotonic clock the test moves, and a renewal PUT that hangs
    store = Hanging(hang=".lease")
    where = parse(str(tmp_path / "r.csv.lease"))
    wall = [1000.0]
    lease = Lease(store.inner, where, ttl=30, clock=lambda: wall[0])
    lease.acquire()
    lease.store = store  # type: ignore[assignment]  # from now on, renewals hang
    now = [50.0]
    stops: list[str] = []
    keeper = LeaseKeeper(lease, on_lost=stops.append, on_stop=stops.append,
                         monotonic=lambda: now[0])
    renewal = threading.Thread(target=keeper.renew_once)
    renewal.start()
    try:
        assert store.entered.wait(GUARD)
        # WHEN time passes with the renewal still hanging
        now[0] = 50.0 + 30 * STOP_FRACTION - 0.01
        assert keeper.check() and stops == []
        now[0] = 50.0 + 30 * STOP_FRACTION
        # THEN the run is told to stop (once), well before the lease's expiry plus the skew
        assert not keeper.check() and not keeper.check()
        assert len(stops) == 1 and "could not be renewed" in stops[0]
        assert 30 * STOP_FRACTION < 30 + CLOCK_SKEW_SECONDS
    finally:
        store.release.set()
        renewal.join()


def test_a_successor_waits_out_the_clock_skew(tmp_path: Path) -> None:
    # GIVEN run A's lease (10 s) written at A's 1000.0, and B's clock ahead of A's
    where = parse(str(tmp_path / "r.csv.lease"))
    a = Lease(LocalStorage(), where, ttl=10, clock=lambda: 1000.0)
    a.acquire()
    now = [1010.5]  # A's expiry has passed on B's clock, by less than the skew
    b = Lease(LocalStorage(), where, ttl=10, clock=lambda: now[0],
              sleep=lambda s: now.__setitem__(0, now[0] + s))
    # WHEN B tries to take it, THEN it waits until the expiry is past by the skew
    b.acquire()
    assert b.held and now[0] >= 1010 + CLOCK_SKEW_SECONDS
