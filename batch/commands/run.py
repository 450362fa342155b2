"""One run, start to end: read -> plan -> (confirm) -> apply -> report.

This is the library API the CLI is a thin shell over: ``run_job(config)`` returns the summary
and the exit code, and raises only ``BatchError`` subclasses for the CLI to turn into one line.
The plan's counts live in ``plan_summary``, the dry run in ``dry_run``, signal handling in
``signals`` and the exit codes in ``exit_codes``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from batch.cognito import CognitoGateway, ConnectionSettings, identifies_as_emulator
from batch.commands.dry_run import dry_run
from batch.config import JobConfig
from batch.engine.brake import Brake, FailureLimit
from batch.engine.exit_codes import (
    EXIT_FATAL,
    EXIT_OK,
    EXIT_ROWS,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    exit_code,
)
from batch.engine.runner import Runner, RunnerSettings, progress_figures
from batch.engine.signals import SignalStop
from batch.errors import CognitoError, FatalError, ResumeError, UsageError
from batch.inputs.datasets import dataset_parts
from batch.inputs.reader import InputSource, iter_column, iter_rows, open_input, read_header
from batch.inputs.scan import KeyScan
from batch.inputs.shard import Shard, scan_shard
from batch.models import Counters, JobResult, RowResult, Status, UserUpdate
from batch.pace.controllers import RateController
from batch.pace.pacer import Pacer, event_waiter
from batch.pace.quota import Quotas, default_quotas, read_quotas
from batch.pace.rate_plan import RatePlan, rate_controller, rate_label, rate_plan
from batch.pace.retrying import Retrier, RetryPolicy
from batch.plan.lookup import (
    LiveLookup,
    Lookup,
    PacedCall,
    PoolSnapshot,
    Resolver,
    choose,
    remove_stale_snapshots,
    snapshot_prefix,
)
from batch.plan.mapping import ColumnMapping, Planner, check_columns, map_columns
from batch.plan.schema import PoolSchema
from batch.plan.summary import PlanSummary, fill_plan
from batch.record.before_images import BeforeImages, Remembering, UndoLog, undo_path
from batch.record.guard import (
    InputWatch,
    check_dry_run_target,
    check_journal,
    check_outputs,
    run_outputs,
    stop_on_change,
)
from batch.record.journal import VERSION, Journal, JournalHeader, JournalState, journal_path
from batch.record.lock import RunLock, lock_path
from batch.record.report import (
    ReportWriter,
    format_summary,
    open_report,
    summary_path,
    write_summary,
)
from batch.record.timeline import Reading, Recorder, open_timeline, timeline_path
from batch.rowset import RowSet
from batch.store.files import private_dir, remove_stale_temporaries
from batch.store.storage import input_identity, is_s3
from batch.view.logs import EventLog, version
from batch.view.messages import KeyHint
from batch.view.progress import Progress

if TYPE_CHECKING:
    from batch.remote.checkpoint import Checkpoint, S3Report

__all__ = [
    "EXIT_FATAL", "EXIT_OK", "EXIT_ROWS", "EXIT_SIGINT", "EXIT_SIGTERM",
    "Confirm", "Job", "JobResult", "PlanSummary", "needs_confirmation", "run_job",
]  # fmt: skip

Confirm = Callable[[PlanSummary], bool]


class Job:
    """Holds one run's parts; ``run()`` does it."""

    def __init__(
        self,
        config: JobConfig,
        *,
        gateway: CognitoGateway | None = None,
        confirm: Confirm | None = None,
        handle_signals: bool = False,
        stream: Any = None,
    ) -> None:
        self.config = config
        self.stream = stream or sys.stderr
        self.log = EventLog(self.stream, format=config.log_format)
        self.shard = Shard.parse(config.shard) if config.shard else None
        self.confirm = confirm
        self.handle_signals = handle_signals
        self.source: InputSource = open_input(
            config.input, format=config.format or None, delimiter=config.delimiter,
            profile=config.profile or None,
        )
        # Before the header is read: the run refuses an input that changes from here on.
        self.watch = (
            InputWatch(self.source.path) if not self.source.uri
            else InputWatch(None, identity=lambda: input_identity(self.source))
        )  # fmt: skip
        self.header = read_header(self.source)
        self.mapping = ColumnMapping(
            username_column=config.username_column,
            renames=config.columns,
            exclude=frozenset(config.exclude),
            empty="delete" if config.empty == "delete" else "leave",
            key=config.key,  # type: ignore[arg-type]
        )
        self.columns = map_columns(self.header, self.mapping, path=self.source.name)
        self.gateway = gateway or CognitoGateway(
            ConnectionSettings(
                region=config.region or None,
                profile=config.profile or None,
                endpoint_url=config.endpoint_url or None,
                max_connections=config.workers + 4,
            )
        )
        self.schema: PoolSchema | None = None
        self.pool_users: int | None = None
        self.lookup: Lookup | None = None
        self.resolver: Resolver | None = None
        self.lookup_mode = ""
        self.stop_event = threading.Event()
        self.signals = SignalStop(self.stream, on_stop=self._stop, sync=self._sync,
                                  say=self._say if self.log.json else None)  # fmt: skip
        self.runner: Runner | None = None
        self.journal: Journal | None = None
        self.undo_log: UndoLog | None = None
        self.quotas: Quotas = default_quotas("not read")
        # A report in S3: the run works in a local spool; the checkpoint copies it to S3.
        self.s3: S3Report | None = None
        self.checkpoint: Checkpoint | None = None

    # -- the quota ---------------------------------------------------------------------------

    def read_quotas(self) -> None:
        """The enforced rates of the categories this run calls (GetProvisionedLimit)."""
        categories = ["UserUpdate"]
        if self.needs_lookup:
            categories += ["UserRead", "UserList"]
        self.quotas = read_quotas(self.gateway, categories)

    def rate_plan(self) -> RatePlan:
        """(what the rate means, the most the job will send, its share of the UserUpdate
        quota): the ceiling the controller never goes above (``rate_plan.py``)."""
        return rate_plan(self.config, self.quotas, shards=self.shards)

    @property
    def shards(self) -> int:
        return self.shard.count if self.shard is not None else 1

    # -- phases ------------------------------------------------------------------------------

    def load_schema(self) -> None:
        answer: list[dict[str, Any]] = []
        retrier = Retrier(RetryPolicy(max_attempts=5), wait=event_waiter(self.stop_event))
        outcome = retrier.run(
            lambda: answer.append(self.gateway.describe_user_pool(self.config.user_pool_id))
        )
        try:
            if outcome.error is not None:
                raise outcome.error
            pool = answer[0]
        except CognitoError as exc:
            if isinstance(exc, FatalError) or exc.code == "ResourceNotFoundException":
                raise UsageError(
                    f"user pool {self.config.user_pool_id}: {exc.code}: {exc.message}"
                ) from None
            raise
        self.schema = PoolSchema.from_describe(pool)
        estimate = pool.get("EstimatedNumberOfUsers")
        self.pool_users = int(estimate) if isinstance(estimate, int) else None
        if self.config.schema_check:
            check_columns(self.columns, self.schema, path=self.source.name)

    def planner(self) -> Planner:
        return Planner(
            self.columns,
            self.mapping,
            self.schema if self.config.schema_check else None,
            # With a resolver, verified flags are added after the diff, to what still changes.
            mark_verified=self.config.mark_verified and not self.needs_lookup,
        )

    @property
    def needs_lookup(self) -> bool:
        return self.config.skip_unchanged or self.config.key != "username"

    @functools.cached_property
    def records_undo(self) -> bool:
        """Before-images are taken (``undo.py``); they need the users read, like a diff. By
        default for a real pool, not for the project's emulator (tests, demo, benchmarks)."""
        if self.config.dry_run:
            return False
        if self.config.undo is not None:
            return self.config.undo
        url = self.config.endpoint_url
        return not (url and identifies_as_emulator(url))

    def open_lookup(self, scan: KeyScan, stop: threading.Event) -> None:
        """Read the input's users (snapshot or live, by cost) for keys and the diff."""
        config = self.config
        wait = event_waiter(stop)
        retrier = Retrier(RetryPolicy(max_attempts=config.max_attempts), wait=wait)
        how = choose(input_rows=scan.rows, pool_users=self.pool_users, key=config.key,
                     list_rate=config.list_rate, get_rate=config.get_rate)  # fmt: skip
        writes = (config.max_rate or math.inf) if config.auto_rate else config.fixed_rate
        if not self.needs_lookup and writes <= config.get_rate:
            # Read only for before-images: every row is written anyway, and per-row reads at
            # the read quota (~100/s) keep ahead of the writes (25/s) with no wait up front.
            how = "live"
        if how == "snapshot":
            paced = PacedCall(Pacer(config.list_rate), retrier, wait)
            report = config.report_path()
            snapshot = PoolSnapshot(report.parent, prefix=snapshot_prefix(report))
            if not config.quiet:
                self.log.emit("read_users", f"cognito-batch: reading the pool's users "
                              f"(ListUsers at {config.list_rate:g}/s) to compare...",
                              mode="snapshot", list_rate=config.list_rate)  # fmt: skip
            try:
                snapshot.fill(self.gateway, config.user_pool_id, key=config.key, wanted=scan,
                              attributes=set(self.columns.values()), paced=paced)  # fmt: skip
            except BaseException:
                snapshot.close()
                raise
            self.lookup = snapshot
        else:
            rate = config.get_rate if config.key == "username" else config.list_rate
            self.lookup = LiveLookup(self.gateway, config.user_pool_id, key=config.key,
                                     paced=PacedCall(Pacer(rate), retrier, wait))  # fmt: skip
        self.lookup_mode = how
        self.lookup = Remembering(self.lookup)  # the before-image reuses the resolver's read
        types = {n: r.data_type for n, r in self.schema.rules.items()} if self.schema else {}
        self.resolver = Resolver(
            self.lookup, config.key, config.skip_unchanged, config.mark_verified, types
        )

    def items(
        self,
        scan: KeyScan,
        done: RowSet | frozenset[int],
        planner: Planner,
        *,
        stop: threading.Event | None = None,
    ) -> Iterator[UserUpdate | RowResult]:
        """Every row still to report, planned, with the duplicate rule applied. With ``stop``,
        the feed ends as soon as it is set: the rows not read are reported in bulk."""
        only = frozenset(self.config.rows)
        for row in self.watch.rows(iter_rows(self.source), expected=scan.last_input_row):
            if stop is not None and stop.is_set():
                return
            if only and row.row not in only:
                continue
            if row.row in done:
                continue
            key = row.values.get(self.config.username_column, "")
            if self.shard is not None and not self.shard.owns(key):
                continue  # another shard's row: not in this shard's report at all
            item = planner.plan(row)
            dup = scan.duplicate(key) if key else None
            if dup is not None and not (
                isinstance(item, RowResult) and item.status == Status.INVALID
            ):
                item = self._duplicate(item, dup)
            yield item

    def _duplicate(
        self, item: UserUpdate | RowResult, dup: tuple[int, int]
    ) -> RowResult | UserUpdate:
        copies, last = dup
        username, key = item.username, item.key
        if self.config.on_duplicate == "last":
            if item.row == last:
                return item
            return RowResult(item.row, username, Status.SKIPPED, error_code="Superseded",
                             error_message=f"the same user's row {last} supersedes this one",
                             key=key)  # fmt: skip
        return RowResult(item.row, username, Status.INVALID, error_code="DuplicateKey",
                         error_message=f"the same user appears in {copies} rows (last: row "
                                       f"{last}); use --on-duplicate last to keep the last",
                         key=key)  # fmt: skip

    def plan_summary(self, scan: KeyScan, done: RowSet | frozenset[int]) -> PlanSummary:
        """A full planning pass: counts by planned outcome, attributes, messages."""
        summary = PlanSummary(
            pool_id=self.config.user_pool_id,
            pool_name=self.schema.pool_name if self.schema else "",
            region=self.gateway.region,
            endpoint=self.config.endpoint_url,
            rows=len(self.config.rows) if self.config.rows else scan.rows,
            resumed=len(done),
        )  # fmt: skip
        self._plan_rate(summary)
        for item in self.items(scan, done, self.planner()):
            summary.tally(item, self.schema)
        return summary

    def _plan_rate(self, summary: PlanSummary) -> None:
        fill_plan(summary, self.config, self.quotas, shards=self.shards)

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> JobResult:
        """Refuse outputs that would overwrite the input, take the report's lock, then run."""
        if is_s3(self.config.report):
            return self._run_with_s3_report()
        return self._run_locked()

    def _run_locked(self) -> JobResult:
        report = self.config.report_path()
        # Before anything is written; an S3 input cannot be a local output.
        check_outputs(None if self.source.uri else self.source.path, run_outputs(report))
        if self.config.dry_run:
            check_dry_run_target(report)
        private_dir(report.parent)
        with RunLock(lock_path(report)):
            remove_stale_snapshots(report)  # left by a run killed while it read the pool
            return self._run()

    def _run_with_s3_report(self) -> JobResult:
        """The run in a private local spool, its journal checkpointed to S3 as it goes, its
        report, summary and journal put beside the S3 report at the end (``checkpoint.py``)."""
        from batch.remote.checkpoint import Checkpoint, S3Report

        config = self.config
        if config.dry_run:
            raise UsageError("--dry-run with an s3:// report: give a local --report for the "
                             "planned report")  # fmt: skip
        s3 = S3Report(config.report, profile=config.profile or None)
        checkpoint: Checkpoint | None = None
        try:
            self.config = dataclasses.replace(config, spool=str(s3.spool))
            lease = s3.lease(ttl=config.lease_seconds)
            lease.acquire()  # the first write to the prefix: AccessDenied stops the run here
            try:
                self.checkpoint = checkpoint = Checkpoint(
                    s3.store, s3.segments, s3.journal, lease=lease,
                    interval=config.checkpoint_seconds, on_lost=self._stop,
                    warn=self.log.warning,
                )  # fmt: skip
                checkpoint.start()  # renewing the lease from now on
                s3.restore()
                self.s3 = s3
                try:
                    result = self._run_locked()
                except ResumeError as exc:
                    raise ResumeError(str(exc).replace(str(s3.journal), str(s3.segments))) from None
                except BaseException:
                    checkpoint.close()
                    with contextlib.suppress(Exception):  # what is journaled reaches S3
                        checkpoint.upload()
                    raise
                s3.publish(checkpoint)
                return result
            finally:
                if checkpoint is not None:
                    checkpoint.close()
                with contextlib.suppress(Exception):  # a lease that expires is released too
                    lease.release()
        finally:
            self.config = config
            s3.remove_spool()

    def _shown(self, path: Path) -> str:
        """A file of the run as the operator knows it: beside an S3 report, the object."""
        return str(self.s3.beside(path)) if self.s3 is not None else str(path)

    def _run(self) -> JobResult:
        config = self.config
        started = time.monotonic()
        if config.html and not config.dry_run:  # before any call: a missing extra costs nothing
            from batch.view.html_report import require_matplotlib

            require_matplotlib()
        if not config.quiet:
            self.log.emit("start", version=version(), input=self.source.name,
                          report=self._shown(config.report_path()), pool_id=config.user_pool_id,
                          region=self.gateway.region, dry_run=config.dry_run,
                          rate=config.rate, workers=config.workers,
                          shard=config.shard or None)  # fmt: skip
        # The whole input is read once before the first call: a file that cannot be read
        # stops the job before it has touched the pool (or even the network).
        scan = scan_shard(lambda: iter_column(self.source, config.username_column), self.shard)
        report = config.report_path()
        jpath = journal_path(report)
        header = JournalHeader(self.watch.hashed(), config.fingerprint())
        # The journal before the pool: a run that cannot resume is refused, and a lost report
        # rebuilt, without a network call.
        state = None if config.dry_run else self._resume_state(jpath, header)
        if state is not None and state.complete:
            if state.version == VERSION and not (
                report.is_file() and summary_path(report).is_file()
            ):
                return self._rebuild(state, report, jpath, header, started)
            state = None  # a finished run's journal is simply replaced by this one
        self.load_schema()
        self.read_quotas()
        done = state.finished if state is not None else RowSet(scan.last_input_row)
        if config.dry_run or self.confirm is not None:
            plan = self.plan_summary(scan, done)
            plan.upper_bound = self.needs_lookup and not config.dry_run
        else:  # unattended: no one reads a plan, so skip the extra pass over the input
            plan = PlanSummary(
                pool_id=config.user_pool_id, pool_name="", region=self.gateway.region,
                endpoint=config.endpoint_url, rows=len(config.rows) or scan.rows,
            )  # fmt: skip
            self._plan_rate(plan)
        if not config.quiet and not config.dry_run:
            self._log_plan(plan)
        if config.dry_run:
            if self.needs_lookup:
                self.open_lookup(scan, self.stop_event)
            try:
                result = dry_run(
                    self.items(scan, RowSet(), self.planner()), plan, report,
                    resolve=self.resolver, schema=self.schema,
                    stream=io.StringIO() if self.log.json else self.stream,
                )  # fmt: skip
                if self.log.json and not config.quiet:
                    self._log_plan(plan)
                    self.log.summary(result.summary, None, exit_code=result.exit_code)
                return result
            finally:
                if self.lookup is not None:
                    self.lookup.close()
        if plan.to_apply and self.confirm is not None and not self.confirm(plan):
            raise UsageError("not confirmed: nothing was written")

        try:
            with self.signals if self.handle_signals else contextlib.nullcontext():
                if self.needs_lookup or self.records_undo:
                    self.open_lookup(scan, self.stop_event)
                return self._apply(scan, plan, report, jpath, header, state, started)
        finally:
            if self.lookup is not None:
                self.lookup.close()

    def _apply(
        self,
        scan: KeyScan,
        plan: PlanSummary,
        report: Path,
        jpath: Path,
        header: JournalHeader,
        state: JournalState | None,
        started: float,
    ) -> JobResult:
        config = self.config
        controller = self._controller()
        total = plan.rows

        live = progress_figures(controller, lambda: self.runner, self.quotas.enforced)
        progress = Progress(total, quiet=config.quiet, stream=self.stream, log=self.log,
                            extra=live)  # fmt: skip
        if not config.quiet:
            for warning in plan.warnings:
                self.log.warning(f"warning: {warning}")
        # Every row reported so far: the carried ones (the journal's finished rows), then each
        # result of this run. A bitmap, so a resume of millions of rows stays flat in memory.
        reported = state.finished if state is not None else RowSet(scan.last_input_row)
        resumed = len(reported)
        for path in (report, jpath, summary_path(report)):  # a killed run's temporaries
            remove_stale_temporaries(path)
        tpath = timeline_path(report)
        timeline = open_timeline(tpath, header.as_record(), rows=plan.rows,
                                 resume=state is not None)  # fmt: skip
        writer = open_report(report)
        try:
            # The carry streams from the old journal into the compacted one and the report in
            # one pass; the old journal stays in place until the new one is whole.
            carry = self._carry(state, writer, progress) if state is not None else None
            self.journal = journal = Journal(jpath, header, carry=carry)
            if self.checkpoint is not None and self.s3 is not None:
                self.checkpoint.begin(resumed=state is not None,
                                      restored_segments=self.s3.restored_segments,
                                      clear=self.s3.clear)  # fmt: skip
        except _CarryStopped:
            return self._stopped_in_carry(writer, report, jpath)
        except BaseException:
            writer.close()
            raise
        lock = threading.Lock()
        hint = KeyHint(config.key)
        brake = Brake(FailureLimit.parse(config.max_failures))
        resolve: Callable[[UserUpdate], UserUpdate | RowResult] | None = self.resolver
        if self.records_undo and isinstance(self.lookup, Remembering) and resolve is not None:
            self.undo_log = UndoLog(undo_path(report), self._undo_header(header))
            resolve = BeforeImages(resolve, self.lookup, self.undo_log)

        def on_result(result: RowResult) -> None:
            with lock:
                journal.write(result)
                writer.write(result)
                reported.add(result.row)
                hint.add(result)
            progress.add(result)
            if brake.add(result):
                runner.stop(brake.reason)

        self.runner = runner = Runner(
            self.gateway,  # type: ignore[arg-type]
            RunnerSettings(
                user_pool_id=config.user_pool_id,
                workers=config.workers,
                retry=RetryPolicy(max_attempts=config.max_attempts,
                                  max_row_seconds=config.max_row_seconds),
                client_metadata=config.client_metadata,
                per_user_rate=config.per_user_rate,
                give_up_after=config.give_up_after,
            ),
            controller=controller,
            on_result=on_result,
            resolve=resolve,
            stop=self.stop_event,
            on_call=timeline.record_call,
            on_note=progress.note,
        )  # fmt: skip
        recorder = Recorder(timeline, lambda: Reading(
            sent=runner.stats.calls, throttled=runner.stats.throttles, faults=runner.stats.faults,
            rate=controller.rate, in_flight=runner.stats.in_flight,
            statuses=dict(progress.counters.by_status)), tpath)  # fmt: skip
        recorder.start(resumed_rows=resumed)
        if self.stop_event.is_set():
            runner.stop(self.signals.reason or "interrupted")
        unreached = 0
        try:
            try:
                # A changed input stops the run; the rows not read yet are reported skipped.
                feed = stop_on_change(
                    self.items(scan, reported, self.planner(), stop=self.stop_event),
                    self.watch, stop=self._stop, expected=scan.last_input_row,
                    done=reported, only=config.rows, foreign=scan.foreign,
                )  # fmt: skip
                runner.run(feed)
                # Once stopping, the feed ends: the rows it never read are reported here, in
                # bulk, and not journaled (nothing was done to them), so a resume does them.
                with lock:
                    unreached = self._report_unreached(
                        writer, reported, scan.last_input_row, runner.stop_reason or "not reached",
                        foreign=scan.foreign,
                    )  # fmt: skip
                progress.add_counts(Counters({Status.SKIPPED.value: unreached},
                                             {"Stopped": unreached} if unreached else {}))
            finally:
                progress.close()
                writer.close()  # durable (fsync'd) before the summary and the marker
            finished = not runner.stopping and not unreached
            recorder.close(complete=finished)
            if self.undo_log is not None:
                if finished:
                    self.undo_log.complete()
                self.undo_log.close()
            counts = progress.counters
            summary = self._summary(counts, total, report, jpath, header, resumed, started)
            summary.update(self._run_stats(runner, controller))
            summary.update({
                "rate_ceiling": round(plan.rate, 2),
                "quota": {**self.quotas.public(), "share": round(plan.quota_share, 3)},
                "window_capped": runner.cap_note,
                "timeline": self._shown(tpath),
                "max_failures": {"limit": brake.limit.describe(), "failures": brake.failures,
                                 "decided": brake.decided, "tripped": brake.tripped},
                "undo": self.undo_log.stats() if self.undo_log is not None else None,
            })  # fmt: skip
            if hint.text():
                summary["hint"] = hint.text()
            stopped_job = runner.fatal is not None or bool(self.watch.changed) or brake.tripped
            code = exit_code(summary["counts"], fatal=stopped_job,
                             signal_code=self.signals.code)  # fmt: skip
            summary["exit_code"] = code
            write_summary(report, summary)
            # Last: a finished journal is never resumed, so it may say so only once the report
            # and summary it vouches for are on disk.
            if finished:
                journal.complete()
        finally:
            journal.close()
        if not config.quiet:
            self.log.summary(summary, format_summary(summary), exit_code=code)
            if self.undo_log is not None:
                self.log.emit("undo", f"  undo: {self.undo_log.path} ({self.undo_log.records} "
                              f"before-images; cognito-batch undo {report})",
                              path=str(self.undo_log.path),
                              records=self.undo_log.records)  # fmt: skip
        if hint.text():  # said even with --quiet: like a warning, it may save the next run
            self.log.warning(f"hint: {hint.text()}")
        if config.html:
            from batch.view.html_report import write_html

            try:  # the run is done and recorded: a page that cannot be drawn changes nothing
                html = write_html(report, Path(config.html))
            except Exception as exc:  # noqa: BLE001 - reported on one line, not raised
                self.log.warning(f"warning: no HTML report ({exc}); "
                                 f"try: cognito-batch report {report} --html {config.html}")
            else:
                if not config.quiet:
                    self.log.emit("html_report", f"  html report: {html}", path=str(html))
        return JobResult(code, summary, report)

    def _undo_header(self, header: JournalHeader) -> dict[str, Any]:
        config = self.config
        return {"pool": config.user_pool_id, "region": self.gateway.region,
                "endpoint_url": config.endpoint_url, "input_sha256": header.input_sha256,
                "settings": header.settings, "report": str(config.report_path())}  # fmt: skip

    def _carry(
        self, state: JournalState, writer: ReportWriter, progress: Progress
    ) -> Iterator[bytes]:
        """The finished rows of the old journal, each written to the report on its way into
        the compacted journal (the line as it is); counted in bulk at the end. A signal stops
        it: copying millions of rows must not hold a SIGTERM past the scheduler's SIGKILL."""
        counts = Counters()
        by_status, by_error = counts.by_status, counts.by_error
        stop = self.stop_event
        for n, (line, cells) in enumerate(state.carried()):
            if not n & 4095 and stop.is_set():
                raise _CarryStopped
            writer.write_cells(cells)
            by_status[cells[3]] = by_status.get(cells[3], 0) + 1
            if cells[5]:
                by_error[cells[5]] = by_error.get(cells[5], 0) + 1
            yield line
        progress.add_counts(counts)

    def _stopped_in_carry(self, writer: ReportWriter, report: Path, jpath: Path) -> JobResult:
        """A signal during the carry: the old journal stands untouched (the compacted one was
        never renamed over it) and the half-copied report is removed, so nothing claims to be
        the run's report; the same command resumes and writes it whole."""
        writer.close()
        report.unlink(missing_ok=True)
        reason = self.signals.reason or "interrupted"
        self.stream.write(f"cognito-batch: {reason} while resuming; {jpath} is unchanged: "
                          "run the same command again to resume\n")  # fmt: skip
        summary: dict[str, Any] = {"stopped": reason, "report": str(report),
                                   "journal": str(jpath)}  # fmt: skip
        return JobResult(self.signals.code or EXIT_SIGTERM, summary, report)

    def _report_unreached(
        self, writer: ReportWriter, reported: RowSet, last: int, reason: str, *,
        foreign: RowSet | None = None,
    ) -> int:  # fmt: skip
        """Report ``skipped`` every row of the input that has no result yet (``foreign``:
        another shard's rows, never this run's to report)."""
        n = 0
        if self.config.rows:
            wanted = [r for r in sorted(set(self.config.rows))
                      if r not in reported and not (foreign is not None and r in foreign)]
            chunks: Iterator[np.ndarray] = iter([np.array(wanted, dtype=np.int64)] if wanted
                                                else [])  # fmt: skip
        else:
            chunks = reported.missing(last, besides=foreign)
        for rows in chunks:
            writer.write_skipped(rows, "Stopped", reason)
            n += int(rows.size)
        return n

    def _summary(
        self, counts: Counters, total: int, report: Path, jpath: Path, header: JournalHeader,
        resumed: int, started: float,
    ) -> dict[str, Any]:  # fmt: skip
        """The summary's parts that do not come from the runner."""
        config = self.config
        duration = time.monotonic() - started
        updated = counts.by_status.get("updated", 0)
        return {
            "rows": total,
            "counts": {s.value: counts.by_status.get(s.value, 0) for s in Status},
            "errors": dict(counts.by_error),
            "calls": 0,
            "throttles": 0,
            "faults": 0,
            "duration_s": round(duration, 3),
            "achieved_rate": round(updated / duration, 2) if duration > 0 else 0.0,
            "rate": self._rate_label(),
            "stopped": "",
            "report": self._shown(report),
            "journal": self._shown(jpath),
            "input": self.source.uri or str(self.source.path.resolve()),
            # A changed input is not the file this hash names: record none (retry refuses).
            "input_sha256": None if self.watch.changed else header.input_sha256,
            "input_parts": dataset_parts(self.source),
            "shard": config.shard or None,
            "settings": config.public(),
            "client_metadata_keys": sorted(config.client_metadata),  # never its values
            "resumed_rows": resumed,
            "read_calls": self.lookup.reads if self.lookup is not None else 0,
            "lookup": self.lookup_mode,
            "pool": {"id": config.user_pool_id, "region": self.gateway.region},
        }

    @staticmethod
    def _run_stats(runner: Runner, controller: RateController) -> dict[str, Any]:
        return {
            "calls": runner.stats.calls,
            "throttles": runner.stats.throttles,
            "faults": runner.stats.faults,
            "rate_final": round(controller.rate, 2),
            "rate_low": round(controller.history.low, 2),
            "rate_high": round(controller.history.high, 2),
            "concurrency": {"final": runner.window(), "low": runner.climber.low,
                            "high": runner.climber.high},  # fmt: skip
            "stopped": runner.stop_reason,
        }

    def _rebuild(
        self, state: JournalState, report: Path, jpath: Path, header: JournalHeader,
        started: float,
    ) -> JobResult:  # fmt: skip
        """A finished run whose report or summary is gone: write them again from its journal,
        calling nothing (every row has its result there)."""
        counts = Counters()
        writer = open_report(report)
        try:
            for result in state.records():
                writer.write(result)
                counts.add(result)
        finally:
            writer.close()
        summary = self._summary(counts, sum(counts.by_status.values()), report, jpath, header,
                                0, started)  # fmt: skip
        summary["rebuilt_from_journal"] = True
        write_summary(report, summary)
        if not self.config.quiet:
            self.stream.write(
                f"cognito-batch: {jpath}: this run had finished; its report was missing and "
                "is rebuilt from the journal (no call made)\n" + format_summary(summary) + "\n"
            )
        return JobResult(exit_code(summary["counts"], fatal=False, signal_code=0), summary, report)

    def _rate_label(self) -> str | float:
        return rate_label(self.config)

    def _controller(self) -> RateController:
        return rate_controller(self.config, self.quotas, self.rate_plan().ceiling)

    def _stop(self, reason: str) -> None:
        """A signal asks the run to stop: the runner winds down, waiting reads wake."""
        if self.runner is not None:
            self.runner.stop(reason)
        self.stop_event.set()

    def _say(self, text: str) -> None:
        self.log.warning(text.strip().removeprefix("cognito-batch: "), signal=True)

    def _log_plan(self, plan: PlanSummary) -> None:
        self.log.emit("plan", rows=plan.rows, to_apply=plan.to_apply, resumed=plan.resumed,
                      counts=plan.by_status, attributes=plan.attributes, messages=plan.messages,
                      pending_verification=plan.pending_verification,
                      estimated_seconds=round(plan.estimated_seconds, 1), rate=plan.rate,
                      counted=bool(plan.by_status), upper_bound=plan.upper_bound)  # fmt: skip

    def _sync(self) -> None:
        if self.journal is not None:
            self.journal.sync()

    def _resume_state(self, jpath: Path, header: JournalHeader) -> JournalState | None:
        """The journal an earlier run of this report left (None: none, or ``--fresh``). An
        unfinished one must be of this input and settings; a finished one is returned as it
        is (replaced by this run, or rebuilt into a missing report when it matches). A
        damaged one is refused in one line (``guard.check_journal``)."""
        state = None if self.config.fresh else check_journal(jpath)
        if state is None:
            return None
        if state.complete:
            return state if state.header == header else None
        if state.header != header:
            what = (
                "a different input file"
                if state.header.input_sha256 != header.input_sha256
                else "different settings"
            )
            raise ResumeError(
                f"{jpath}: an unfinished run of {what} is recorded here; rerun it with the "
                "same input and settings to finish it, or pass --fresh to discard it"
            )
        return state


class _CarryStopped(Exception):
    """A signal arrived while a resume copied the finished rows."""


def run_job(config: JobConfig, **kwargs: Any) -> JobResult:
    """Run one job. See ``Job`` for the keyword arguments."""
    return Job(config, **kwargs).run()


def needs_confirmation(
    config: JobConfig, *, is_emulator: Callable[[str], bool] = identifies_as_emulator
) -> bool:
    """Writing to a real pool asks first, unless told not to. Only an endpoint that answers
    as this project's emulator is known not to be one (asked last: it is a network call)."""
    if not config.confirm or config.dry_run:
        return False
    return not (config.endpoint_url and is_emulator(config.endpoint_url))
