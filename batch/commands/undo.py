"""``cognito-batch undo REPORT``: put back what a run changed, from its before-images.

Undo is a run like any other: the undo file's records become planned ``UserUpdate``s fed
through the same ``Runner`` (one pacer under the UserUpdate quota, read with
GetProvisionedLimit, and the run's controller for the run's rate: ``rate_plan.py``; the same
retries, the brake), with a journal beside its report so rerunning the command resumes it,
one result row per record, and the same confirmation on a real pool. Each record is planned as it is
applied: the user is read (AdminGetUser, at the read quota) right before its write, so the
conflict check sees the value as it is then, and ``undo.plan_restore`` decides: ``updated``
(restored), ``unchanged`` (nothing to restore: the run's write never landed, or an earlier
undo did it), ``skipped`` ``Conflict`` (changed again since; ``--force`` restores anyway).

Reads are per row rather than a snapshot: every record is a likely write, the reads (~100/s)
keep ahead of the writes (25/s), and a snapshot taken minutes earlier would miss a change
made since, which is what the conflict check is for.

The undo of ``reports/x.csv`` is reported in ``reports/x.undo.csv`` (``--report`` to choose).
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from batch.cognito import CognitoGateway, ConnectionSettings
from batch.commands.dry_run import dry_run
from batch.config import JobConfig, build_config, replayable
from batch.engine.brake import Brake, FailureLimit
from batch.engine.exit_codes import exit_code
from batch.engine.runner import Runner, RunnerSettings, progress_figures
from batch.engine.signals import SignalStop
from batch.errors import CognitoError, FatalError, ResumeError, UsageError
from batch.models import JobResult, RowResult, Status, UserUpdate
from batch.pace.pacer import Pacer, Waiter, event_waiter
from batch.pace.quota import Quotas, default_quotas, read_quotas
from batch.pace.rate_plan import rate_controller, rate_label
from batch.pace.retrying import Cancelled, Retrier, RetryPolicy
from batch.plan.lookup import LiveLookup, PacedCall
from batch.plan.schema import PoolSchema
from batch.plan.summary import PlanSummary, fill_plan
from batch.record.before_images import (
    UndoRecord,
    iter_records,
    message_split,
    plan_restore,
    read_header,
    undo_path,
)
from batch.record.journal import Journal, JournalHeader, journal_path, read_journal
from batch.record.report import format_summary, open_report, summary_path, write_summary
from batch.store.storage import file_sha256
from batch.view.progress import Progress

Confirm = Callable[[PlanSummary], bool]
#: Settings of the run that the undo keeps (how fast and how hard it tries, not what it writes).
KEPT = ("rate", "workers", "max_attempts", "max_row_seconds", "per_user_rate", "get_rate",
        "client_metadata", "profile", "max_rate")  # fmt: skip


def undo_report_path(report: Path) -> Path:
    stem = report.name[: -len(report.suffix)] if report.suffix else report.name
    return report.with_name(f"{stem}.undo{report.suffix}")


def undo_config(report: str, overrides: Mapping[str, Any]) -> tuple[JobConfig, dict[str, Any]]:
    """The undo's settings: the pool from the undo file, speed from the run's summary (when
    the run got to write one), flags over both. Returns the config and the file's header."""
    path = Path(report)
    upath = undo_path(path)
    header = read_header(upath)
    data: dict[str, Any] = {}
    try:
        settings = json.loads(summary_path(path).read_text(encoding="utf-8"))["settings"]
        data.update(replayable({k: settings[k] for k in KEPT if k in settings}))
    except (OSError, ValueError, KeyError, TypeError):
        pass  # a run killed before its summary: the header has what matters
    data.update({
        "input": str(upath), "user_pool_id": header["pool"],
        "region": header.get("region") or "",
        "report": str(undo_report_path(path)), "undo": False, "key": "username",
    })  # fmt: skip
    data.update({k: v for k, v in overrides.items() if v is not None})
    if overrides.get("rate") is not None and str(overrides["rate"]).strip().lower() != "auto":
        data.pop("max_rate", None)  # the run's cap on auto; a rate given for the undo has none
    # Where to connect never comes from the file (anyone who can write the report folder can
    # edit it, and must not be able to send the undo, with our credentials, elsewhere): the
    # flags or the environment say it, as for run and retry.
    if header.get("endpoint_url") and not data.get("endpoint_url"):
        raise UsageError(
            f"{upath}: the run was made with --endpoint-url; give it again for the undo "
            "(where to connect is never taken from the file)"
        )
    return build_config(None, data), header


