"""The work of a run (and of a retry): the input's rows, planned, fed to the pipeline.

``run_items`` is the feed (the duplicate rule and the shard applied), shared by the plan's
count, the dry run and the apply. ``RunWork`` is what ``Job`` hands ``engine.pipeline``: the
feed guarded against a changed input, the resolve step with before-images, the rows a stopped
feed never read, the key hint, and the run's part of the summary.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from batch.commands.incremental import StateSink
from batch.commands.reads import live_lookup
from batch.commands.sync import SyncWriter
from batch.engine.work import Resolve, Unreached, Work
from batch.errors import FatalError
from batch.inputs.datasets import dataset_parts
from batch.inputs.reader import iter_column, iter_rows
from batch.inputs.scan import KeyScan
from batch.models import RowResult, Status, UserUpdate
from batch.pace.controllers import RateController
from batch.pace.rate_plan import category_controller
from batch.plan.in_doubt import ReadFirst, diffing
from batch.plan.lookup import DENIED, Resolver
from batch.plan.mapping import Planner
from batch.plan.sync_resolve import SyncResolver
from batch.record.before_images import BeforeImages, Remembering, UndoLog, iter_records
from batch.record.guard import stop_on_change
from batch.record.journal import JournalHeader
from batch.record.summary import RunSummary
from batch.rowset import RowSet
from batch.view.logs import EventLog
from batch.view.messages import KeyHint

if TYPE_CHECKING:
    from batch.engine.sinks import Sink

#: Rows named per chunk of the unreached pass (the names of one chunk are held at a time).
UNREACHED_CHUNK = 1 << 16

#: ``run.Job``, which imports this module (typed loosely: no import back, no cycle).
Job = Any


def run_items(
    job: Job,
    scan: KeyScan,
    done: RowSet | frozenset[int],
    planner: Planner,
    *,
    stop: threading.Event | None = None,
) -> Iterator[UserUpdate | RowResult]:
    """Every row still to report, planned, with the duplicate rule applied. With ``stop``,
    the feed ends as soon as it is set: the rows not read are reported in bulk."""
    config = job.config
    only = frozenset(config.rows)
    sync = job.sync_setup if job.sync else None
    incremental = getattr(job, "incremental", None)  # --incremental: rows the state spares
    # A resume starts reading after its carried prefix (issue 22 item 4).
    after = carried_prefix(done, scan) if not only else 0
    rows = iter_rows(job.source, after=after, rows=scan.last_input_row)
    for row in job.watch.rows(rows, expected=scan.last_input_row):
        if stop is not None and stop.is_set():
            return
        if only and row.row not in only:
            continue
        if row.row in done:
            continue
        key = row.values.get(config.username_column, "")
        if job.shard is not None and not job.shard.owns(key):
            continue  # another shard's row: not in this shard's report at all
        if incremental is not None and row.row in incremental.unchanged:
            yield incremental.unchanged_result(row.row, key)
            continue
        item = planner.plan(row)
        if sync is not None:  # the row as a desired state: enabled, groups, AliasConflict
            item = sync.item(row, item)
        dup = scan.duplicate(key) if key else None
        if dup is not None and not (isinstance(item, RowResult) and item.status == Status.INVALID):
            item = duplicate(item, dup, last_wins=config.on_duplicate == "last")
        yield item
    if sync is not None and not (stop is not None and stop.is_set()):
        yield from sync.leaver_items(done)  # --disable-missing: after the input's rows


def carried_prefix(done: RowSet | frozenset[int], scan: KeyScan) -> int:
    """The last row P such that rows 1..P are all done (or another shard's)."""
    if not isinstance(done, RowSet) or not len(done):
        return 0
    for gaps in done.missing(scan.last_input_row, besides=scan.foreign):
        return int(gaps[0]) - 1
    return scan.last_input_row


def duplicate(
    item: UserUpdate | RowResult, dup: tuple[int, int], *, last_wins: bool
) -> RowResult | UserUpdate:
    copies, last = dup
    username, key = item.username, item.key
    if last_wins:
        if item.row == last:
            return item
        return RowResult(item.row, username, Status.SKIPPED, error_code="Superseded",
                         error_message=f"the same user's row {last} supersedes this one",
                         key=key)
    return RowResult(item.row, username, Status.INVALID, error_code="DuplicateKey",
                     error_message=f"the same user appears in {copies} rows (last: row "
                                   f"{last}); use --on-duplicate last to keep the last",
                     key=key)


class _HintSink:
    """``KeyHint`` sees every result (under the fan-out's lock: it is not thread-safe)."""

    def __init__(self, hint: KeyHint) -> None:
        self.hint = hint

    def on_result(self, result: RowResult) -> None:
        self.hint.add(result)

    def close(self, finished: bool) -> None:
        pass


class _BeforeImagesSink:
    """The before-images end with the apply: ``complete`` only when it finished."""

    def __init__(self, log: UndoLog) -> None:
        self.log = log

    def on_result(self, result: RowResult) -> None:
        pass

    def close(self, finished: bool) -> None:
        try:
            if finished:
                self.log.complete()
        finally:
            self.log.close()


class RunWork(Work):
    """A run's rows through the pipeline."""

    def __init__(self, job: Job, scan: KeyScan, header: JournalHeader,
                 undo_header: Mapping[str, Any]) -> None:
        self.job, self.scan, self.header, self.undo_header = job, scan, header, undo_header
        self.hint = KeyHint(job.config.key)
        self.undo_log: UndoLog | None = None
        self.journaled: RowSet | None = None  # a resume's finished rows (their lines carried)
        self.in_doubt = 0  # a resume: unfinished rows up to this one may have been sent
        self.read_first: ReadFirst | None = None
        self._resolve: Resolve | None = None
        self._created_names: frozenset[str] = frozenset()

    def writer(self) -> Any:
        job = self.job
        if not job.sync:
            return job.gateway
        types = {n: r.data_type for n, r in job.schema.rules.items()} if job.schema else {}
        return SyncWriter(job.gateway, invite=job.config.invite, created=self._created_names,
                          types=types)

    def controllers(self) -> dict[str, RateController]:
        """A sync's creates on their own lane, under UserCreation's quota."""
        job = self.job
        if not (job.sync and job.config.create_missing):
            return {}
        return {"UserCreation": category_controller(job.config, job.quotas, "UserCreation",
                                                    shards=job.shards)}

    def empty_rows(self) -> RowSet:
        return RowSet(self.scan.last_input_row)

    def sinks(self) -> list[Sink]:
        """Called once the journal is open (and the lookup): the before-images start here."""
        job, sinks = self.job, [_HintSink(self.hint)]
        self._resolve = job.resolver
        if self.in_doubt:  # read before writing again what an earlier attempt may have sent
            read = diffing(job.resolver) or self._live_resolver()
            if read is not None:
                self._resolve = self.read_first = ReadFirst(job.resolver, read, self.in_doubt)
        if job.records_undo and isinstance(job.lookup, Remembering) and self._resolve is not None:
            self.undo_log = UndoLog(job.files.before_images, self.undo_header,
                                    journaled=self.journaled)
            if self.undo_log.resumed and isinstance(job.resolver, SyncResolver):
                # Users an earlier attempt of this run created: a resumed row ends ``created``.
                created = {r.row: r.username for r in iter_records(self.undo_log.path)
                           if r.created}
                job.resolver.created_before = frozenset(created)
                self._created_names = frozenset(created.values())
            self._resolve = BeforeImages(self._resolve, job.lookup, self.undo_log)
            sinks.append(_BeforeImagesSink(self.undo_log))  # type: ignore[arg-type]
        if job.incremental is not None:  # the new state, once the apply finished
            self._resolve = job.incremental.resolve(self._resolve)
            sinks.append(StateSink(job.incremental))  # type: ignore[arg-type]
        return sinks  # type: ignore[return-value]

    def _live_resolver(self) -> Resolver | None:
        """A resume's rows in doubt, when nothing else reads the pool: each user read live
        and diffed (``plan.in_doubt``); the planner marked the verified flags already. None
        when the read is refused: they are written again, as before, said once."""
        job = self.job
        try:
            job.lookup = live_lookup(job, job.stop_event)
        except FatalError as exc:
            if exc.code not in DENIED:
                raise
            job.log.warning(f"warning: cognito-idp:AdminGetUser is refused ({exc.code}): the "
                            "rows that may have been in flight when the earlier attempt "
                            "stopped are written again without reading them first")
            return None
        job.lookup_mode = "live (rows in doubt)"
        types = {n: r.data_type for n, r in job.schema.rules.items()} if job.schema else {}
        return Resolver(job.lookup, job.config.key, True, False, types)

    def resolve(self) -> Resolve | None:
        return self._resolve

    def image(self, row: int) -> str:
        return self.undo_log.take(row) if self.undo_log is not None else ""

    def feed(
        self, reported: RowSet, stop: Callable[[str], None]
    ) -> Iterator[UserUpdate | RowResult]:
        job, scan = self.job, self.scan
        # A changed input stops the run; the rows not read yet are reported skipped.
        return stop_on_change(
            run_items(job, scan, reported, job.planner(), stop=job.pipeline.stop_event),
            job.watch, stop=stop, expected=scan.last_input_row, done=reported,
            only=job.config.rows, foreign=scan.foreign,
        )

    def unreached(self, reported: RowSet, reason: str) -> Iterator[np.ndarray | Unreached]:
        """Every row of the input with no result yet (never another shard's), each named:
        the input is read again, streamed, one chunk of names at a time. A changed input is
        not read again (its rows are no longer the run's): those rows go unnamed."""
        foreign, rows = self.scan.foreign, self.job.config.rows
        if rows:
            wanted = [r for r in sorted(set(rows))
                      if r not in reported and not (foreign is not None and r in foreign)]
            chunks: Iterator[np.ndarray] = iter([np.array(wanted, dtype=np.int64)] if wanted
                                                else [])
        else:
            chunks = reported.missing(self.scan.last_input_row, besides=foreign,
                                      chunk=UNREACHED_CHUNK)
        if self.job.watch.changed:
            yield from chunks
            return
        config = self.job.config
        as_key = config.key != "username"
        values = enumerate(iter_column(self.job.source, config.username_column), start=1)
        at, value = 0, ""
        for chunk in chunks:
            names: list[str] = []
            for row in chunk.tolist():
                while at < row:
                    at, value = next(values, (row, ""))
                names.append(value)
            blank = [""] * len(names)
            yield Unreached(chunk, blank if as_key else names, names if as_key else blank)

    def stopped_job(self) -> bool:
        return bool(self.job.watch.changed)

    def summary(self, summary: RunSummary) -> RunSummary:
        job, config = self.job, self.job.config
        return summary.replace(
            input=job.source.uri or str(job.source.path.resolve()),
            # A changed input is not the file this hash names: record none (retry refuses).
            input_sha256=None if job.watch.changed else self.header.input_sha256,
            input_parts=dataset_parts(job.source), shard=config.shard or None,
            client_metadata_keys=sorted(config.client_metadata),  # never its values
            read_calls=(job.lookup.reads if job.lookup is not None else 0)
            + (job.sync_setup.read_calls() if job.sync_setup is not None else 0)
            + (job.incremental.reads if job.incremental is not None else 0),
            lookup=job.lookup_mode,
            undo=None if self.undo_log is None else {
                **self.undo_log.stats(), "file": self.job._shown(self.undo_log.path)},
            hint=self.hint.text() or None,
            in_doubt=self.read_first.figures() if self.read_first is not None else None,
            incremental=job.incremental.summary() if job.incremental is not None else None,
        )

    def announce(self, log: EventLog, summary: RunSummary) -> None:
        if self.undo_log is not None and not self.job.config.quiet:
            shown = self.job._shown  # an S3 run's spool is removed a moment later
            undo_file = shown(self.undo_log.path)
            log.emit("undo", f"  undo: {undo_file} ({self.undo_log.records} "
                     f"before-images; cognito-batch undo {shown(self.job.files.report)})",
                     path=undo_file, records=self.undo_log.records)
        if self.hint.text():  # said even with --quiet: like a warning, it may save the next run
            log.warning(f"hint: {self.hint.text()}")
