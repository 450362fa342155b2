"""Reports and checkpoints in S3: a run works in a private local spool, exactly as for a local
report, and its journal is copied to S3 as numbered immutable segments, so a rerun on a fresh
machine resumes from what S3 holds.

For ``--report s3://b/p/report.csv`` the objects beside the report are::

    p/report.csv.lease                      one run at a time (``lease.py``)
    p/report.csv.journal.d/seg-000000       the journal's bytes: its header, then result lines
    p/report.csv.journal.d/seg-000001 ...   each later segment: the lines written since
    p/report.csv  .summary.json  .timeline.json  (.undo.jsonl)   at the end, and on a stop
    p/report.csv.state.parquet              ``--incremental``: at the end of a finished run
    p/report.csv.journal                    the compacted journal: written when the run is done

Segments (``Checkpoint``): every ``interval`` seconds (5 by default) and at the end, the
journal's new whole lines are put as the next segment with ``If-None-Match: *``. A segment is
done only when its put succeeded; until then its lines stay pending in the local journal and
go in the next attempt (tenacity, jittered, sleep injected). Create-only keys also fence a
run that lost its lease: its next segment collides with its successor's and it stops. A kill
loses at most the lines of the last ``interval``: a resume applies those rows again (the same
values: an idempotent write), never reports a row twice.

Resume (``S3Report.restore``): with nothing on disk, the segments are listed and concatenated
into the local journal, each checked line by line (checksums, segment 0 starting with the
header); a damaged last segment is cut to its last whole line (and put back so), a damaged or
missing segment before the last is refused. The job then checks the header as for a local
journal (a changed input or other settings is refused) and appends to it as it is; new
segments continue the numbering, so S3's segments are always the local journal's bytes.

The end (``S3Report.publish``), in the order a resume relies on: the last segment, then the
report, summary and timeline objects, then (a finished run) the segment holding the
journal's ``=complete`` line. Compaction: the whole local journal is put
as ``REPORT.journal`` and the segments are deleted, highest first, so what remains is always a
prefix. While ``REPORT.journal`` exists it is the truth and any segments are leftovers of that
compaction; a new run replacing a finished one deletes the leftovers and then that object
before its own segment 0. So a finished run leaves four objects, not thousands.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from batch.errors import ResumeError, StorageError
from batch.record.before_images import undo_path
from batch.record.journal import journal_path
from batch.record.layout import state_path
from batch.record.report import summary_path
from batch.record.timeline import timeline_path
from batch.remote.lease import Lease, LeaseKeeper, LeaseLost
from batch.remote.segments import SEGMENT, read_segment_header, rows_in_range, segment_header
from batch.remote.segments import segment_name as segment_name  # named there, kept for callers
from batch.remote.segments import whole_lines as whole_lines
from batch.remote.spool import remove_stale_spools, spool_prefix
from batch.remote.stopping import StopDeferred
from batch.store.files import DIR_MODE, atomic_write
from batch.store.s3 import PreconditionFailed
from batch.store.storage import Location, Storage, parse, storage_for

INTERVAL_SECONDS = 5.0
THROUGH_ATTEMPTS = 5  # puts tried before a mark that must reach S3 stops the run instead
ATTEMPTS = 1  # botocore retries each S3 request (store/s3.py): one layer, not two
COMPLETE_LINE = b"%08x\t=complete\n" % zlib.crc32(b"=complete")

Sleep = Callable[[float], None]
_REFUSED = ("The checkpoint is refused: check who writes to the report's prefix, or pass "
            "--fresh to discard it and redo every row")


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, StorageError) and not isinstance(exc, PreconditionFailed)


def retrying(sleep: Sleep, attempts: int = ATTEMPTS) -> Retrying:
    """Upload retries: jittered (many shards share one bucket), a lost race never retried."""
    return Retrying(stop=stop_after_attempt(attempts), retry=retry_if_exception(_retryable),
                    wait=wait_random_exponential(multiplier=0.25, max=4.0), sleep=sleep,
                    reraise=True)


def ends_complete(path: Path) -> bool:
    """The journal's last line is ``=complete`` (read from its end: a journal may be large)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - len(COMPLETE_LINE)))
            return handle.read() == COMPLETE_LINE
    except FileNotFoundError:
        return False


