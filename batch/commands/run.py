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
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batch.cognito import CognitoGateway, identifies_as_emulator
from batch.commands.dry_run import dry_run
from batch.commands.incremental import Incremental
from batch.commands.pool import describe_pool, gateway_for
from batch.commands.run_work import RunWork, run_items
from batch.config import JobConfig
from batch.engine.exit_codes import EXIT_FATAL, EXIT_OK, EXIT_ROWS, EXIT_SIGINT, EXIT_SIGTERM
from batch.engine.pipeline import Pipeline
from batch.engine.runner import Runner
from batch.errors import ResumeError, UsageError
from batch.inputs.reader import InputSource, iter_column, open_input, read_header
from batch.inputs.scan import KeyScan
from batch.inputs.scan_cache import forget_scan, kept_scan
from batch.inputs.shard import Shard, scan_shard
from batch.models import JobResult, RowResult, UserUpdate
from batch.pace.controllers import RateController
from batch.pace.pacer import Pacer, event_waiter
from batch.pace.quota import Quotas, default_quotas, read_quotas
from batch.pace.rate_plan import RatePlan, rate_controller, rate_plan
from batch.pace.retrying import Retrier, RetryPolicy
from batch.plan.lookup import LiveLookup, Lookup, PacedCall, PoolSnapshot, Resolver
from batch.plan.mapping import ColumnMapping, Planner, check_columns, map_columns
from batch.plan.overlap import Overlapped, plan_reads
from batch.plan.schema import PoolSchema
from batch.plan.summary import PlanSummary, fill_plan
from batch.record.before_images import Remembering
from batch.record.guard import InputWatch
from batch.record.journal import VERSION, JournalHeader, JournalState
from batch.record.layout import RunFiles
from batch.rowset import RowSet
from batch.store.storage import input_identity, is_s3
from batch.view.logs import EventLog, version

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
        self.gateway = gateway or gateway_for(config)
        self.schema: PoolSchema | None = None
        self.pool_users: int | None = None
        self.lookup: Lookup | None = None
        self.resolver: Resolver | None = None
        self.lookup_mode = ""
        # The apply's machinery (lock, guard, journal, stop and signals): ``engine.pipeline``.
        self.pipeline = Pipeline(config, stream=self.stream, log=self.log,
                                 handle_signals=handle_signals)  # fmt: skip
        self.stop_event = self.pipeline.stop_event
        self.quotas: Quotas = default_quotas("not read")
        # A report in S3: the run works in a local spool; the checkpoint copies it to S3.
        self.s3: S3Report | None = None
        self.checkpoint: Checkpoint | None = None
        self.incremental: Incremental | None = None  # --incremental: the diff against the state

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
        pool = describe_pool(self.gateway, self.config.user_pool_id, self.stop_event)
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
        # The read quotas weighed against the write ceiling (``plan.overlap``): reads never
        # hold the writes below the quota.
        how = plan_reads(input_rows=scan.rows, pool_users=self.pool_users, key=config.key,
                         list_rate=config.list_rate, get_rate=config.get_rate,
                         writes=self.rate_plan().ceiling,
                         every_row=not self.needs_lookup)  # fmt: skip
        if how in ("snapshot", "overlap"):
            cancel = threading.Event() if how == "overlap" else stop
            paced = PacedCall(Pacer(config.list_rate),
                              Retrier(RetryPolicy(max_attempts=config.max_attempts),
                                      wait=event_waiter(cancel)), event_waiter(cancel))  # fmt: skip
            files = RunFiles(config.report_path())
            snapshot = PoolSnapshot(files.report.parent, prefix=files.snapshot_prefix,
                                    indexed=how == "overlap")  # fmt: skip
            if not config.quiet:
                self.log.emit("read_users", f"cognito-batch: reading the pool's users "
                              f"(ListUsers at {config.list_rate:g}/s) to compare"
                              + (", writing meanwhile" if how == "overlap" else "..."),
                              mode=how, list_rate=config.list_rate)  # fmt: skip
            fill = functools.partial(
                snapshot.fill, self.gateway, config.user_pool_id, key=config.key, wanted=scan,
                attributes=set(self.columns.values()), paced=paced)  # fmt: skip
            if how == "overlap":
                self.lookup = Overlapped(snapshot, self._live(retrier, wait), fill, cancel)
            else:
                try:
                    fill()
                except BaseException:
                    snapshot.close()
                    raise
                self.lookup = snapshot
        else:
            self.lookup = self._live(retrier, wait)
        self.lookup_mode = how
        self.lookup = Remembering(self.lookup)  # the before-image reuses the resolver's read
        types = {n: r.data_type for n, r in self.schema.rules.items()} if self.schema else {}
        self.resolver = Resolver(
            self.lookup, config.key, config.skip_unchanged, config.mark_verified, types
        )

    def _live(self, retrier: Retrier, wait: Any) -> LiveLookup:
        config = self.config
        rate = config.get_rate if config.key == "username" else config.list_rate
        return LiveLookup(self.gateway, config.user_pool_id, key=config.key,
                          paced=PacedCall(Pacer(rate), retrier, wait))  # fmt: skip

    def items(
        self,
        scan: KeyScan,
        done: RowSet | frozenset[int],
        planner: Planner,
        *,
        stop: threading.Event | None = None,
    ) -> Iterator[UserUpdate | RowResult]:
        """Every row still to report, planned (``run_work.run_items``)."""
        return run_items(self, scan, done, planner, stop=stop)

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

    @property
    def runner(self) -> Runner | None:
        return self.pipeline.runner

    @property
    def files(self) -> RunFiles:
        return self.pipeline.files

    def run(self) -> JobResult:
        """Refuse outputs that would overwrite the input, take the report's lock, then run."""
        if is_s3(self.config.report):
            return self._run_with_s3_report()
        return self._run_locked()

    def _run_locked(self) -> JobResult:
        # Before anything is written; an S3 input cannot be a local output.
        self.pipeline.config = self.config
        with self.pipeline.on(self.config.report_path(),
                              input=None if self.source.uri else self.source.path):  # fmt: skip
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
                s3.restore(fresh=config.fresh)
                self.s3 = s3
                self.pipeline.shown = self._shown
                self.pipeline.after_journal = functools.partial(
                    _begin_checkpoint, checkpoint, s3)
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
        config, files = self.config, self.files
        started = time.monotonic()
        if config.html and not config.dry_run:  # before any call: a missing extra costs nothing
            from batch.view.html_report import require_matplotlib

            require_matplotlib()
        if not config.quiet:
            self.log.emit("start", version=version(), input=self.source.name,
                          report=self._shown(files.report), pool_id=config.user_pool_id,
                          region=self.gateway.region, dry_run=config.dry_run,
                          rate=config.rate, workers=config.workers,
                          shard=config.shard or None)  # fmt: skip
        # The whole input is read once before the first call: a file that cannot be read
        # stops the job before it has touched the pool (or even the network).
        # Kept beside the journal (``scan_cache``): a resume does not scan again.
        header = JournalHeader(self.watch.hashed(), config.fingerprint())
        scan = kept_scan(
            None if config.dry_run else files.keyscan, self._scan_identity(header),
            lambda: scan_shard(lambda: iter_column(self.source, config.username_column),
                               self.shard),
        )  # fmt: skip
        work = RunWork(self, scan, header, self._undo_header(header))
        # The journal before the pool: a run that cannot resume is refused, and a lost report
        # rebuilt, without a network call.
        state = None if config.dry_run else self.pipeline.resume(header, mismatch=_mismatch)
        if state is not None and state.complete:
            if state.version == VERSION and not (files.report.is_file()
                                                 and files.summary.is_file()):  # fmt: skip
                return self.pipeline.rebuild(work, state, started=started,
                                             region=self.gateway.region)  # fmt: skip
            state = None  # a finished run's journal is simply replaced by this one
        self.load_schema()
        self.read_quotas()
        done = state.finished if state is not None else RowSet(scan.last_input_row)
        try:
            return self._planned(scan, header, work, state, done, started)
        finally:
            if self.incremental is not None:
                self.incremental.spill.remove()

    def _planned(self, scan: KeyScan, header: JournalHeader, work: RunWork,
                 state: JournalState | None, done: RowSet,
                 started: float) -> JobResult:  # fmt: skip
        config = self.config
        if config.incremental:
            self.incremental = Incremental(self, scan, input_sha256=header.input_sha256)
            if self.incremental.note and not config.quiet:
                self.log.emit("incremental", f"cognito-batch: {self.incremental.note}",
                              full_run=True)  # fmt: skip
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
            return self._dry_run(scan, plan)
        if plan.to_apply and self.confirm is not None and not self.confirm(plan):
            raise UsageError("not confirmed: nothing was written")
        try:
            with self.pipeline.handled():
                if self.needs_lookup or self.records_undo:
                    self.open_lookup(scan, self.stop_event)
                result = self.pipeline.apply(work, header=header, state=state, plan=plan,
                                             quotas=self.quotas, controller=self._controller(),
                                             started=started)  # fmt: skip
            forget_scan(self.files.keyscan, self.files.journal)  # a finished run needs it no more
            return result
        finally:
            if self.lookup is not None:
                self.lookup.close()

    def _dry_run(self, scan: KeyScan, plan: PlanSummary) -> JobResult:
        if self.needs_lookup:
            self.open_lookup(scan, self.stop_event)
        try:
            result = dry_run(
                self.items(scan, RowSet(), self.planner()), plan, self.files.report,
                resolve=self.resolver, schema=self.schema,
                stream=io.StringIO() if self.log.json else self.stream,
            )  # fmt: skip
            if self.log.json and not self.config.quiet:
                self._log_plan(plan)
                self.log.summary(result.summary, None, exit_code=result.exit_code)
            return result
        finally:
            if self.lookup is not None:
                self.lookup.close()

    def _scan_identity(self, header: JournalHeader) -> str:
        """What a kept key scan must have been made for: this input, read this way."""
        config = self.config
        return json.dumps([header.input_sha256, config.username_column, config.shard,
                           config.format, config.delimiter])  # fmt: skip

    def _undo_header(self, header: JournalHeader) -> dict[str, Any]:
        config = self.config
        return {"pool": config.user_pool_id, "region": self.gateway.region,
                "endpoint_url": config.endpoint_url, "input_sha256": header.input_sha256,
                "settings": header.settings, "report": str(config.report_path())}  # fmt: skip

    def _controller(self) -> RateController:
        return rate_controller(self.config, self.quotas, self.rate_plan().ceiling)

    def _stop(self, reason: str) -> None:
        """A signal asks the run to stop: the runner winds down, waiting reads wake."""
        self.pipeline.stop(reason)

    def _log_plan(self, plan: PlanSummary) -> None:
        self.log.emit("plan", rows=plan.rows, to_apply=plan.to_apply, resumed=plan.resumed,
                      counts=plan.by_status, attributes=plan.attributes, messages=plan.messages,
                      pending_verification=plan.pending_verification,
                      estimated_seconds=round(plan.estimated_seconds, 1), rate=plan.rate,
                      counted=bool(plan.by_status), upper_bound=plan.upper_bound)  # fmt: skip



def _begin_checkpoint(checkpoint: Checkpoint, s3: S3Report, resumed: bool) -> None:
    checkpoint.begin(resumed=resumed, restored_segments=s3.restored_segments, clear=s3.clear)


def _mismatch(state: JournalState, header: JournalHeader) -> str:
    what = ("a different input file" if state.header.input_sha256 != header.input_sha256
            else "different settings")  # fmt: skip
    return (f"{state.path}: an unfinished run of {what} is recorded here; rerun it with the "
            "same input and settings to finish it, or pass --fresh to discard it")


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
