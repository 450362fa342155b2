"""One run, start to end: read -> plan -> (confirm) -> apply -> report.

This is the library API the CLI is a thin shell over: ``run_job(config)`` returns the summary
and the exit code, and raises only ``BatchError`` subclasses for the CLI to turn into one line.
The plan's counts live in ``plan_summary``, the dry run in ``dry_run``, signal handling in
``signals`` and the exit codes in ``exit_codes``.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from batch.cognito import CognitoGateway, ConnectionSettings, is_local_endpoint
from batch.config import JobConfig
from batch.dry_run import dry_run
from batch.errors import CognitoError, FatalError, ResumeError, UsageError
from batch.exit_codes import EXIT_FATAL, EXIT_OK, EXIT_ROWS, EXIT_SIGINT, EXIT_SIGTERM, exit_code
from batch.files import remove_stale_temporaries
from batch.journal import (
    VERSION,
    Journal,
    JournalHeader,
    JournalState,
    file_sha256,
    journal_path,
    read_journal,
)
from batch.models import Counters, JobResult, RowResult, Status, UserUpdate
from batch.plan import ColumnMapping, Planner, check_columns, map_columns
from batch.plan_summary import PlanSummary
from batch.progress import Progress
from batch.ratelimit import (
    AimdRate,
    CubicRate,
    FixedRate,
    MeasuredRate,
    Pacer,
    RateController,
    event_waiter,
)
from batch.reader import InputSource, iter_column, iter_rows, open_input, read_header
from batch.report import ReportWriter, format_summary, open_report, summary_path, write_summary
from batch.retrying import Retrier, RetryPolicy
from batch.rowset import RowSet
from batch.runner import Runner, RunnerSettings
from batch.scan import KeyScan, scan_column
from batch.schema import PoolSchema
from batch.signals import SignalStop
from batch.snapshot import LiveLookup, Lookup, PacedCall, PoolSnapshot, Resolver, choose

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
        self.confirm = confirm
        self.handle_signals = handle_signals
        self.source: InputSource = open_input(
            config.input, format=config.format or None, delimiter=config.delimiter
        )
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
        self.signals = SignalStop(self.stream, on_stop=self._stop, sync=self._sync)
        self.runner: Runner | None = None
        self.journal: Journal | None = None

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

    def open_lookup(self, scan: KeyScan, stop: threading.Event) -> None:
        """Read the input's users (snapshot or live, by cost) for keys and the diff."""
        config = self.config
        wait = event_waiter(stop)
        retrier = Retrier(RetryPolicy(max_attempts=config.max_attempts), wait=wait)
        how = choose(input_rows=scan.rows, pool_users=self.pool_users, key=config.key,
                     list_rate=config.list_rate, get_rate=config.get_rate)  # fmt: skip
        if how == "snapshot":
            paced = PacedCall(Pacer(config.list_rate), retrier, wait)
            snapshot = PoolSnapshot(config.report_path().parent)
            if not config.quiet:
                self.stream.write(f"cognito-batch: reading the pool's users (ListUsers at "
                                  f"{config.list_rate:g}/s) to compare...\n")  # fmt: skip
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
        for row in iter_rows(self.source):
            if stop is not None and stop.is_set():
                return
            if only and row.row not in only:
                continue
            if row.row in done:
                continue
            item = planner.plan(row)
            key = row.values.get(self.config.username_column, "")
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
            rate=self.config.fixed_rate if not self.config.auto_rate else (
                self.config.max_rate or self.config.fixed_rate),
            resumed=len(done),
        )  # fmt: skip
        for item in self.items(scan, done, self.planner()):
            summary.tally(item, self.schema)
        return summary

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> JobResult:
        config = self.config
        started = time.monotonic()
        # The whole input is read once before the first call: a file that cannot be read
        # stops the job before it has touched the pool (or even the network).
        scan = scan_column(lambda: iter_column(self.source, config.username_column))
        report = config.report_path()
        jpath = journal_path(report)
        header = JournalHeader(file_sha256(self.source.path), config.fingerprint())
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
        done = state.finished if state is not None else RowSet(scan.rows)
        if config.dry_run or self.confirm is not None:
            plan = self.plan_summary(scan, done)
            plan.upper_bound = self.needs_lookup and not config.dry_run
        else:  # unattended: no one reads a plan, so skip the extra pass over the input
            plan = PlanSummary(
                pool_id=config.user_pool_id, pool_name="", region=self.gateway.region,
                endpoint=config.endpoint_url, rows=len(config.rows) or scan.rows,
            )  # fmt: skip
        if config.dry_run:
            if self.needs_lookup:
                self.open_lookup(scan, self.stop_event)
            try:
                return dry_run(
                    self.items(scan, frozenset(), self.planner()), plan, report,
                    resolve=self.resolver, schema=self.schema, stream=self.stream,
                )  # fmt: skip
            finally:
                if self.lookup is not None:
                    self.lookup.close()
        if plan.to_apply and self.confirm is not None and not self.confirm(plan):
            raise UsageError("not confirmed: nothing was written")

        try:
            with self.signals if self.handle_signals else contextlib.nullcontext():
                if self.needs_lookup:
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
        progress = Progress(
            total, quiet=config.quiet, stream=self.stream,
            extra=lambda: {"rate": controller.rate, "throttles": runner.stats.throttles},
        )  # fmt: skip
        # Every row reported so far: the carried ones (the journal's finished rows), then each
        # result of this run. A bitmap, so a resume of millions of rows stays flat in memory.
        reported = state.finished if state is not None else RowSet(scan.rows)
        resumed = len(reported)
        for path in (report, jpath, summary_path(report)):  # a killed run's temporaries
            remove_stale_temporaries(path)
        writer = open_report(report)
        try:
            # The carry streams from the old journal into the compacted one and the report in
            # one pass; the old journal stays in place until the new one is whole.
            carry = self._carry(state, writer, progress) if state is not None else None
            self.journal = journal = Journal(jpath, header, carry=carry)
        except _CarryStopped:
            return self._stopped_in_carry(writer, report, jpath)
        except BaseException:
            writer.close()
            raise
        lock = threading.Lock()

        def on_result(result: RowResult) -> None:
            with lock:
                journal.write(result)
                writer.write(result)
                reported.add(result.row)
            progress.add(result)

        self.runner = runner = Runner(
            self.gateway,  # type: ignore[arg-type]
            RunnerSettings(
                user_pool_id=config.user_pool_id,
                workers=config.workers,
                retry=RetryPolicy(max_attempts=config.max_attempts,
                                  max_row_seconds=config.max_row_seconds),
                client_metadata=config.client_metadata,
                per_user_rate=config.per_user_rate,
            ),
            controller=controller,
            on_result=on_result,
            resolve=self.resolver,
            stop=self.stop_event,
        )  # fmt: skip
        if self.stop_event.is_set():
            runner.stop(self.signals.reason or "interrupted")
        unreached = 0
        try:
            try:
                runner.run(self.items(scan, reported, self.planner(), stop=self.stop_event))
                # Once stopping, the feed ends: the rows it never read are reported here, in
                # bulk, and not journaled (nothing was done to them), so a resume does them.
                with lock:
                    unreached = self._report_unreached(
                        writer, reported, scan.rows, runner.stop_reason or "not reached"
                    )
                progress.add_counts(Counters({Status.SKIPPED.value: unreached},
                                             {"Stopped": unreached} if unreached else {}))
            finally:
                progress.close()
                writer.close()  # durable (fsync'd) before the summary and the marker
            counts = progress.counters
            summary = self._summary(counts, total, report, jpath, header, resumed, started)
            summary.update(self._run_stats(runner, controller))
            write_summary(report, summary)
            # Last: a finished journal is never resumed, so it may say so only once the report
            # and summary it vouches for are on disk.
            if not runner.stopping and not unreached:
                journal.complete()
        finally:
            journal.close()
        if not config.quiet:
            self.stream.write(format_summary(summary) + "\n")
        code = exit_code(summary["counts"], fatal=runner.fatal is not None,
                         signal_code=self.signals.code)  # fmt: skip
        return JobResult(code, summary, report)

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
        self, writer: ReportWriter, reported: RowSet, last: int, reason: str
    ) -> int:
        """Report ``skipped`` every row of the input that has no result yet."""
        n = 0
        if self.config.rows:
            wanted = [r for r in sorted(set(self.config.rows)) if r not in reported]
            chunks: Iterator[np.ndarray] = iter([np.array(wanted, dtype=np.int64)] if wanted
                                                else [])  # fmt: skip
        else:
            chunks = reported.missing(last)
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
            "rate": "auto" if config.auto_rate else config.fixed_rate,
            "stopped": "",
            "report": str(report),
            "journal": str(jpath),
            "input": str(self.source.path.resolve()),
            "input_sha256": header.input_sha256,
            "settings": config.public(),
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

    def _controller(self) -> RateController:
        config = self.config
        if config.auto_rate:
            ceiling = config.max_rate or 10_000.0
            initial = min(ceiling, 10.0)
            if config.rate_algorithm == "aimd":
                return AimdRate(initial=initial, max_rate=ceiling)
            if config.rate_algorithm == "cubic":
                return CubicRate(initial=initial, max_rate=ceiling)
            return MeasuredRate(initial=initial, max_rate=ceiling)
        return FixedRate(config.fixed_rate)

    def _stop(self, reason: str) -> None:
        """A signal asks the run to stop: the runner winds down, waiting reads wake."""
        if self.runner is not None:
            self.runner.stop(reason)
        self.stop_event.set()

    def _sync(self) -> None:
        if self.journal is not None:
            self.journal.sync()

    def _resume_state(self, jpath: Path, header: JournalHeader) -> JournalState | None:
        """The journal an earlier run of this report left (None: none, or ``--fresh``). An
        unfinished one must be of this input and settings; a finished one is returned as it
        is (replaced by this run, or rebuilt into a missing report when it matches)."""
        state = None if self.config.fresh else read_journal(jpath)
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


def needs_confirmation(config: JobConfig) -> bool:
    """Writing to a real pool asks first, unless told not to."""
    return config.confirm and not config.dry_run and not is_local_endpoint(config.endpoint_url)