class Checkpoint:
    """Copies the local journal's new lines to S3 as segments, on a timer and on demand. The
    lease is kept by threads of its own (``LeaseKeeper``), so a slow upload never delays a
    renewal. Nothing raises out of the threads: a failed upload stays pending (retried next
    time); a lost lease, or one not renewed in time, calls ``on_lost`` (the run stops)."""

    def __init__(
        self,
        store: Storage,
        segments: Location,
        journal: Path,
        *,
        lease: Lease | None = None,
        interval: float = INTERVAL_SECONDS,
        on_lost: Callable[[str], None] = lambda reason: None,
        warn: Callable[[str], None] = lambda text: None,
        sleep: Sleep = time.sleep,
        attempts: int = ATTEMPTS,
        lease_wait: Callable[[float], bool] | None = None,
    ) -> None:
        self.store = store
        self.lease_wait = lease_wait  # the lease keeper's timer (tests inject it)
        self.segments = segments
        self.journal = journal
        self.lease = lease
        self.interval = interval
        self.on_lost = on_lost
        self.warn = warn
        self.sleep = sleep
        self.attempts = attempts
        self.next_seq = 0
        self.run = ""  # the run's id, in every segment's header line (``segment_header``)
        self.offset = 0  # bytes of the local journal already in S3
        self.uploaded = 0  # segments put by this run
        self.lost = ""
        self.begun = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.keeper: LeaseKeeper | None = None

    def _key(self, n: int) -> Location:
        if self.segments.is_s3:
            return parse(f"s3://{self.segments.bucket}/{self.segments.key}{segment_name(n)}")
        return parse(str(self.segments.path / segment_name(n)))

    # -- lifetime ----------------------------------------------------------------------------

    def begin(
        self, *, resumed: bool, restored_segments: int, clear: Callable[[], None], run: str = ""
    ) -> None:
        """Called once the local journal is open: a resume continues after the segments it
        was rebuilt from (the journal's bytes so far are in them already), under their run id
        (``run``); a fresh run clears what an earlier run left and starts at segment 0 under
        a new one."""
        self.run = run if resumed and run else uuid.uuid4().hex
        if resumed:
            self.next_seq = restored_segments
            self.offset = self.journal.stat().st_size
        else:
            clear()
            self.next_seq = self.offset = 0
        with self._lock:
            self.begun = True

    def start(self) -> None:
        """The threads: the lease kept from now (a run reads its whole input, and perhaps the
        pool, before its journal opens); uploads once ``begin`` was called."""
        if self.lease is not None:
            self.keeper = LeaseKeeper(self.lease, on_lost=self._lease_lost,
                                      on_stop=self.on_lost, warn=self.warn,
                                      wait=self.lease_wait)
            self.keeper.start()
        self._thread = threading.Thread(target=self._loop, name="checkpoint", daemon=True)
        self._thread.start()

    def stop_uploads(self) -> None:
        """No more timed uploads (the end of the run); the lease is still kept."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        self.stop_uploads()
        if self.keeper is not None:
            self.keeper.close()
            self.keeper = None

    def _lease_lost(self, reason: str) -> None:
        self.lost = reason  # not under the lock: an upload may hold it for a slow PUT
        self.on_lost("lost the report's lease to another run")

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.upload()
            except LeaseLost:
                self.on_lost("lost the report's lease to another run")
                return
            except StorageError as exc:  # pending: the next tick tries the same bytes again
                self.warn(f"warning: checkpoint upload failed ({exc}); retrying")

    # -- uploads -----------------------------------------------------------------------------

    def upload(self, *, hold_complete: bool = False) -> int:
        """Put the journal's whole lines not yet in S3 as the next segment; the bytes it put.
        ``hold_complete``: leave a trailing ``=complete`` line for later (it may go to S3 only
        once the report and summary are there)."""
        with self._lock:
            if self.lost:
                raise LeaseLost(self.lost)
            if not self.begun:  # no journal was opened (a refusal, or a report rebuilt)
                return 0
            with open(self.journal, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
            data = data[: data.rfind(b"\n") + 1]  # a line being written waits for next time
            if hold_complete and data.endswith(COMPLETE_LINE):
                data = data[: -len(COMPLETE_LINE)]
            if not data:
                return 0
            holder = self.lease.holder if self.lease is not None else ""
            self._put_segment(self.next_seq, segment_header(self.run, self.next_seq, holder) + data)
            self.offset += len(data)
            self.next_seq += 1
            self.uploaded += 1
            return len(data)

    def through(self, offset: int) -> str:
        """The journal's first ``offset`` bytes in S3 before the rows its newest mark covers
        go out (``engine.handout``): put now what the timer has not put yet. A failed put is
        tried again, jittered, a few times (``THROUGH_ATTEMPTS``); '' once there, else why
        not (the run stops: a row must not be sent while S3 does not know it may have been).
        """
        if self.offset >= offset:
            return ""  # the timed upload carried it already
        try:
            # One upload puts every whole line not yet in S3: retried with the module's policy.
            retrying(self.sleep, THROUGH_ATTEMPTS)(self.upload)
        except LeaseLost as exc:
            return str(exc) or "lost the report's lease to another run"
        except StorageError as exc:
            return f"the checkpoint cannot reach S3 ({exc})"
        return ""

    def _put_segment(self, n: int, data: bytes) -> None:
        where = self._key(n)
        try:
            retrying(self.sleep, self.attempts)(self.store.put, where, data, if_none_match=True)
        except PreconditionFailed:
            # Ours already, if an earlier attempt's answer was lost on the way back; else
            # another run wrote this segment: it holds the report now.
            try:
                _, there = self.store.read(where)
            except StorageError:
                there = b""
            if there != data:
                self.lost = f"{where}: written by another run; this run stops"
                raise LeaseLost(self.lost) from None

    def put(self, where: Location, path: Path) -> None:
        if self.lost:  # another run holds the report now: its objects are not ours to replace
            raise LeaseLost(self.lost)
        retrying(self.sleep, self.attempts)(self.store.put_file, where, path)


class S3Report:
    """A run's report in S3: the local spool it works in and the objects beside the report."""

    def __init__(
        self,
        uri: str,
        *,
        profile: str | None = None,
        store: Storage | None = None,
        spool_root: str | None = None,
    ) -> None:
        self.location = parse(uri)
        self.store = store or storage_for(self.location, profile=profile)
        # Private: the spool holds what the report holds (usernames, error messages), and
        # named for the report, so the next run on it finds what a killed run left.
        self.spool = Path(tempfile.mkdtemp(prefix=spool_prefix(self.location), dir=spool_root))
        self.spool.chmod(DIR_MODE)
        self.local = self.spool / self.location.name
        self.journal = journal_path(self.local)
        self.restored_segments = 0
        self.run = ""  # the restored segments' run id (``segment_header``)

    def beside(self, local: Path) -> Location:
        """The object beside the report named as ``local`` is beside the local report."""
        folder = self.location.key.rpartition("/")[0]
        key = f"{folder}/{local.name}" if folder else local.name
        return parse(f"s3://{self.location.bucket}/{key}")

    @property
    def segments(self) -> Location:
        where = self.beside(self.journal)
        return parse(f"{where}.d/")

    @property
    def journal_object(self) -> Location:
        return self.beside(self.journal)

    def lease(self, **kwargs: Any) -> Lease:
        return Lease(self.store, parse(f"{self.location}.lease"), **kwargs)

    def _exists(self, where: Location) -> bool:
        try:
            self.store.stat(where)
        except StorageError as exc:
            if exc.code in ("NoSuchKey", "NotFound", "404"):
                return False
            raise
        return True

    def _download(self, where: Location, to: Path) -> bool:
        try:
            info = self.store.stat(where)
        except StorageError as exc:
            if exc.code in ("NoSuchKey", "NotFound", "404"):
                return False
            raise
        with self.store.open_read(info) as source, atomic_write(to, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        return True

    def _listed(self) -> list[tuple[int, Location]]:
        found: list[tuple[int, Location]] = []
        for info in self.store.list(self.segments):
            match = SEGMENT.fullmatch(info.relative)
            if match:
                found.append((int(match.group(1)), info.location))
        return sorted(found)

    # -- before the run ----------------------------------------------------------------------

    def restore(self, *, fresh: bool = False) -> None:
        """Rebuild the local journal from S3 (nothing on disk is assumed). A finished run's
        report and summary come too, so the job decides as for a local report. Called with
        the lease held: first the spools killed runs of this report left here are removed.
        ``fresh`` (``--fresh``): nothing is read, so a damaged checkpoint cannot refuse the
        run that discards it; the run's ``clear`` then deletes it before its own segment 0."""
        self.remove_stale_spools()
        # The state the last finished run applied (``--incremental``): the next run diffs
        # against it, with --fresh too (it discards a journal, not what the pool holds).
        self._download(self.beside(state_path(self.local)), state_path(self.local))
        if fresh:
            # Only the before-images: an unfinished run's are refused to --fresh as for a
            # local report (``run._keep_images``), never replaced by this run's at its end.
            self._download(self.beside(undo_path(self.local)), undo_path(self.local))
            return
        if self._download(self.journal_object, self.journal):
            for name in (summary_path(self.local), self.local):
                self._download(self.beside(name), name)
            return
        if not (listed := self._listed()):
            return
        self._assemble(listed, repair=True)
        self.restored_segments = len(listed)
        if ends_complete(self.journal):
            for name in (summary_path(self.local), self.local):
                self._download(self.beside(name), name)
        # Continued by the resume (both append to what an earlier attempt left). The undo log
        # is put only when a run ends or stops: a SIGKILLed attempt's images are not in S3.
        for name in (timeline_path(self.local), undo_path(self.local)):
            self._download(self.beside(name), name)

    def _assemble(self, listed: list[tuple[int, Location]], *, repair: bool) -> None:
        """The local journal from its segments, each checked as this run's (``_own``)."""
        with atomic_write(self.journal, "wb") as out:
            for index, (number, where) in enumerate(listed):
                if number != index:
                    raise ResumeError(
                        f"{self.segments}: {segment_name(index)} is missing (found "
                        f"{segment_name(number)}); the checkpoint is damaged: pass --fresh "
                        "to discard it and redo every row"
                    )
                _, data = self.store.read(where)
                start = self._own(where, data, index)
                good = start + whole_lines(data[start:], header=index == 0)
                lines = data.find(b"\n", start) + 1 if index == 0 else start  # past the header
                if not rows_in_range(data[lines:good]):
                    raise ResumeError(f"{where}: a row out of the input's range; not a "
                                      f"segment this run wrote. {_REFUSED}")
                if good < len(data):
                    if index != len(listed) - 1:
                        raise ResumeError(
                            f"{where}: a damaged checkpoint segment before the last; pass "
                            "--fresh to discard the checkpoint and redo every row"
                        )
                    # The last one cut short: keep its whole lines, and (a resume: ``repair``)
                    # put it back so: the next resume must find the same bytes in it.
                    data = data[:good]
                    if repair:
                        self.store.put(where, data)
                out.write(data[start:])

    def fetch(self) -> None:
        """A read-only copy of a run's files for ``undo``, nothing put or removed: its journal
        (compacted, or from segments checked as a resume checks them), summary, report, images."""
        if not self._download(self.journal_object, self.journal) and (listed := self._listed()):
            self._assemble(listed, repair=False)
        for name in (summary_path(self.local), self.local, undo_path(self.local)):
            self._download(self.beside(name), name)

    def _own(self, where: Location, data: bytes, index: int) -> int:
        """The bytes of segment ``index``'s header line, once it shows the segment is this
        run's: numbered as its key, and of the run segment 0 names. A planted segment (a
        PutObject on the prefix alone cannot know the run's id), a renumbered or copied one,
        or one of another run, is refused in one line."""
        found = read_segment_header(data)
        if found is None:
            raise ResumeError(f"{where}: a segment without its header line (planted, or "
                              f"written by an older cognito-batch). {_REFUSED}")
        run, seq, size = found
        if index == 0:
            self.run = run
        if seq != index or run != self.run:
            what = f"numbered {seq}" if seq != index else "of another run"
            raise ResumeError(f"{where}: a segment {what}; not one this run wrote. {_REFUSED}")
        return size

    def clear(self) -> None:
        """What an earlier run left, before a fresh run's segment 0: its segments (batched,
        ``DeleteObjects``), then, once they are gone, its compacted journal. Nothing to delete
        costs no delete: a first run needs no ``s3:DeleteObject``. One that cannot delete
        what is there is refused, naming that permission (its segment 0 would collide)."""
        leftovers = [where for _, where in reversed(self._listed())]
        self._delete_all(leftovers)
        if self._exists(self.journal_object):
            self._delete_all([self.journal_object])

    def _delete_all(self, leftovers: list[Location]) -> None:
        if not leftovers:
            return
        refused = self.store.delete_many(leftovers)
        if refused:
            where, code = refused[0]
            raise StorageError(
                f"{code}: {len(refused)} of the {len(leftovers)} objects an earlier run of this "
                "report left could not be deleted; replacing that run needs s3:DeleteObject on "
                "the report's prefix (or give this run another report name)",
                uri=str(where), code=code,
            )

    # -- after the run -----------------------------------------------------------------------

    def publish(self, checkpoint: Checkpoint) -> None:
        """The end of a run, in the order a resume relies on (module docstring). A SIGTERM,
        SIGINT or SIGHUP meanwhile (a scheduler stopping the task) does not kill it half way:
        the puts go on (seconds), the compaction's deletes are left to a later run, and the
        run ends with its own exit code; a second Ctrl-C exits at once."""
        with StopDeferred() as stop:
            checkpoint.stop_uploads()  # the lease is kept while the report goes up
            checkpoint.upload(hold_complete=True)
            summary = summary_path(self.local)
            for local in (self.local, summary, timeline_path(self.local), undo_path(self.local)):
                if local.is_file():
                    checkpoint.put(self.beside(local), local)
            state = state_path(self.local)
            if ends_complete(self.journal) and state.is_file():
                checkpoint.put(self.beside(state), state)  # before the segment that vouches
            checkpoint.upload()
            complete = ends_complete(self.journal)
            if complete:
                checkpoint.put(self.journal_object, self.journal)
            if stop.name:
                checkpoint.warn(f"{stop.name}: the report is in S3; stopping before its "
                                "checkpoint segments are deleted (a later run removes them)")
            elif complete:
                self._compact(checkpoint.warn)

    def _compact(self, warn: Callable[[str], None]) -> None:
        """Delete the segments the compacted journal object replaced, 1,000 a request. Not
        allowed to (no ``s3:DeleteObject``): they stay, said once; a resume ignores them."""
        leftovers = [where for _, where in reversed(self._listed())]
        if not leftovers:
            return
        try:
            refused = [code for _, code in self.store.delete_many(leftovers)]
        except StorageError as exc:
            refused = [exc.code or "Error"] * len(leftovers)
        if refused:
            warn(f"warning: {len(refused)} checkpoint segments stay under {self.segments} "
                 f"({refused[0]}: deleting them needs s3:DeleteObject); harmless, the "
                 "compacted journal object is what a resume reads")

    def remove_spool(self) -> None:
        shutil.rmtree(self.spool, ignore_errors=True)

    def remove_stale_spools(self) -> list[Path]:
        """What killed runs of this report left on this machine (``spool.py``)."""
        return remove_stale_spools(self.spool, self.location)
