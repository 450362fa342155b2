"""One run per report: an exclusive lock on ``REPORT.lock``, held for the whole run.

Two runs of the same command at once (an overlapping cron job, a scheduler that restarts a
task it believes dead) would resume the same journal and write the same report from two
processes. The second run is refused at once with exit 2, naming the holder.

The lock is ``flock(LOCK_EX | LOCK_NB)`` on a ``0600`` file (``files.open_private``) that holds
the holder's pid, host and start time as JSON, for the refusal message only: the kernel owns
the lock and releases it when the holder dies, ``kill -9`` included, so a stale file never
blocks a resume. The file is removed while still locked when the run ends; a run that locked
a file just unlinked by its holder sees that the path no longer names its file and tries again.
flock is per host: two hosts sharing a network folder are not serialised by it (reports in S3
get a lease object instead).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from batch.errors import UsageError
from batch.record.layout import lock_path as lock_path  # named there, kept here for callers
from batch.store.files import open_private


class LockedError(UsageError):
    """Another live run holds the report's lock."""


class RunLock:
    """``with RunLock(lock_path(report)):`` the run; ``LockedError`` if another run has it."""

    def __init__(self, path: Path, *, attempts: int = 5) -> None:
        self.path = path
        self.attempts = attempts
        self._handle: IO[bytes] | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def acquire(self) -> None:
        for _ in range(self.attempts):
            # Append mode: opening must not truncate the holder's record before we hold it.
            handle = open_private(self.path, "ab")
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise LockedError(f"{self.path.with_suffix('')}: {self._holder()}") from None
            except BaseException:
                handle.close()
                raise
            if self._still_named(handle):
                self._handle = handle
                self._record(handle)
                return
            handle.close()  # the holder removed this file as it finished: lock the new one
        raise LockedError(f"{self.path}: could not take the lock (it keeps being replaced)")

    def _still_named(self, handle: IO[bytes]) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(handle.fileno())
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)

    def _record(self, handle: IO[bytes]) -> None:
        started = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": started}
        os.ftruncate(handle.fileno(), 0)
        handle.write(json.dumps(record).encode() + b"\n")
        handle.flush()

    def _holder(self) -> str:
        try:
            record: Any = json.loads(self.path.read_text(encoding="utf-8"))
            who = f"pid {int(record['pid'])} on {record['host']}, started {record['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            who = "a process that is just starting"
        return (
            f"another run is using this report ({who}); wait for it to end or stop it "
            "(a run that was killed does not hold it)"
        )

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # while still locked: the next run cannot have locked it
        handle.close()
