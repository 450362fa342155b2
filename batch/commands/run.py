"""One run, start to end: read -> plan -> (confirm) -> apply -> report.

This is the library API the CLI is a thin shell over: ``run_job(config)`` returns the summary
and the exit code, and raises only ``BatchError`` subclasses for the CLI to turn into one line.
The plan's counts live in ``plan_summary``, the dry run in ``dry_run``, signal handling in
``signals`` and the exit codes in ``exit_codes``.
"""

from __future__ import annotations

import functools
import io
import itertools
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
from batch.commands.reads import EARLY_READS, ReadCheck, open_reads, side_by_side
from batch.commands.run_s3 import run_with_s3_report
from batch.commands.run_work import RunWork, run_items
from batch.commands.sync import SyncSetup, sync_active, sync_categories
from batch.config import JobConfig
from batch.engine.exit_codes import EXIT_FATAL, EXIT_OK, EXIT_ROWS, EXIT_SIGINT, EXIT_SIGTERM
from batch.engine.pipeline import Pipeline
from batch.engine.runner import Runner
from batch.errors import UsageError
from batch.inputs.reader import InputSource, iter_column, open_input, read_header
from batch.inputs.sample import KeySample
from batch.inputs.scan import KeyScan
from batch.inputs.scan_cache import forget_scan, kept_scan
from batch.inputs.shard import Shard, scan_shard
from batch.models import JobResult, RowResult, UserUpdate
from batch.pace.controllers import RateController
from batch.pace.quota import Quotas, default_quotas, read_quotas
from batch.pace.rate_plan import RatePlan, rate_controller, rate_plan
from batch.pace.retrying import Cancelled
from batch.plan.desired import sync_columns
from batch.plan.lookup import Lookup, Resolver
from batch.plan.mapping import ColumnMapping, Planner, check_columns, map_columns
from batch.plan.schema import PoolSchema
from batch.plan.summary import PlanSummary, fill_plan
from batch.plan.sync_resolve import GroupSource, SyncResolver
from batch.record.before_images import Remembering, unfinished_images
from batch.record.guard import InputWatch
from batch.record.journal import READS, JournalHeader, JournalState
from batch.record.layout import RunFiles
from batch.record.summary import RunSummary
from batch.rowset import RowSet
from batch.store.storage import input_identity, is_s3
from batch.view.logs import EventLog, version
from batch.view.progress import Listener

if TYPE_CHECKING:
    from batch.remote.checkpoint import Checkpoint, S3Report

