"""One run, start to end: read -> plan -> (confirm) -> apply -> report.

This is the library API the CLI is a thin shell over: ``run_job(config)`` returns the summary
and the exit code, and raises only ``BatchError`` subclasses for the CLI to turn into one line.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from batch.cognito import CognitoGateway, ConnectionSettings, is_local_endpoint
from batch.config import JobConfig
from batch.errors import CognitoError, FatalError, ResumeError, UsageError
from batch.journal import Journal, JournalHeader, file_sha256, journal_path, read_journal
from batch.models import FINISHED, RowResult, Status, UserUpdate
from batch.plan import ColumnMapping, Planner, check_columns, map_columns
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
from batch.report import format_summary, open_report, write_parquet, write_summary
from batch.retrying import Retrier, RetryPolicy
from batch.runner import Runner, RunnerSettings
from batch.scan import KeyScan, scan_column
from batch.schema import PoolSchema
from batch.snapshot import LiveLookup, Lookup, PacedCall, PoolSnapshot, Resolver, choose

EXIT_OK = 0
EXIT_ROWS = 1
EXIT_FATAL = 2
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


@dataclass(slots=True)
class PlanSummary:
    """What a run is about to do: shown before confirmation and by ``--dry-run``."""

    pool_id: str
    pool_name: str
    region: str
    endpoint: str
    rows: int
    to_apply: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    attributes: dict[str, int] = field(default_factory=dict)
    messages: dict[str, int] = field(default_factory=dict)
    pending_verification: int = 0
    rate: float = 25.0
    resumed: int = 0
    upper_bound: bool = False  # counted before reading users: unchanged rows not yet known

    @property
    def estimated_seconds(self) -> float:
        return self.to_apply / self.rate if self.rate > 0 else math.inf

    def describe(self) -> str:
        target = f"{self.pool_id} ({self.pool_name})" if self.pool_name else self.pool_id
        lines = [
            f"pool:      {target} in {self.region}" + (f" at {self.endpoint}" if self.endpoint
                                                         else ""),
            f"rows:      {self.rows}" + (f" ({self.resumed} already done, resuming)"
                                         if self.resumed else ""),
            f"to write:  {'at most ' if self.upper_bound else ''}{self.to_apply} users, "
            f"about {_duration(self.estimated_seconds)} "
            f"at {self.rate:g}/s",
        ]  # fmt: skip
        if self.by_status:
            lines.append("planned:   " + ", ".join(f"{k} {v}" for k, v in
                                                   sorted(self.by_status.items())))  # fmt: skip
        if self.attributes:
            lines.append("attributes: " + ", ".join(f"{k} ({v})" for k, v in
                                                    sorted(self.attributes.items())))  # fmt: skip
        if self.messages:
            lines.append(
                "messages:  "
                + ", ".join(f"{v} {k}" for k, v in sorted(self.messages.items()))
                + " verification messages would be sent (--mark-verified avoids them)"
            )
        if self.pending_verification:
            lines.append(
                f"pending:   {self.pending_verification} new values apply only once the user "
                "verifies them (the pool requires verification before update)"
            )
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds == math.inf:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(slots=True)
class JobResult:
    exit_code: int
    summary: dict[str, Any]
    report: Path


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
        self.stop_reason = ""
        self.signal_code = 0
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
        self, scan: KeyScan, done: set[int] | frozenset[int], planner: Planner
    ) -> Iterator[UserUpdate | RowResult]:
        """Every row still to report, planned, with the duplicate rule applied."""
        only = frozenset(self.config.rows)
        for row in iter_rows(self.source):
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

    def plan_summary(self, scan: KeyScan, done: set[int] | frozenset[int]) -> PlanSummary:
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
            self._tally(summary, item)
        return summary

    def _tally(self, summary: PlanSummary, item: UserUpdate | RowResult) -> None:
        status = item.status.value if isinstance(item, RowResult) else Status.UPDATED.value
        summary.by_status[status] = summary.by_status.get(status, 0) + 1
        if not isinstance(item, UserUpdate):
            return
        summary.to_apply += 1
        for name in item.attribute_names:
            summary.attributes[name] = summary.attributes.get(name, 0) + 1
        if self.schema is None:
            return
        for kind in self.schema.sends_message(item.attributes):
            summary.messages[kind] = summary.messages.get(kind, 0) + 1
        pending = {a for a, _ in item.attributes} & self.schema.verify_before_update
        flags = dict(item.attributes)
        if any(flags.get(f"{a}_verified") != "true" for a in pending):
            summary.pending_verification += 1

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> JobResult:
        config = self.config
        started = time.monotonic()
        # The whole input is read once before the first call: a file that cannot be read
        # stops the job before it has touched the pool (or even the network).
        scan = scan_column(lambda: iter_column(self.source, config.username_column))
        self.load_schema()
        report = config.report_path()
        jpath = journal_path(report)
        header = JournalHeader(file_sha256(self.source.path), config.fingerprint())
        carried = {} if config.dry_run else self._resume_state(jpath, header)
        if config.dry_run or self.confirm is not None:
            plan = self.plan_summary(scan, frozenset(carried))
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
                return self._dry_run(scan, plan, report, started)
            finally:
                if self.lookup is not None:
                    self.lookup.close()
        if plan.to_apply and self.confirm is not None and not self.confirm(plan):
            raise UsageError("not confirmed: nothing was written")

        previous = self._install_signals() if self.handle_signals else {}
        try:
            if self.needs_lookup:
                self.open_lookup(scan, self.stop_event)
            return self._apply(scan, plan, report, jpath, header, carried, started)
        finally:
            self._restore_signals(previous)
            if self.lookup is not None:
                self.lookup.close()

    def _apply(
        self,
        scan: KeyScan,
        plan: PlanSummary,
        report: Path,
        jpath: Path,
        header: JournalHeader,
        carried: dict[int, RowResult],
        started: float,
    ) -> JobResult:
        config = self.config
        controller = self._controller()
        report.parent.mkdir(parents=True, exist_ok=True)
        writer = open_report(report)
        self.journal = journal = Journal(jpath, header, carry=iter(carried.values()))
        total = plan.rows
        progress = Progress(
            total, quiet=config.quiet, stream=self.stream,
            extra=lambda: {"rate": controller.rate, "throttles": runner.stats.throttles},
        )  # fmt: skip
        lock = threading.Lock()

        def on_result(result: RowResult) -> None:
            with lock:
                journal.write(result)
                writer.write(result)
            progress.add(result)

        for result in carried.values():
            writer.write(result)
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
            runner.stop(self.stop_reason or "interrupted")
        try:
            runner.run(self.items(scan, frozenset(carried), self.planner()))
        finally:
            progress.close()
            writer.close()
            stopped = runner.stopping
            if not stopped:
                journal.complete()
            journal.close()
        if report.suffix.lower() == ".parquet":
            final = read_journal(jpath)
            assert final is not None
            write_parquet(report, (final.results[r] for r in sorted(final.results)))

        counts = progress.counters
        duration = time.monotonic() - started
        updated = counts.by_status.get("updated", 0)
        summary: dict[str, Any] = {
            "rows": total,
            "counts": {s.value: counts.by_status.get(s.value, 0) for s in Status},
            "errors": dict(counts.by_error),
            "calls": runner.stats.calls,
            "throttles": runner.stats.throttles,
            "faults": runner.stats.faults,
            "duration_s": round(duration, 3),
            "achieved_rate": round(updated / duration, 2) if duration > 0 else 0.0,
            "rate": "auto" if config.auto_rate else config.fixed_rate,
            "rate_final": round(controller.rate, 2),
            "rate_low": round(controller.history.low, 2),
            "rate_high": round(controller.history.high, 2),
            "concurrency": {"final": runner.window(), "low": runner.climber.low,
                            "high": runner.climber.high},  # fmt: skip
            "stopped": runner.stop_reason,
            "report": str(report),
            "journal": str(jpath),
            "input": str(self.source.path.resolve()),
            "input_sha256": header.input_sha256,
            "settings": config.public(),
            "resumed_rows": len(carried),
            "read_calls": self.lookup.reads if self.lookup is not None else 0,
            "lookup": self.lookup_mode,
            "pool": {"id": config.user_pool_id, "region": self.gateway.region},
        }
        write_summary(report, summary)
        if not config.quiet:
            self.stream.write(format_summary(summary) + "\n")
        return JobResult(self._exit_code(summary, runner), summary, report)

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

    def _exit_code(self, summary: dict[str, Any], runner: Runner) -> int:
        if self.signal_code:
            return self.signal_code
        if runner.fatal is not None:
            return EXIT_FATAL
        counts = summary["counts"]
        if counts["invalid"] or counts["failed"] or counts["skipped"]:
            return EXIT_ROWS
        return EXIT_OK

    def _resume_state(self, jpath: Path, header: JournalHeader) -> dict[int, RowResult]:
        state = None if self.config.fresh else read_journal(jpath)
        if state is None or state.complete:
            return {}
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
        return {row: r for row, r in sorted(state.results.items()) if r.status in FINISHED}

    def _dry_run(self, scan: KeyScan, plan: PlanSummary, report: Path, started: float) -> JobResult:
        writer = open_report(report) if report.suffix.lower() != ".parquet" else None
        results: list[RowResult] = []
        # The plan is counted again from the rows as resolved (with --skip-unchanged only the
        # rows that differ would be written, and only they would send messages).
        plan.by_status, plan.attributes, plan.messages = {}, {}, {}
        plan.to_apply = plan.pending_verification = 0
        for item in self.items(scan, frozenset(), self.planner()):
            if isinstance(item, UserUpdate) and self.resolver is not None:
                item = self.resolver(item)
            self._tally(plan, item)
            if isinstance(item, UserUpdate):
                item = RowResult(item.row, item.username, Status.UPDATED, key=item.key,
                                 error_message="dry run: not applied")  # fmt: skip
            if writer is not None:
                writer.write(item)
            else:
                results.append(item)
        if writer is not None:
            writer.close()
        else:
            write_parquet(report, results)
        self.stream.write("dry run: nothing was written\n" + plan.describe() + "\n")
        summary = {
            "dry_run": True, "rows": plan.rows, "to_apply": plan.to_apply,
            "counts": plan.by_status, "attributes": plan.attributes, "messages": plan.messages,
            "pending_verification": plan.pending_verification,
            "estimated_seconds": round(plan.estimated_seconds, 1), "report": str(report),
        }  # fmt: skip
        write_summary(report, summary)
        self.stream.write(f"  report: {report}\n")
        invalid = plan.by_status.get("invalid", 0)
        return JobResult(EXIT_ROWS if invalid else EXIT_OK, summary, report)

    # -- signals -----------------------------------------------------------------------------

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    def _restore_signals(self, previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def _say(self, text: str) -> None:
        """Write from a signal handler: a buffered stream the interrupted code may be in the
        middle of writing raises "reentrant call", so go to the file descriptor directly."""
        try:
            os.write(self.stream.fileno(), text.encode())
        except (AttributeError, OSError, ValueError):
            pass  # no descriptor (a test's StringIO) or a closed pipe: the exit code says it

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        code = EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM
        if self.signal_code and signum == signal.SIGINT:
            # The second Ctrl-C: leave now. Every result so far is in the journal already
            # (written line by line), so a resume redoes at most the rows in flight.
            if self.journal is not None:
                try:
                    self.journal.sync()
                except (OSError, ValueError, RuntimeError):
                    pass
            self._say("cognito-batch: interrupted again, exiting now\n")
            os._exit(EXIT_SIGINT)
        # Set first: a second signal arriving inside this handler sees it.
        self.signal_code = self.signal_code or code
        self.stop_reason = f"interrupted by {name}"
        self._say(
            f"cognito-batch: {name}: finishing calls in flight, then stopping "
            "(Ctrl-C again to exit at once)\n"
        )
        if self.runner is not None:
            self.runner.stop(self.stop_reason)
        self.stop_event.set()


def run_job(config: JobConfig, **kwargs: Any) -> JobResult:
    """Run one job. See ``Job`` for the keyword arguments."""
    return Job(config, **kwargs).run()


def needs_confirmation(config: JobConfig) -> bool:
    """Writing to a real pool asks first, unless told not to."""
    return config.confirm and not config.dry_run and not is_local_endpoint(config.endpoint_url)
