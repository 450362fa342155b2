"""The one apply path: run, retry and undo all send their rows through ``Pipeline``.

As s3transfer sends every transfer through one ``_submit_transfer``, a command here supplies
only its ``Work`` (``engine.work``): the feed of rows, the resolve step, the calls a row makes
and any extra sinks. The pipeline owns everything else, once:

- before anything is written (``with pipeline.on(report, ...)``): the output guard over the
  run's whole file family (``layout.RunFiles``), a private folder, the report's ``RunLock``,
  snapshots and temporaries a killed run left;
- the journal and its resume (the journal appended to as it is; the finished rows carried
  into the report by a thread while the runner already writes, ``engine.carry``), the report
  writer, the timeline, progress, the brake, signals
  (``SignalStop``), the give-up breaker (the runner's, from ``--give-up-after``), the rows a
  stopped feed never read (reported ``skipped`` in bulk);
- the summary (``summary.RunSummary``) and exit code, then the journal's completion marker:
  report and summary are durable before ``complete`` is written.

Results fan out to sinks (``sinks.Fanout``), which close in order when the apply ends.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

from batch.config import JobConfig
from batch.engine.brake import Brake, FailureLimit
from batch.engine.carry import CarrySink
from batch.engine.exit_codes import EXIT_SIGTERM, exit_code
from batch.engine.handout import Durable, Handout, step_for
from batch.engine.runner import Runner, RunnerSettings, progress_figures
from batch.engine.signals import SignalStop
from batch.engine.sinks import (
    BrakeSink,
    Closing,
    Fanout,
    JournalSink,
    ProgressSink,
    ReportSink,
    TimelineSink,
)
from batch.engine.work import Unreached, Work
from batch.errors import ResumeError
from batch.models import Counters, JobResult, Status
from batch.pace.controllers import RateController
from batch.pace.quota import Quotas
from batch.pace.rate_plan import rate_label
from batch.pace.retrying import RetryPolicy
from batch.plan.lookup import remove_stale_snapshots
from batch.plan.summary import PlanSummary
from batch.record.guard import (
    check_dry_run_target,
    check_journal,
    check_outputs,
    check_replaceable,
)
from batch.record.journal import Journal, JournalHeader, JournalState
from batch.record.layout import RunFiles
from batch.record.lock import RunLock
from batch.record.report import open_report
from batch.record.summary import (
    Quota,
    RunSummary,
    achieved_rate,
    format_summary,
    status_counts,
)
from batch.record.timeline import Reading, Recorder, open_timeline
from batch.store.files import private_dir, remove_stale_temporaries
from batch.view.logs import EventLog
from batch.view.progress import Listener, Progress

Mismatch = Callable[[JournalState, JournalHeader], str]


class Pipeline:
    """One apply's machinery. ``with pipeline.on(report, input=...):`` guards and locks; then
    ``resume``, ``apply`` (or ``rebuild``) inside it."""

    def __init__(
        self,
        config: JobConfig,
        *,
        stream: TextIO,
        log: EventLog,
        handle_signals: bool = False,
    ) -> None:
        self.config = config
        self.stream = stream
        self.log = log
        self.handle_signals = handle_signals
        self.stop_event = threading.Event()
        self.latency_hint = 0.0  # a call's seconds measured at the start (``RunnerSettings``)
        # Set by a stop that must be prompt (a signal, a lost lease: ``stop``), not by the
        # apply's own (the brake, a changed input: ``_wind_down``): a resume's carry ends early
        # only for the former; the latter still end with a whole report.
        self.urgent = threading.Event()
        self.signals = SignalStop(stream, on_stop=self.stop, sync=self._sync,
                                  say=self._say if log.json else None)
        self.runner: Runner | None = None
        self.journal: Journal | None = None
        self.files = RunFiles(config.report_path())
        self.shown: Callable[[Path], str] = str  # a file as the operator knows it (S3: the object)
        self.after_journal: Callable[[bool], None] | None = None  # S3: the checkpoint begins
        # S3: where the journal's marks must be before the rows they cover go out, and how
        # often it is copied there (``engine.handout``); None: the local journal is the record.
        self.durable: tuple[Durable, float] | None = None
        self.listeners: list[Listener] = []  # progress ticks: the API's on_progress, metrics
        self._input: Path | None = None
        self._protected: list[tuple[str, Path]] = []
        self._lock: RunLock | None = None

    # -- guard and lock ---------------------------------------------------------------------

    def on(
        self,
        report: Path,
        *,
        input: Path | None,
        protected: Iterable[tuple[str, Path]] = (),
    ) -> Pipeline:
        """The run's report, the local file it reads (None: none, or an S3 object) and the
        files it must keep; the ``with`` block guards and locks them."""
        self.files = RunFiles(report)
        self._input, self._protected = input, list(protected)
        return self

    def __enter__(self) -> Pipeline:
        config, files = self.config, self.files
        check_outputs(self._input, files.written(), self._protected)
        check_replaceable(files.report, "report", "--report")
        if config.html:
            check_outputs(self._input, [("HTML page", Path(config.html))],
                          [*self._protected, *files.recorded("this run")],
                          flag="--html")
            check_replaceable(Path(config.html), "html", "--html")
        if config.dry_run:
            check_dry_run_target(files.report)
        private_dir(files.report.parent)
        self._lock = RunLock(files.lock)
        self._lock.acquire()
        remove_stale_snapshots(files.report)  # left by a run killed while it read the pool
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def handled(self) -> contextlib.AbstractContextManager[Any]:
        """Signals handled (the CLI) or left alone (a library caller)."""
        return self.signals if self.handle_signals else contextlib.nullcontext()

    # -- resume -----------------------------------------------------------------------------

    def resume(
        self, header: JournalHeader, *, mismatch: Mismatch, last_row: int | None = None
    ) -> JournalState | None:
        """The journal an earlier attempt left (None: none, or ``--fresh``). An unfinished one
        must match ``header`` (else ``mismatch`` words the refusal); a finished one is
        returned when it matches (its report may need rebuilding). A damaged one is refused
        in one line (``guard.check_journal``; ``last_row``: the input's, which bounds a row).
        """
        fresh, beyond = self.config.fresh, None
        if self.config.disable_missing:  # its leavers are journaled after the input's rows
            # (N+1..., as many as the pool lists): no bound at the input's end; where they
            # start is kept, for their rows and users (``JournalState.beyond``)
            last_row, beyond = None, last_row
        state = None if fresh else check_journal(self.files.journal, last_row=last_row,
                                                 of=header, beyond=beyond)
        if state is None:
            return None
        if state.complete:
            return state if state.header == header else None
        if state.header != header:
            raise ResumeError(mismatch(state, header))
        return state

    # -- apply ------------------------------------------------------------------------------

    def apply(
        self,
        work: Work,
        *,
        header: JournalHeader,
        state: JournalState | None,
        plan: PlanSummary,
        quotas: Quotas,
        controller: RateController,
        started: float,
    ) -> JobResult:
        config, files = self.config, self.files
        live = progress_figures(controller, lambda: self.runner, quotas.enforced)
        progress = Progress(plan.rows, quiet=config.quiet, stream=self.stream, log=self.log,
                            extra=live, listeners=self.listeners)
        if not config.quiet:
            for warning in plan.warnings:
                self.log.warning(f"warning: {warning}")
        # Every row reported so far: the carried ones, then each result. A bitmap, so a resume
        # of millions of rows stays flat in memory.
        reported = state.finished if state is not None else work.empty_rows()
        resumed = len(reported)
        for path in (files.report, files.journal, files.summary):  # a killed run's temporaries
            remove_stale_temporaries(path)
        timeline = open_timeline(files.timeline, header.as_record(), rows=plan.rows,
                                 resume=state is not None)
        writer = open_report(files.report)
        try:
            # A resume appends to the journal it read: nothing is rewritten before the first
            # write (issue 22 item 4); its finished rows reach the report on the carry's thread.
            self.journal = Journal(files.journal, header, append_at=None if state is None
                                   else state.valid_bytes)
            handed_out = state.handed_out if state is not None else 0  # its marks stay in it
            if self.after_journal is not None:
                self.after_journal(state is not None)
        except BaseException:
            writer.close()
            raise
        brake = Brake(FailureLimit.parse(config.max_failures))
        journal_sink = JournalSink(self.journal, work.image)
        progress_sink, own = ProgressSink(progress), work.sinks()
        fanout = Fanout([journal_sink], [progress_sink, BrakeSink(brake, self._wind_down)])
        report_sink: ReportSink | CarrySink = (
            ReportSink(writer, reported) if state is None else
            CarrySink(writer, reported, state, fanout.lock, urgent=self.urgent,
                      on_carried=progress.add_carried, on_error=self._wind_down))
        fanout.ordered += [report_sink, *own]
        on_call: Callable[[float], None] = timeline.record_call
        if isinstance(report_sink, CarrySink):  # the carry waits for the first answered call
            on_call = report_sink.after_first_call(on_call)
        self.runner = runner = Runner(
            work.writer(),
            RunnerSettings(
                user_pool_id=config.user_pool_id, workers=config.workers,
                retry=RetryPolicy(max_attempts=config.max_attempts,
                                  max_row_seconds=config.max_row_seconds),
                client_metadata=config.client_metadata, per_user_rate=config.per_user_rate,
                give_up_after=config.give_up_after, latency_hint=self.latency_hint,
            ),
            controller=controller, on_result=fanout, resolve=work.resolve(),
            stop=self.stop_event, on_call=on_call, on_note=progress.note,
            controllers=work.controllers(),
        )
        work.started(runner)
        recorder = Recorder(timeline, lambda: Reading(
            sent=runner.stats.calls, throttled=runner.stats.throttles, faults=runner.stats.faults,
            rate=controller.rate, in_flight=runner.stats.in_flight,
            statuses=progress.own_statuses()), files.timeline)
        recorder.start(resumed_rows=resumed)
        if self.stop_event.is_set():
            runner.stop(self.signals.reason or "interrupted")
        unreached = 0
        with Closing([journal_sink]) as last, Closing(
            [progress_sink, report_sink, *own, TimelineSink(recorder)]
        ) as first:
            durable, lead = self.durable or (None, 0.0)
            handout = Handout(self.journal, step=step_for(plan.rate, lead_seconds=lead),
                              durable=durable, start=handed_out, stop=self._wind_down)
            runner.run(handout.feed(work.feed(reported, self._wind_down)))
            if not report_sink.wait():  # a signal stopped the carry: the report is not whole
                first.close(False)
                last.close(False)
                return self._stopped_in_carry()
            carried = report_sink.counts if isinstance(report_sink, CarrySink) else Counters()
            # Once stopping, a feed may end early: the rows it never read are reported here,
            # in bulk, and not journaled (nothing was done to them), so a resume does them.
            with fanout.lock:
                reason = runner.stop_reason or "not reached"
                for rows in work.unreached(reported, reason):
                    if isinstance(rows, Unreached):
                        writer.write_skipped(rows.rows, "Stopped", reason,
                                             usernames=rows.usernames, keys=rows.keys)
                        rows = rows.rows
                    else:
                        writer.write_skipped(rows, "Stopped", reason)
                    unreached += int(rows.size)
            progress.add_counts(Counters({Status.SKIPPED.value: unreached},
                                         {"Stopped": unreached} if unreached else {}))
            finished = not runner.stopping and not unreached
            first.close(finished)
            summary = self._summary(work, plan, quotas, controller, brake, progress.counters,
                                    carried, resumed, started)
            stopped_job = runner.fatal is not None or brake.tripped or work.stopped_job()
            code = exit_code(summary.counts, fatal=stopped_job, signal_code=self.signals.code)
            summary = summary.replace(exit_code=code)
            summary.write(files.report)
            # Last: a finished journal is never resumed, so it may say so only once the report
            # and summary it vouches for are on disk.
            last.close(finished)
        return self._end(work, summary)

    def _summary(
        self, work: Work, plan: PlanSummary, quotas: Quotas, controller: RateController,
        brake: Brake, counts: Counters, carried: Counters, resumed: int, started: float,
    ) -> RunSummary:
        """The summary, built here only; the work adds its own fields."""
        assert self.runner is not None
        runner, config, files = self.runner, self.config, self.files
        duration = time.monotonic() - started
        # This attempt's rate: the carried rows were written by an earlier one.
        updated = counts.by_status.get("updated", 0) - carried.by_status.get("updated", 0)
        summary = RunSummary(
            rows=plan.rows, counts=status_counts(counts.by_status), errors=dict(counts.by_error),
            calls=runner.stats.calls, throttles=runner.stats.throttles,
            faults=runner.stats.faults, duration_s=round(duration, 3),
            achieved_rate=achieved_rate(updated, duration), rate=rate_label(config),
            stopped=runner.stop_reason, report=self.shown(files.report),
            journal=self.shown(files.journal), settings=config.public(),
            resumed_rows=resumed, pool={"id": config.user_pool_id, "region": plan.region},
            rate_final=round(controller.rate, 2), rate_low=round(controller.history.low, 2),
            rate_high=round(controller.history.high, 2),
            concurrency=runner.climber.summary(runner.window()),
            rate_ceiling=round(plan.rate, 2),
            quota=Quota.from_json({**quotas.public(), "share": round(plan.quota_share, 3)}),
            window_capped=runner.cap_note, timeline=self.shown(files.timeline),
            max_failures={"limit": brake.limit.describe(), "failures": brake.failures,
                          "decided": brake.decided, "tripped": brake.tripped},
        )
        return work.summary(summary)

    def _end(self, work: Work, summary: RunSummary) -> JobResult:
        """Say how it ended, then the HTML page (the run is recorded: a page that cannot be
        drawn changes nothing)."""
        config, report = self.config, self.files.report
        code = summary.exit_code if summary.exit_code is not None else 0
        if not config.quiet:
            self.log.summary(summary.as_json(), format_summary(summary), exit_code=code)
        work.announce(self.log, summary)
        if config.html:
            from batch.view.html_report import write_html

            try:
                html = write_html(report, Path(config.html))
            except Exception as exc:  # noqa: BLE001 - reported on one line, not raised
                self.log.warning(f"warning: no HTML report ({exc}); "
                                 f"try: cognito-batch report {report} --html {config.html}")
            else:
                if not config.quiet:
                    self.log.emit("html_report", f"  html report: {html}", path=str(html))
        return JobResult(code, summary.as_json(), report)

    # -- resume's carry, and a lost report --------------------------------------------------

    def _stopped_in_carry(self) -> JobResult:
        """A signal while the carry still copied the finished rows into the report (copying
        millions of rows must not hold a SIGTERM past the scheduler's SIGKILL): the half
        report is removed, so nothing claims to be the run's report, and no summary is
        written; the journal holds every result (the old ones and this attempt's), so the
        same command resumes and writes the report whole."""
        files = self.files
        files.report.unlink(missing_ok=True)
        reason = self.signals.reason or self.runner_reason() or "interrupted"
        self.stream.write(f"cognito-batch: {reason} while resuming; {files.journal} holds "
                          "every result: run the same command again to resume\n")
        summary: dict[str, Any] = {"stopped": reason, "report": str(files.report),
                                   "journal": str(files.journal)}
        return JobResult(self.signals.code or EXIT_SIGTERM, summary, files.report)

    def rebuild(
        self, work: Work, state: JournalState, *, started: float, region: str
    ) -> JobResult:
        """A finished run whose report or summary is gone: write them again from its journal,
        calling nothing (every row has its result there)."""
        files, counts = self.files, Counters()
        writer = open_report(files.report)
        try:
            for result in state.records():
                writer.write(result)
                counts.add(result)
        finally:
            writer.close()
        duration = time.monotonic() - started
        summary = work.summary(RunSummary(
            rows=sum(counts.by_status.values()), counts=status_counts(counts.by_status),
            errors=dict(counts.by_error), duration_s=round(duration, 3),
            rate=rate_label(self.config), stopped="", report=self.shown(files.report),
            journal=self.shown(files.journal), settings=self.config.public(),
            pool={"id": self.config.user_pool_id, "region": region},
            rebuilt_from_journal=True,
        ))
        code = exit_code(summary.counts, fatal=False, signal_code=0)
        summary = summary.replace(exit_code=code)
        summary.write(files.report)
        if not self.config.quiet:
            self.log.emit("rebuilt", f"cognito-batch: {files.journal}: this run had finished; "
                          "its report was missing and is rebuilt from the journal (no call "
                          "made)", journal=str(files.journal))
            self.log.summary(summary.as_json(), format_summary(summary), exit_code=code)
        return JobResult(code, summary.as_json(), files.report)

    # -- stopping ---------------------------------------------------------------------------

    def stop(self, reason: str) -> None:
        """A signal (or a lost lease) asks the apply to stop, promptly: the runner winds down,
        waits wake, a resume's carry ends."""
        self.urgent.set()
        self._wind_down(reason)

    def _wind_down(self, reason: str) -> None:
        """The apply stops itself (the brake, a changed input, a report that cannot be
        written): as ``stop``, but a resume's carry still completes the report."""
        if self.runner is not None:
            self.runner.stop(reason)
        self.stop_event.set()

    def runner_reason(self) -> str:
        return self.runner.stop_reason if self.runner is not None else ""

    def _say(self, text: str) -> None:
        self.log.warning(text.strip().removeprefix("cognito-batch: "), signal=True)

    def _sync(self) -> None:
        if self.journal is not None:
            self.journal.sync()