__all__ = [
    "EXIT_FATAL", "EXIT_OK", "EXIT_ROWS", "EXIT_SIGINT", "EXIT_SIGTERM",
    "Confirm", "Job", "JobResult", "PlanSummary", "needs_confirmation", "run_job",
]

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
        on_progress: Listener | None = None,
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
        )
        self.header = read_header(self.source)
        self.mapping = ColumnMapping(
            username_column=config.username_column,
            renames=config.columns,
            # A sync's ``enabled`` and ``groups`` columns are not attributes (issue 21).
            exclude=frozenset(config.exclude) | frozenset(sync_columns(self.header)),
            empty="delete" if config.empty == "delete" else "leave",
            key=config.key,  # type: ignore[arg-type]
        )
        self.columns = map_columns(self.header, self.mapping, path=self.source.name)
        self.gateway = gateway or gateway_for(config)
        self.schema: PoolSchema | None = None
        self.pool_users: int | None = None
        self.lookup: Lookup | None = None
        self.resolver: Callable[[UserUpdate], UserUpdate | RowResult] | None = None
        self.sync = sync_active(config, self.header)  # rows are desired states (issue 21)
        self.sync_setup: SyncSetup | None = None
        self.pool_description: dict[str, Any] = {}
        self.lookup_mode = ""
        # The apply's machinery (lock, guard, journal, stop and signals): ``engine.pipeline``.
        self.pipeline = Pipeline(config, stream=self.stream, log=self.log,
                                 handle_signals=handle_signals)
        if on_progress is not None:
            self.pipeline.listeners.append(on_progress)
        self.stop_event = self.pipeline.stop_event
        self.quotas: Quotas = default_quotas("not read")
        # A report in S3: the run works in a local spool; the checkpoint copies it to S3.
        self.s3: S3Report | None = None
        self.checkpoint: Checkpoint | None = None
        self.incremental: Incremental | None = None  # --incremental: the diff against the state
        # Keys seen by the scan, for the snapshot's segments (``plan.segments``); empty when
        # a resume reads the kept scan (the pool is then paged in one listing, as before).
        self.key_sample = KeySample()
        self.read_check = ReadCheck()  # AdminGetUser allowed? asked at the start (``reads``)

    # -- the quota ---------------------------------------------------------------------------

    def read_quotas(self) -> None:
        """The enforced rates of the categories this run calls (GetProvisionedLimit)."""
        categories = ["UserUpdate"]
        if self.needs_lookup:
            categories += ["UserRead", "UserList"]
        if self.sync:
            categories += sync_categories(self.config, self.header)
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
        self.pool_description = pool
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
        return self.config.skip_unchanged or self.config.key != "username" or self.sync

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
        self.lookup, self.lookup_mode = open_reads(self, scan, stop)
        self.lookup = Remembering(self.lookup)  # the before-image reuses the resolver's read
        types = {n: r.data_type for n, r in self.schema.rules.items()} if self.schema else {}
        # A sync's row is a desired state: what already holds costs no call.
        self.resolver = Resolver(self.lookup, config.key, config.skip_unchanged or self.sync,
                                 config.mark_verified, types)
        if self.sync:
            setup = self.sync_setup or SyncSetup()
            assert isinstance(self.lookup, Remembering)
            self.resolver = SyncResolver(self.resolver, self.lookup.peek,
                                         setup.groups or GroupSource(frozenset()),
                                         create_missing=config.create_missing)

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
        )
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
            return run_with_s3_report(self)
        return self._run_locked()

    def _run_locked(self) -> JobResult:
        # Before anything is written; an S3 input cannot be a local output.
        self.pipeline.config = self.config
        with self.pipeline.on(self.config.report_path(),
                              input=None if self.source.uri else self.source.path):
            return self._run()

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
                          shard=config.shard or None)
        # The whole input is read once before the first call: a file that cannot be read
        # stops the job before it has touched the pool (or even the network).
        # Kept beside the journal (``scan_cache``): a resume does not scan again. Read back
        # only to resume that journal: a fresh run (or a dry run) scans, so a file planted
        # beside the report can at most slow a run down, never shape a new one.
        header = JournalHeader(self.watch.hashed(), config.fingerprint(), config.user_pool_id,
                               self.gateway.region)
        resuming = files.journal.is_file() and not config.fresh and not config.dry_run
        if not resuming:
            files.keyscan.unlink(missing_ok=True)
        forget_scan(files.keyscan, files.journal)  # a finished journal resumes nothing either
        scan = kept_scan(
            None if config.dry_run else files.keyscan, self._scan_identity(header),
            lambda: scan_shard(lambda: self.key_sample.watch(
                iter_column(self.source, config.username_column)), self.shard),
        )
        work = RunWork(self, scan, header, self._undo_header(header))
        if config.fresh and not config.dry_run:
            _keep_images(files)
        # The journal before the pool: a run that cannot resume is refused, and a lost report
        # rebuilt, without a network call.
        state = None if config.dry_run else self.pipeline.resume(
            header, mismatch=_mismatch, last_row=scan.last_input_row)
        if state is not None and state.complete:
            if state.version in READS and not (files.report.is_file()
                                                 and files.summary.is_file()):
                return self.pipeline.rebuild(work, state, started=started,
                                             region=self.gateway.region)
            if self.s3 is not None and state.version in READS:
                # Stopped while its end was put in S3 (the compaction): a scheduler's retry
                # finishes that (publish), calls nothing, and keeps the run's before-images.
                return self._finished_already()
            state = None  # a finished run's journal is simply replaced by this one
        work.journaled = state.finished if state is not None else None
        work.in_doubt = state.handed_out if state is not None else 0
        # Each a call (or three) before the first write: side by side.
        side_by_side(self.load_schema, self.read_quotas,
                     functools.partial(self.read_check.run, self, self.stop_event,
                                       self._first_keys(scan, state)))
        self.pipeline.latency_hint = self.read_check.latency  # sizes the first window
        if self.sync:  # before any write: unknown groups, AliasConflict, --max-disable
            self.sync_setup = SyncSetup.prepare(self, scan, state)
        done = state.finished if state is not None else RowSet(scan.last_input_row)
        try:
            return self._planned(scan, header, work, state, done, started)
        finally:
            if self.incremental is not None:
                self.incremental.spill.remove()

    def _first_keys(self, scan: KeyScan, state: object) -> list[str]:
        """The keys of the rows a fresh, unattended run writes first: their users are read
        beside the start's calls (``ReadCheck``). None when a prompt may hold the run (reads
        kept for minutes would be stale), or when the first rows are not surely the first
        written (a resume, a shard, chosen rows, an incremental run)."""
        config = self.config
        if (state is not None or config.dry_run or self.confirm is not None or config.rows
                or scan.foreign is not None or config.incremental):
            return []
        return list(itertools.islice(iter_column(self.source, config.username_column),
                                     EARLY_READS))

    def _planned(self, scan: KeyScan, header: JournalHeader, work: RunWork,
                 state: JournalState | None, done: RowSet,
                 started: float) -> JobResult:
        config = self.config
        if config.incremental:
            self.incremental = Incremental(self, scan, input_sha256=header.input_sha256)
            if self.incremental.note and not config.quiet:
                self.log.emit("incremental", f"cognito-batch: {self.incremental.note}",
                              full_run=True)
        if config.dry_run or self.confirm is not None:
            plan = self.plan_summary(scan, done)
            plan.upper_bound = self.needs_lookup and not config.dry_run
        else:  # unattended: no one reads a plan, so skip the extra pass over the input
            plan = PlanSummary(
                pool_id=config.user_pool_id, pool_name="", region=self.gateway.region,
                endpoint=config.endpoint_url, rows=len(config.rows) or scan.rows,
            )
            self._plan_rate(plan)
        if self.sync_setup is not None and config.disable_missing:
            plan.disable_missing = len(self.sync_setup.leavers)  # listed first (describe)
            plan.rows += plan.disable_missing + len(self.sync_setup.settled)
        if not config.quiet and not config.dry_run:
            self._log_plan(plan)
        if config.dry_run:
            return self._dry_run(scan, plan)
        if plan.to_apply and self.confirm is not None and not self.confirm(plan):
            raise UsageError("not confirmed: nothing was written")
        try:
            with self.pipeline.handled():
                if self.needs_lookup or self.records_undo:
                    try:
                        self.open_lookup(scan, self.stop_event)
                    except Cancelled:
                        if not self.pipeline.signals.code:
                            raise
                        return self._stopped_reading()
                result = self.pipeline.apply(work, header=header, state=state, plan=plan,
                                             quotas=self.quotas, controller=self._controller(),
                                             started=started)
            forget_scan(self.files.keyscan, self.files.journal)  # a finished run needs it no more
            return result
        finally:
            if self.lookup is not None:
                self.lookup.close()

    def _finished_already(self) -> JobResult:
        """An ``s3://`` report whose run had finished (report and summary there): nothing to
        apply; its exit code is the run's. ``--fresh`` replaces it instead."""
        files = self.files
        summary = RunSummary.of(files.report)
        code = summary.exit_code if summary.exit_code is not None else EXIT_OK
        if not self.config.quiet:
            self.log.emit("finished", f"cognito-batch: {self._shown(files.report)}: this run "
                          "had finished; its end is put in S3 again, no call made (--fresh "
                          "runs it again)", report=self._shown(files.report))
        return JobResult(code, summary.as_json(), files.report)

    def _stopped_reading(self) -> JobResult:
        """A signal while the pool was read, before the first write: the signal's code (143,
        130, 129), so a scheduler retries the job, and nothing to resume (nothing written)."""
        signals, report = self.pipeline.signals, self.files.report
        self.log.warning(f"{signals.reason} while reading the pool's users; "
                         "nothing was written: run the same command again",
                         exit_code=signals.code)
        return JobResult(signals.code, {"stopped": signals.reason, "report": None}, report)

    def _dry_run(self, scan: KeyScan, plan: PlanSummary) -> JobResult:
        if self.needs_lookup:
            self.open_lookup(scan, self.stop_event)
        try:
            result = dry_run(
                self.items(scan, RowSet(), self.planner()), plan, self.files.report,
                resolve=self.resolver, schema=self.schema,
                stream=io.StringIO() if self.log.json else self.stream,
            )
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
                           config.format, config.delimiter])

    def _undo_header(self, header: JournalHeader) -> dict[str, Any]:
        config = self.config
        return {"pool": config.user_pool_id, "region": self.gateway.region,
                "endpoint_url": config.endpoint_url, "input_sha256": header.input_sha256,
                "settings": header.settings, "report": str(config.report_path())}

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
                      counted=bool(plan.by_status), upper_bound=plan.upper_bound)



def _keep_images(files: RunFiles) -> None:
    """``--fresh`` discards the journal, and with it what vouches for an unfinished run's
    before-images (``undo_check``): those are the only way back for the rows it wrote, so
    it is refused while they are there, rather than rotate images no undo could trust."""
    held = unfinished_images(files.before_images)
    if held:
        raise UsageError(
            f"{files.before_images}: the before-images of {held} rows an unfinished run wrote; "
            f"--fresh would discard the journal that vouches for them. Undo that run first "
            f"(cognito-batch undo {files.report}), resume it (the same command without "
            "--fresh), or move the report's files aside"
        )


def _mismatch(state: JournalState, header: JournalHeader) -> str:
    what = ("a different input file" if state.header.input_sha256 != header.input_sha256
            else "different settings")
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
