"""What a run reads before and while it writes: the calls at its start side by side, and the
lookup of the input's users (snapshot, live, or both overlapped: ``plan.overlap``).

Every call before the first write is time the quota goes unused: at 1 s an answer, the pool's
description and three quota reads one after another were four seconds of a forty-second run.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from batch.cognito import CognitoGateway
from batch.config import JobConfig
from batch.errors import FatalError
from batch.inputs.sample import KeySample
from batch.inputs.scan import KeyScan
from batch.pace.pacer import Pacer, Waiter, event_waiter
from batch.pace.rate_plan import RatePlan
from batch.pace.retrying import Retrier, RetryPolicy
from batch.plan.lookup import LIST_PAGE, LiveLookup, Lookup, PacedCall, PoolSnapshot
from batch.plan.overlap import Overlapped, plan_reads
from batch.plan.segments import MAX_SEGMENTS, prefixes
from batch.record.layout import RunFiles
from batch.view.logs import EventLog


class Job(Protocol):
    """What the reads need of ``run.Job``."""

    config: JobConfig
    gateway: CognitoGateway
    log: EventLog
    pool_users: int | None
    key_sample: KeySample
    columns: dict[str, str]
    read_check: ReadCheck

    @property
    def needs_lookup(self) -> bool: ...

    @property
    def records_undo(self) -> bool: ...

    def rate_plan(self) -> RatePlan: ...


def side_by_side(*calls: Callable[[], None]) -> None:
    """Run ``calls`` at once (the first here, the rest in threads); the first error raised
    (in the order given) is raised once all have ended."""
    errors: dict[int, BaseException] = {}

    def one(i: int) -> None:
        try:
            calls[i]()
        except BaseException as exc:  # noqa: BLE001 - raised below, in the caller's thread
            errors[i] = exc

    threads = [threading.Thread(target=one, args=(i,), daemon=True,
                                name=f"cognito-batch-start_{i}") for i in range(1, len(calls))]
    for thread in threads:
        thread.start()
    try:
        one(0)
    finally:
        for thread in threads:
            thread.join()
    if errors:
        raise errors[min(errors)]


#: At most this many of the first rows' users are read beside the start's calls (a second of
#: reads at the default read rate): at 1 s an answer, the first writes waited that second.
EARLY_READS = 100


class ReadCheck:
    """The AdminGetUser permission check, asked at the start beside the pool's description and
    the quotas (at 1 s an answer, asked later it cost a second before the first write). Its
    refusal is held, and raised when the lookup is opened, before the first write, as before.
    Counted in the lookup's reads (the summary's ``read_calls``).

    Beside it, the users of the run's first rows (``keys``) are read too (reads change
    nothing): their answers wait in ``early`` for the lookup, so the first writes need not
    wait a read's answer after the start's calls. The reads' pacer is the lookup's too."""

    def __init__(self) -> None:
        self.done = False
        self.refused: FatalError | None = None
        self.early: dict[str, Future[list[dict[str, str]]]] = {}
        self.early_reads = 0
        self.pacer: Pacer | None = None
        self.latency = 0.0  # the check's seconds: a read's answer time (the pacer's first slot)

    def run(self, job: Job, stop: threading.Event, keys: Sequence[str] = ()) -> None:
        config = job.config
        if config.dry_run or config.key != "username" or job.needs_lookup or not job.records_undo:
            # Only before-images alone are sure to read users one at a time (live or
            # overlapped: ``plan_reads`` with every row written); a diff may page the pool
            # instead, and then makes no AdminGetUser at all.
            return
        wait = event_waiter(stop)
        self.pacer = Pacer(config.get_rate)
        retrier = Retrier(RetryPolicy(max_attempts=config.max_attempts), wait=wait)
        live = _live(job, retrier, wait, check=False, pacer=self.pacer)
        wanted = list(dict.fromkeys(k for k in keys if k))[:EARLY_READS]
        # The check takes the pacer's first slot; the first rows' reads go on in the
        # background after it, their answers awaited by the rows themselves (``early``).
        pool = ThreadPoolExecutor(max_workers=len(wanted) + 1,
                                  thread_name_prefix="cognito-batch-early")
        try:
            check = pool.submit(_timed, live.check)
            self.early = {k: pool.submit(live.find, k) for k in wanted}
            self.early_reads = len(self.early)
            try:
                _, self.latency = check.result()
            except FatalError as exc:
                self.refused = exc
            except Exception:  # noqa: BLE001 - an answer in no known shape: asked again later
                pass
            else:
                self.done = True
        finally:
            pool.shutdown(wait=False)

    def passed(self) -> bool:
        """True when asked and allowed; raises the refusal; False when not asked."""
        if self.refused is not None:
            raise self.refused
        return self.done


def _timed(call: Callable[[], None]) -> tuple[None, float]:
    started = time.monotonic()
    call()
    return None, time.monotonic() - started


def open_reads(job: Job, scan: KeyScan, stop: threading.Event) -> tuple[Lookup, str]:
    """The lookup of the input's users and how it reads (``live``, ``snapshot``,
    ``overlap``): the read quotas weighed against the write ceiling (``plan.overlap``), so
    reads never hold the writes below the quota."""
    config = job.config
    wait = event_waiter(stop)
    retrier = Retrier(RetryPolicy(max_attempts=config.max_attempts), wait=wait)
    how = plan_reads(input_rows=scan.rows, pool_users=job.pool_users, key=config.key,
                     list_rate=config.list_rate, get_rate=config.get_rate,
                     writes=job.rate_plan().ceiling, every_row=not job.needs_lookup)
    if how not in ("snapshot", "overlap"):
        checked = job.read_check.passed()
        live = _live(job, retrier, wait, check=not checked, early=job.read_check)
        live.reads += checked  # the check made at the start is this lookup's read
        return live, how
    cancel = threading.Event() if how == "overlap" else stop
    paced = PacedCall(Pacer(config.list_rate),
                      Retrier(RetryPolicy(max_attempts=config.max_attempts),
                              wait=event_waiter(cancel)), event_waiter(cancel))
    files = RunFiles(config.report_path())
    snapshot = PoolSnapshot(files.report.parent, prefix=files.snapshot_prefix,
                            indexed=how == "overlap")
    if not config.quiet:
        job.log.emit("read_users", f"cognito-batch: reading the pool's users "
                     f"(ListUsers at {config.list_rate:g}/s) to compare"
                     + (", writing meanwhile" if how == "overlap" else "..."),
                     mode=how, list_rate=config.list_rate)
    # Overlapped, the pool is paged in segments side by side (``plan.segments``): about a
    # page of the input's keys each, so the snapshot keeps ahead of the writes.
    segments = (prefixes(job.key_sample.keys, min(MAX_SEGMENTS, scan.rows // LIST_PAGE))
                if how == "overlap" else [])
    fill = functools.partial(
        snapshot.fill, job.gateway, config.user_pool_id, key=config.key, wanted=scan,
        attributes=set(job.columns.values()), paced=paced, prefixes=segments)
    if how == "snapshot":
        try:
            fill()
        except BaseException:
            snapshot.close()
            raise
        return snapshot, how
    try:
        checked = job.read_check.passed()
    except BaseException:
        snapshot.close()
        raise
    live = _live(job, retrier, wait, check=False, early=job.read_check)
    live.reads += checked
    lookup = Overlapped(snapshot, live, fill, cancel)
    if not checked:
        try:
            live.check()  # the permission check while the first pages are read
        except BaseException:
            lookup.close()
            raise
    return lookup, how


def live_lookup(job: Job, stop: threading.Event) -> LiveLookup:
    """One read per row, live (AdminGetUser), its permission checked now: a resume's rows in
    doubt when nothing else reads the pool (``plan.in_doubt``)."""
    wait = event_waiter(stop)
    return _live(job, Retrier(RetryPolicy(max_attempts=job.config.max_attempts), wait=wait),
                 wait)


def _live(job: Job, retrier: Retrier, wait: Waiter, *, check: bool = True,
          pacer: Pacer | None = None, early: ReadCheck | None = None) -> LiveLookup:
    """``early``: the start's reads, whose answers and pacer the lookup takes over."""
    config = job.config
    rate = config.get_rate if config.key == "username" else config.list_rate
    if early is not None and early.pacer is not None:
        pacer = early.pacer
    live = LiveLookup(job.gateway, config.user_pool_id, key=config.key,
                      paced=PacedCall(pacer or Pacer(rate), retrier, wait), check=check,
                      known=early.early if early is not None else None)
    if early is not None:
        live.reads += early.early_reads
    return live
