"""One run per S3 report: a lease object beside it (``REPORT.lease``), S3's conditional writes
standing in for the local ``flock`` (``lock.py``), which no other machine can see.

    lease = Lease(store, location_of("s3://b/p/report.csv.lease"))
    lease.acquire()          # LockedError (exit 2) naming the holder while it is live
    lease.renew()            # every few seconds; LeaseLost if another run took it over
    lease.release()

The object is JSON: holder (a random id), host, pid, start and expiry (Unix seconds). It is
created with ``If-None-Match: *``; a run that finds one still live is refused, naming the
holder (a live holder is seen renewing it within a quarter of its ttl). A killed run cannot
release its lease, so one whose expiry has passed is taken over with ``If-Match`` its ETag: of
two runs racing for it, exactly one wins. A run that finds a lease not renewed waits for its
expiry (at most ``ttl``), so a scheduler's immediate retry of a killed run resumes rather than
failing on the lease. A lease that cannot be read (edited: an expiry that is not a number,
NaN, or further ahead than its ttl allows) is damaged: no time in it is trusted, and it is
waited out as a dead holder's, ``ttl`` and the clock skew from when it was first seen, then
taken over, said once (never a traceback, never a wait without end). The holder renews with
``If-Match`` the ETag of its own last write, so a run that was paused past its expiry (and
replaced) learns it on its next renewal and stops instead of writing beside its successor.
Release writes the lease expired (again ``If-Match``), so the next run takes it at once.

The acquire is also the run's first write to the report's prefix: AccessDenied or a missing
bucket stops the run there, before any Cognito call. ``ttl`` is 30 s by default, four renewals
long.

Never taken from a live run (``LeaseKeeper``): the renewals have a thread of their own, so a
slow segment upload cannot hold them up, and a watchdog stops the run once no renewal has
succeeded for ``STOP_FRACTION`` of the ttl (measured on this machine's monotonic clock from
the moment the last successful renewal was *sent*). Expiry is judged by the machines' wall
clocks: a successor takes over only ``CLOCK_SKEW_SECONDS`` after the recorded expiry, so
two clocks up to that far apart (NTP keeps AWS hosts within milliseconds) never let it in
before the holder has stopped, and the holder's calls in flight have the rest of the ttl to
end.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from batch.record.lock import LockedError
from batch.store.s3 import PreconditionFailed
from batch.store.storage import Location, Storage

TTL_SECONDS = 30.0
#: The most two machines' clocks are assumed to differ (docs/scheduling.md).
CLOCK_SKEW_SECONDS = 2.0
#: The longest ttl a lease may record; one claiming more cannot be read (``_expiry``).
MAX_TTL_SECONDS = 3600.0
#: A holder that has not renewed for this share of the ttl stops writing.
STOP_FRACTION = 0.5


class LeaseLost(LockedError):
    """Another run took this run's lease over (this one was presumed dead)."""


def _iso(seconds: float) -> str:
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


class Lease:
    """The lease on one S3 report; ``clock`` is wall time (Unix seconds), injected in tests."""

    def __init__(
        self,
        store: Storage,
        location: Location,
        *,
        ttl: float = TTL_SECONDS,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        warn: Callable[[str], None] = lambda text: None,
    ) -> None:
        self.store = store
        self.warn = warn
        self.location = location
        self.ttl = ttl
        self.clock = clock
        self.sleep = sleep
        self.holder = uuid.uuid4().hex
        self.started = clock()
        self._etag: str | None = None
        self._writes = 0

    @property
    def held(self) -> bool:
        return self._etag is not None

    def _record(self, *, expires: float) -> bytes:
        # A counter: a renewal must change the object (and its ETag) even if the clock did not.
        self._writes += 1
        record = {"holder": self.holder, "host": socket.gethostname(), "pid": os.getpid(),
                  "started": _iso(self.started), "expires": expires, "ttl": self.ttl,
                  "writes": self._writes}
        return json.dumps(record).encode()

    def acquire(self) -> None:
        """Create the lease, or take over one whose holder is gone. A lease found live is
        watched until it either changes (its holder renews it: alive, so this run is refused,
        within a quarter of the holder's ttl) or expires (the holder was killed: taken over).
        So an overlapping run exits 2 in seconds, and a scheduler's retry of a killed run waits
        out the lease instead of failing on it."""
        body = self._record(expires=self.clock() + self.ttl)
        try:
            self._etag = self.store.put(self.location, body, if_none_match=True).etag
            return
        except PreconditionFailed:
            pass  # there is one: live, or left by a run that died
        seen: str | None = None
        changed = False
        damaged_since: float | None = None  # when a lease that cannot be read was first seen
        while True:
            try:
                info, data = self.store.read(self.location)
            except PreconditionFailed:  # replaced between its HEAD and GET: renewed just now
                changed = True
                continue
            record = _parse(data) or {}
            now = self.clock()
            expires = _expiry(record, now)
            if expires is None:
                # Not a lease a run writes (edited, or damaged): no expiry in it is trusted.
                # Waited out as a dead holder's would be, from when it was first seen.
                if damaged_since is None:
                    damaged_since = now
                expires = damaged_since + self.ttl
            if expires + CLOCK_SKEW_SECONDS <= now:  # expired on any clock we allow
                break
            if changed or (seen is not None and info.etag != seen):
                raise LockedError(f"{self.location}: {_busy(_who(record, now))}")
            seen = info.etag
            left = expires + CLOCK_SKEW_SECONDS - now
            self.sleep(min(1.0, max(0.05, _ttl(record) / 8), max(0.0, left) + 0.05))
        if damaged_since is not None:
            self.warn(f"warning: {self.location}: the lease found there cannot be read (not "
                      "one a run writes); taken over after the ttl, as a killed run's would be")
        body = self._record(expires=self.clock() + self.ttl)  # from now, not from the wait's start
        try:
            self._etag = self.store.put(self.location, body, if_match=info.etag).etag
        except PreconditionFailed:  # another run took it over first
            raise LockedError(f"{self.location}: {_busy('a run that took it just now')}") from None

    def renew(self) -> None:
        """Push the expiry on; ``LeaseLost`` if the object is no longer this run's write."""
        if self._etag is None:
            return
        body = self._record(expires=self.clock() + self.ttl)
        try:
            self._etag = self.store.put(self.location, body, if_match=self._etag).etag
        except PreconditionFailed:
            self._etag = None
            raise LeaseLost(
                f"{self.location}: another run took this report's lease over (this run was "
                "presumed dead); stopping so that only one run writes the report"
            ) from None

    def release(self) -> None:
        """Write it expired, so the next run takes it at once (only if it is still ours)."""
        if self._etag is None:
            return
        etag, self._etag = self._etag, None
        try:
            self.store.put(self.location, self._record(expires=0), if_match=etag)
        except PreconditionFailed:
            pass  # taken over already: it is not ours to release