class UndoWriter:
    """The gateway for undo writes: a restore whose ``*_verified`` flag was false goes out as
    two calls (``undo.message_split``), the second paced like any other."""

    def __init__(self, gateway: CognitoGateway, verified_by_message: frozenset[str]) -> None:
        self.gateway = gateway
        self.verified_by_message = verified_by_message
        self.pacer: Pacer | None = None
        self.wait: Waiter | None = None

    def update_user_attributes(
        self,
        user_pool_id: str,
        username: str,
        attributes: Sequence[tuple[str, str]],
        *,
        client_metadata: Mapping[str, str] | None = None,
    ) -> None:
        first, late = message_split(list(attributes), self.verified_by_message)
        self.gateway.update_user_attributes(user_pool_id, username, first,
                                            client_metadata=client_metadata)  # fmt: skip
        if late:
            if self.pacer is not None and self.wait is not None:
                if not self.pacer.acquire(self.wait):
                    raise Cancelled("job stopping")
            self.gateway.update_user_attributes(user_pool_id, username, late,
                                                client_metadata=client_metadata)  # fmt: skip

    def delete_user_attributes(
        self, user_pool_id: str, username: str, names: Sequence[str]
    ) -> None:
        self.gateway.delete_user_attributes(user_pool_id, username, names)


class UndoResolver:
    """The runner's ``resolve`` step for undo: read the user now, plan the restore."""

    def __init__(
        self,
        lookup: LiveLookup,
        *,
        force: bool,
        types: Mapping[str, str],
        verified_by_message: frozenset[str],
    ) -> None:
        self.lookup = lookup
        self.force = force
        self.types = types
        self.verified_by_message = verified_by_message
        self._pending: dict[int, UndoRecord] = {}  # rows fed, not yet resolved: the window
        self._lock = threading.Lock()

    def items(self, path: Path, done: Mapping[int, RowResult]) -> Iterator[UserUpdate]:
        """Placeholder updates, one a record; the record waits here for ``__call__``."""
        for record in iter_records(path):
            if record.row in done:
                continue
            with self._lock:
                self._pending[record.row] = record
            yield UserUpdate(record.row, record.username, ())

    def __call__(self, update: UserUpdate) -> UserUpdate | RowResult:
        with self._lock:
            record = self._pending.pop(update.row)
        users = [u for u in self.lookup.find(record.username)
                 if u.get("username") == record.username]  # fmt: skip
        return plan_restore(record, users[0] if users else None, force=self.force,
                            types=self.types,
                            verified_by_message=self.verified_by_message)  # fmt: skip


