"""One run, start to end: read -> plan -> (confirm) -> apply -> report.

This is the library API the CLI is a thin shell over: ``run_job(config)`` returns the summary
and the exit code, and raises only ``BatchError`` subclasses for the CLI to turn into one line.
The plan's counts live in ``plan_summary``, the dry run in ``dry_run``, signal handling in
``signals`` and the exit codes in ``exit_codes``.
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from batch.cognito import CognitoGateway, ConnectionSettings, is_local_endpoint
from batch.config import JobConfig
from batch.dry_run import dry_run
from batch.errors import CognitoError, FatalError, ResumeError, UsageError
from batch.exit_codes import EXIT_FATAL, EXIT_OK, EXIT_ROWS, EXIT_SIGINT, EXIT_SIGTERM, exit_code
from batch.journal import Journal, JournalHeader, file_sha256, journal_path, read_journal
from batch.models import FINISHED, JobResult, RowResult, Status, UserUpdate
from batch.plan import ColumnMapping, Planner, check_columns, map_columns
from batch.plan_summary import PlanSummary
from batch.progress import Progress
from batch.quota import Quotas, default_quotas, read_quotas
from batch.ratelimit import (
    AimdRate,
    CubicRate,
    FixedRate,
    MeasuredRate,
    Pacer,
    RateController,
    SharedRate,
    event_waiter,
)
from batch.reader import InputSource, iter_column, iter_rows, open_input, read_header
from batch.report import format_summary, open_report, write_parquet, write_summary
from batch.retrying import Retrier, RetryPolicy
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

#: The ceilings as shares of the enforced UserUpdate quota: the default leaves 10 % of it to
#: other applications even when they are idle; auto fills what they leave (ratelimit.py).
POLITE_SHARE = 0.90
AUTO_SHARE = 1.0
#: The plan warns when a run may take more than this share of the quota.
WARN_SHARE = 0.90


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
        self.quotas: Quotas = default_quotas("not read")

    # -- the quota ---------------------------------------------------------------------------

    def read_quotas(self) -> None:
        """The enforced rates of the categories this run calls (GetProvisionedLimit)."""
        categories = ["UserUpdate"]
        if self.needs_lookup:
            categories += ["UserRead", "UserList"]
        self.quotas = read_quotas(self.gateway, categories)

    def rate_plan(self) -> tuple[str, float, float]:
        """(what the rate means, the most the job will send, its share of the UserUpdate
        quota): the ceiling the controller never goes above."""
        config, quota = self.config, self.quotas.update
        cap = config.max_rate or math.inf
        if config.polite_rate:
            ceiling = min(cap, POLITE_SHARE * quota)
            what = f"polite: up to {100 * POLITE_SHARE:.0f}% of it, less while others need more"
        elif config.auto_rate:
            if not self.quotas.known and config.rate_algorithm == "shared":
                ceiling = min(cap, 10_000.0)
                what = "auto: discovered (the quota is not known)"
            else:
                ceiling = min(cap, AUTO_SHARE * quota)
                what = f"auto: up to {100 * AUTO_SHARE:.0f}% of it, less while others need more"
        elif config.rate_share is not None:
            ceiling = config.rate_share * quota
            what = f"{config.rate.strip()} of the quota, less while others need it"
        else:
            ceiling = config.fixed_rate
            what = f"at most {ceiling:g}/s, less while others need it"
            if self.quotas.known and ceiling > quota:
                # Above the enforced quota every extra call is refused, someone's or ours.
                ceiling = quota
                what = f"--rate {config.fixed_rate:g} is above the quota: {quota:g} at most"
        return what, ceiling, ceiling / quota if quota > 0 else 0.0

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
            resumed=len(done),
        )  # fmt: skip
        self._plan_rate(summary)
        for item in self.items(scan, done, self.planner()):
            summary.tally(item, self.schema)
        return summary

    def _plan_rate(self, summary: PlanSummary) -> None:
        what, ceiling, share = self.rate_plan()
        summary.rate = ceiling
        summary.rate_meaning = what
        summary.quota = self.quotas.update
        summary.quota_source = self.quotas.source
        summary.quota_share = share
        if share > WARN_SHARE and not (self.config.auto_rate or self.config.polite_rate):
            summary.warnings.append(
                f"--rate {self.config.rate.strip()} may take {100 * share:.0f}% of the "
                f"{self.quotas.update:g}/s UserUpdate quota, leaving other applications in this "
                "account and region little; throttles slow the job, but only after their calls "
                "were refused too"
            )

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> JobResult:
        config = self.config
        started = time.monotonic()
        # The whole input is read once before the first call: a file that cannot be read
        # stops the job before it has touched the pool (or even the network).
        scan = scan_column(lambda: iter_column(self.source, config.username_column))
        self.load_schema()
        self.read_quotas()
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
            self._plan_rate(plan)
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
                return self._apply(scan, plan, report, jpath, header, carried, started)
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
        if not config.quiet:
            for warning in plan.warnings:
                self.stream.write(f"cognito-batch: warning: {warning}\n")
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
            on_note=progress.note,
        )  # fmt: skip
        if self.stop_event.is_set():
            runner.stop(self.signals.reason or "interrupted")
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
            "rate": self._rate_label(),
            "rate_ceiling": round(plan.rate, 2),
            "quota": {**self.quotas.public(), "share": round(plan.quota_share, 3)},
            "window_capped": runner.cap_note,
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
        code = exit_code(summary["counts"], fatal=runner.fatal is not None,
                         signal_code=self.signals.code)  # fmt: skip
        return JobResult(code, summary, report)

    def _rate_label(self) -> str | float:
        config = self.config
        if config.polite_rate:
            return "polite"
        if config.auto_rate or config.rate_share is not None:
            return config.rate.strip().lower()
        return config.fixed_rate

    def _controller(self) -> RateController:
        config = self.config
        _, ceiling, _ = self.rate_plan()
        algorithm = config.rate_algorithm
        if config.auto_rate and (algorithm != "shared" or not self.quotas.known):
            # The quota is not known (or an old controller is asked for, to compare):
            # discover it from throttles, from 10/s up.
            initial = min(ceiling, 10.0)
            if algorithm == "aimd":
                return AimdRate(initial=initial, max_rate=ceiling)
            if algorithm == "cubic":
                return CubicRate(initial=initial, max_rate=ceiling)
            return MeasuredRate(initial=initial, max_rate=ceiling)
        if algorithm == "fixed" and not config.auto_rate:
            return FixedRate(ceiling)  # the old meaning of --rate N: throttles change nothing
        if config.auto_rate:
            return SharedRate(ceiling=ceiling)
        # The default, and a rate the operator gave: further under the level at which the
        # bucket ran out, probing half as often (ratelimit.py: SharedRate).
        return SharedRate(ceiling=ceiling, keep=0.85 if config.polite_rate else 0.9, hold_s=8.0)

    def _stop(self, reason: str) -> None:
        """A signal asks the run to stop: the runner winds down, waiting reads wake."""
        if self.runner is not None:
            self.runner.stop(reason)
        self.stop_event.set()

    def _sync(self) -> None:
        if self.journal is not None:
            self.journal.sync()

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


def run_job(config: JobConfig, **kwargs: Any) -> JobResult:
    """Run one job. See ``Job`` for the keyword arguments."""
    return Job(config, **kwargs).run()


def needs_confirmation(config: JobConfig) -> bool:
    """Writing to a real pool asks first, unless told not to."""
    return config.confirm and not config.dry_run and not is_local_endpoint(config.endpoint_url)
