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
from batch.engine.work import Resolve, Work
from batch.inputs.datasets import dataset_parts
from batch.inputs.reader import iter_rows
from batch.inputs.scan import KeyScan
from batch.models import RowResult, Status, UserUpdate
from batch.plan.mapping import Planner
from batch.record.before_images import BeforeImages, Remembering, UndoLog
from batch.record.guard import stop_on_change
from batch.record.journal import JournalHeader
from batch.record.summary import RunSummary
from batch.rowset import RowSet
from batch.view.logs import EventLog
from batch.view.messages import KeyHint

if TYPE_CHECKING:
    from batch.engine.sinks import Sink

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
        dup = scan.duplicate(key) if key else None
        if dup is not None and not (isinstance(item, RowResult) and item.status == Status.INVALID):
            item = duplicate(item, dup, last_wins=config.on_duplicate == "last")
        yield item


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
                         key=key)  # fmt: skip
    return RowResult(item.row, username, Status.INVALID, error_code="DuplicateKey",
                     error_message=f"the same user appears in {copies} rows (last: row "
                                   f"{last}); use --on-duplicate last to keep the last",
                     key=key)  # fmt: skip


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
                 undo_header: Mapping[str, Any]) -> None:  # fmt: skip
        self.job, self.scan, self.header, self.undo_header = job, scan, header, undo_header
        self.hint = KeyHint(job.config.key)
        self.undo_log: UndoLog | None = None
        self._resolve: Resolve | None = None

    def writer(self) -> Any:
        return self.job.gateway

    def empty_rows(self) -> RowSet:
        return RowSet(self.scan.last_input_row)

    def sinks(self) -> list[Sink]:
        """Called once the journal is open (and the lookup): the before-images start here."""
        job, sinks = self.job, [_HintSink(self.hint)]
        self._resolve = job.resolver
        if job.records_undo and isinstance(job.lookup, Remembering) and self._resolve is not None:
            self.undo_log = UndoLog(job.files.before_images, self.undo_header)
            self._resolve = BeforeImages(self._resolve, job.lookup, self.undo_log)
            sinks.append(_BeforeImagesSink(self.undo_log))  # type: ignore[arg-type]
        if job.incremental is not None:  # the new state, once the apply finished
            self._resolve = job.incremental.resolve(self._resolve)
            sinks.append(StateSink(job.incremental))  # type: ignore[arg-type]
        return sinks  # type: ignore[return-value]

    def resolve(self) -> Resolve | None:
        return self._resolve

    def feed(
        self, reported: RowSet, stop: Callable[[str], None]
    ) -> Iterator[UserUpdate | RowResult]:
        job, scan = self.job, self.scan
        # A changed input stops the run; the rows not read yet are reported skipped.
        return stop_on_change(
            run_items(job, scan, reported, job.planner(), stop=job.pipeline.stop_event),
            job.watch, stop=stop, expected=scan.last_input_row, done=reported,
            only=job.config.rows, foreign=scan.foreign,
        )  # fmt: skip

    def unreached(self, reported: RowSet, reason: str) -> Iterator[np.ndarray]:
        """Every row of the input with no result yet (never another shard's)."""
        foreign, rows = self.scan.foreign, self.job.config.rows
        if not rows:
            yield from reported.missing(self.scan.last_input_row, besides=foreign)
            return
        wanted = [r for r in sorted(set(rows))
                  if r not in reported and not (foreign is not None and r in foreign)]
        if wanted:
            yield np.array(wanted, dtype=np.int64)

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
            + (job.incremental.reads if job.incremental is not None else 0),
            lookup=job.lookup_mode,
            undo=None if self.undo_log is None else {
                **self.undo_log.stats(), "file": self.job._shown(self.undo_log.path)},
            hint=self.hint.text() or None,
            incremental=job.incremental.summary() if job.incremental is not None else None,
        )  # fmt: skip

    def announce(self, log: EventLog, summary: RunSummary) -> None:
        if self.undo_log is not None and not self.job.config.quiet:
            shown = self.job._shown  # an S3 run's spool is removed a moment later
            undo_file = shown(self.undo_log.path)
            log.emit("undo", f"  undo: {undo_file} ({self.undo_log.records} "
                     f"before-images; cognito-batch undo {shown(self.job.files.report)})",
                     path=undo_file, records=self.undo_log.records)  # fmt: skip
        if self.hint.text():  # said even with --quiet: like a warning, it may save the next run
            log.warning(f"hint: {self.hint.text()}")