class UndoJob:
    """One undo run; ``run()`` returns the summary and the exit code, like ``Job.run``."""

    def __init__(
        self,
        config: JobConfig,
        *,
        force: bool = False,
        gateway: CognitoGateway | None = None,
        confirm: Confirm | None = None,
        handle_signals: bool = False,
        stream: IO[str] | None = None,
    ) -> None:
        self.config = config
        self.force = force
        self.stream = stream or sys.stderr
        self.confirm = confirm
        self.handle_signals = handle_signals
        self.path = Path(config.input)
        self.gateway = gateway or CognitoGateway(ConnectionSettings(
            region=config.region or None, profile=config.profile or None,
            endpoint_url=config.endpoint_url or None, max_connections=config.workers + 4,
        ))  # fmt: skip
        self.stop_event = threading.Event()
        self.runner: Runner | None = None
        self.journal: Journal | None = None
        self.signals = SignalStop(self.stream, on_stop=self._stop, sync=self._sync)
        self.quotas: Quotas = default_quotas("not read")

    def _schema(self) -> PoolSchema:
        box: list[dict[str, Any]] = []
        retrier = Retrier(RetryPolicy(max_attempts=5), wait=event_waiter(self.stop_event))
        outcome = retrier.run(
            lambda: box.append(self.gateway.describe_user_pool(self.config.user_pool_id))
        )
        if outcome.error is not None:
            exc = outcome.error
            if isinstance(exc, CognitoError) and (
                isinstance(exc, FatalError) or exc.code == "ResourceNotFoundException"
            ):
                raise UsageError(f"user pool {self.config.user_pool_id}: {exc.code}: "
                                 f"{exc.message}") from None  # fmt: skip
            raise exc
        return PoolSchema.from_describe(box[0])

    def run(self) -> JobResult:
        config = self.config
        started = time.monotonic()
        schema = self._schema()
        # As a run does: the undo writes (UserUpdate) and reads each user first (UserRead).
        self.quotas = read_quotas(self.gateway, ["UserUpdate", "UserRead"])
        rows = sum(1 for _ in iter_records(self.path))
        report = config.report_path()
        jpath = journal_path(report)
        header = JournalHeader(file_sha256(self.path),
                               config.fingerprint() + (":force" if self.force else ""))
        carried = {} if config.dry_run else self._resume_state(jpath, header)
        wait = event_waiter(self.stop_event)
        lookup = LiveLookup(self.gateway, config.user_pool_id, key="username", paced=PacedCall(
            Pacer(config.get_rate), Retrier(RetryPolicy(max_attempts=config.max_attempts),
                                            wait=wait), wait))  # fmt: skip
        message_attrs = schema.auto_verified | schema.verify_before_update
        resolver = UndoResolver(
            lookup, force=self.force, verified_by_message=message_attrs,
            types={n: r.data_type for n, r in schema.rules.items()},
        )  # fmt: skip
        plan = PlanSummary(
            pool_id=config.user_pool_id, pool_name=schema.pool_name, region=self.gateway.region,
            endpoint=config.endpoint_url, rows=rows, to_apply=rows - len(carried),
            resumed=len(carried), upper_bound=True,
        )  # fmt: skip
        fill_plan(plan, config, self.quotas)  # one undo: no shards
        report.parent.mkdir(parents=True, exist_ok=True)
        if config.dry_run:
            return dry_run(resolver.items(self.path, {}), plan, report, resolve=resolver,
                           schema=None, stream=self.stream)  # fmt: skip
        if plan.to_apply and self.confirm is not None and not self.confirm(plan):
            raise UsageError("not confirmed: nothing was written")
        with self.signals if self.handle_signals else contextlib.nullcontext():
            return self._apply(resolver, message_attrs, plan, report, jpath, header,
                               carried, started)  # fmt: skip

    def _apply(
        self,
        resolver: UndoResolver,
        message_attrs: frozenset[str],
        plan: PlanSummary,
        report: Path,
        jpath: Path,
        header: JournalHeader,
        carried: dict[int, RowResult],
        started: float,
    ) -> JobResult:
        config = self.config
        writer = open_report(report)
        self.journal = journal = Journal(jpath, header, carry=iter(carried.values()))
        # The run's controller: it backs off at throttles, which right after a bad run may
        # well be the live application's calls being refused.
        controller = rate_controller(config, self.quotas, plan.rate)
        live = progress_figures(controller, lambda: self.runner, self.quotas.enforced)
        progress = Progress(plan.rows, quiet=config.quiet, stream=self.stream,  # type: ignore[arg-type]
                            extra=live)  # fmt: skip
        if not config.quiet:
            for warning in plan.warnings:
                self.stream.write(f"warning: {warning}\n")
        brake = Brake(FailureLimit.parse(config.max_failures))
        lock = threading.Lock()

        def on_result(result: RowResult) -> None:
            with lock:
                journal.write(result)
                writer.write(result)
            progress.add(result)
            if brake.add(result):
                runner.stop(brake.reason)

        for result in carried.values():
            writer.write(result)
            progress.add(result)
        gateway = UndoWriter(self.gateway, message_attrs)
        self.runner = runner = Runner(
            gateway,  # type: ignore[arg-type]
            RunnerSettings(
                user_pool_id=config.user_pool_id, workers=config.workers,
                retry=RetryPolicy(max_attempts=config.max_attempts,
                                  max_row_seconds=config.max_row_seconds),
                client_metadata=config.client_metadata, per_user_rate=config.per_user_rate,
            ),
            controller=controller, on_result=on_result, resolve=resolver,
            stop=self.stop_event,
        )  # fmt: skip
        gateway.pacer, gateway.wait = runner.pacer, event_waiter(self.stop_event)
        if self.stop_event.is_set():
            runner.stop(self.signals.reason or "interrupted")
        try:
            runner.run(resolver.items(self.path, carried))
        finally:
            progress.close()
            writer.close()
            if not runner.stopping:
                journal.complete()
            journal.close()
        counts = progress.counters
        duration = time.monotonic() - started
        summary: dict[str, Any] = {
            "undo_of": str(self.path), "rows": plan.rows,
            "counts": {s.value: counts.by_status.get(s.value, 0) for s in Status},
            "errors": dict(counts.by_error), "calls": runner.stats.calls,
            "throttles": runner.stats.throttles, "faults": runner.stats.faults,
            "duration_s": round(duration, 3),
            "rate": rate_label(config), "rate_ceiling": round(plan.rate, 2),
            "quota": {**self.quotas.public(), "share": round(plan.quota_share, 3)},
            "rate_final": round(controller.rate, 2), "rate_low": round(controller.history.low, 2),
            "rate_high": round(controller.history.high, 2),
            "achieved_rate": round(counts.by_status.get("updated", 0) / duration, 2)
            if duration > 0 else 0.0,
            "read_calls": resolver.lookup.reads, "stopped": runner.stop_reason,
            "force": self.force, "report": str(report), "journal": str(jpath),
            "input": str(self.path.resolve()), "input_sha256": header.input_sha256,
            "settings": config.public(), "resumed_rows": len(carried),
            "pool": {"id": config.user_pool_id, "region": self.gateway.region},
            "max_failures": {"limit": brake.limit.describe(), "failures": brake.failures,
                             "decided": brake.decided, "tripped": brake.tripped},
        }  # fmt: skip
        write_summary(report, summary)
        if not config.quiet:
            self.stream.write(format_summary(summary) + "\n")
        code = exit_code(summary["counts"], fatal=runner.fatal is not None or brake.tripped,
                         signal_code=self.signals.code)  # fmt: skip
        return JobResult(code, summary, report)

    def _resume_state(self, jpath: Path, header: JournalHeader) -> dict[int, RowResult]:
        state = None if self.config.fresh else read_journal(jpath)
        if state is None or state.complete:
            return {}
        if state.header != header:
            raise ResumeError(f"{jpath}: an unfinished undo with other settings (or of another "
                              "run) is recorded here; pass --fresh to discard it")  # fmt: skip
        # An undo has a row per before-image (the rows a run wrote), so its finished results
        # are held while it resumes; the run's own resume streams them (``job._carry``).
        return {r.row: r for r in state.records() if r.row in state.finished}

    def _stop(self, reason: str) -> None:
        if self.runner is not None:
            self.runner.stop(reason)
        self.stop_event.set()

    def _sync(self) -> None:
        if self.journal is not None:
            self.journal.sync()