class LeaseKeeper:
    """Keeps a held lease: renews it every quarter ttl on a thread of its own, and a watchdog
    thread calls ``on_stop`` once no renewal has succeeded for ``STOP_FRACTION`` of the ttl
    (a renewal hung in a slow PUT included), so the run stops writing before a successor may
    take over. ``on_lost``: another run took the lease. Nothing raises out of the threads.
    ``monotonic`` and ``wait`` (``Event.wait``-like: True to stop) are injected in tests."""

    def __init__(
        self,
        lease: Lease,
        *,
        on_lost: Callable[[str], None],
        on_stop: Callable[[str], None],
        warn: Callable[[str], None] = lambda text: None,
        monotonic: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        self.lease = lease
        self.on_lost, self.on_stop, self.warn = on_lost, on_stop, warn
        self.monotonic = monotonic
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self._lock = threading.Lock()
        self.renewed_at = monotonic()  # when the last successful renewal (or acquire) was sent
        self.renewals = 0
        self.stopped = ""
        self._threads: list[threading.Thread] = []

    @property
    def deadline(self) -> float:
        """When, on the monotonic clock, the run must have stopped writing."""
        with self._lock:
            return self.renewed_at + self.lease.ttl * STOP_FRACTION

    def start(self) -> None:
        for name, target in (("lease-renew", self._renew_loop), ("lease-watch", self._watch)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._threads = []

    def renew_once(self) -> bool:
        """One renewal; False once the lease is lost (``on_lost`` was called)."""
        sent = self.monotonic()
        try:
            self.lease.renew()
        except LeaseLost as exc:
            self.on_lost(str(exc))
            return False
        except Exception as exc:  # noqa: BLE001 - a failed renewal is retried; the watchdog bounds it
            self.warn(f"warning: the report's lease was not renewed ({exc}); retrying")
            return True
        with self._lock:
            self.renewed_at = max(self.renewed_at, sent)
            self.renewals += 1
        return True

    def check(self) -> bool:
        """True while the run may write; past the deadline ``on_stop`` is called (once)."""
        if self.stopped:
            return False
        if self.monotonic() < self.deadline:
            return True
        self.stopped = (
            f"{self.lease.location}: the report's lease could not be renewed for "
            f"{self.lease.ttl * STOP_FRACTION:g} s; stopping before it can expire and another "
            "run take it over"
        )
        self.on_stop(self.stopped)
        return False

    def _renew_loop(self) -> None:
        while not self._wait(self.lease.ttl / 4):
            if not self.renew_once():
                return

    def _watch(self) -> None:
        while self.check():
            left = self.deadline - self.monotonic()
            if self._wait(max(0.0, min(left, self.lease.ttl / 8))):
                return


def _parse(data: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(data)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _number(value: Any) -> float | None:
    """A finite JSON number (not a bool, a string, null or NaN), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _ttl(record: dict[str, Any]) -> float:
    ttl = _number(record.get("ttl"))
    return ttl if ttl is not None and 0 < ttl <= MAX_TTL_SECONDS else TTL_SECONDS


def _expiry(record: dict[str, Any], now: float) -> float | None:
    """The lease's expiry if it is one a run writes: a finite number no further ahead than
    its ttl (bounded) and the clock skew. None: the lease cannot be read."""
    expires, ttl = _number(record.get("expires")), _number(record.get("ttl"))
    if expires is None or (ttl is not None and not 0 < ttl <= MAX_TTL_SECONDS):
        return None
    if expires > now + (ttl or TTL_SECONDS) + CLOCK_SKEW_SECONDS:
        return None
    return expires


def _text(value: Any) -> str:
    """A field of the lease for a message: short, printable (the object may be edited)."""
    text = str(value)[:80]
    return "".join(c if c.isprintable() else "?" for c in text)


def _who(record: dict[str, Any], now: float) -> str:
    expires = _expiry(record, now)
    if expires is None:
        return "a lease that cannot be read, yet is being rewritten"
    left = max(0, round(expires - now))
    return (f"pid {_text(record.get('pid'))} on {_text(record.get('host'))}, started "
            f"{_text(record.get('started'))}; it renews its lease, which would expire in "
            f"{left} s")


def _busy(who: str) -> str:
    return (
        f"another run is using this report ({who}); wait for it to end or stop it (a killed "
        "run's lease expires by itself)"
    )
