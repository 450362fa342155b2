"""``cognito-batch undo REPORT``: put back what a run changed, from its before-images.

Undo is a run like any other: the undo file's records become planned ``UserUpdate``s fed
through the same ``Runner`` (one pacer under the UserUpdate quota, read with
GetProvisionedLimit, and the run's controller for the run's rate: ``rate_plan.py``; the same
retries, the brake), with a journal beside its report so rerunning the command resumes it,
one result row per record, and the same confirmation on a real pool (the plan names the
pool). Each record is planned as it is applied: the user is read (AdminGetUser, at the read
quota) right before its write, so the conflict check sees the value as it is then, and
``record.restore.plan_restore`` decides: ``updated`` (restored), ``unchanged`` (nothing to restore:
the run's write never landed, or an earlier undo did it), ``skipped`` ``Conflict`` (changed
again since; ``--force`` restores anyway).

Reads are per row rather than a snapshot: every record is a likely write, the reads (~100/s)
keep ahead of the writes (25/s), and a snapshot taken minutes earlier would miss a change
made since, which is what the conflict check is for.

Nothing in the undo file is trusted on its own word (``record.undo_check``, docs/undo.md):
before any call it is checked against the run's journal, which holds each image's digest and
the pool the run wrote to. The undo writes only to that pool (``--user-pool-id`` must name
it), only the users and attributes of images the journal vouches for, and refuses an undo
file changed after the run wrote it (another pool, user, attribute or value, a record dropped
or added). Someone who can rewrite the journal too is out of its reach. Credentials, profile
and client metadata never come from a file.

The undo of ``reports/x.csv`` is reported in ``reports/x.undo.csv`` (``--report`` to choose;
never the run's own files, nor its before-images: the one output guard, ``engine.pipeline``).
It goes through the same pipeline as a run: the report's lock, the timeline, the give-up
breaker (``--give-up-after``), the summary with its exit code.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from batch.cognito import CognitoGateway
from batch.commands.dry_run import dry_run
from batch.commands.pool import describe_pool, gateway_for
from batch.config import JobConfig, build_config, replayable
from batch.engine.pipeline import Pipeline
from batch.engine.runner import Runner
from batch.engine.work import Resolve, Work
from batch.errors import UsageError
from batch.models import JobResult, RowResult, Status, UserUpdate
from batch.pace.pacer import Pacer, Waiter, event_waiter
from batch.pace.quota import Quotas, default_quotas, read_quotas
from batch.pace.rate_plan import rate_controller
from batch.pace.retrying import Cancelled, Retrier, RetryPolicy
from batch.plan.lookup import LiveLookup, PacedCall
from batch.plan.schema import PoolSchema
from batch.plan.summary import PlanSummary, fill_plan
from batch.record.before_images import (
    UndoRecord,
    iter_records,
    read_header,
)
from batch.record.guard import check_own_report, run_records
from batch.record.journal import JournalHeader, JournalState
from batch.record.layout import RunFiles, undo_path, undo_report_path
from batch.record.restore import message_split, plan_restore
from batch.record.summary import RunSummary
from batch.record.sync_restore import plan_sync_restore
from batch.record.undo_check import Checked, check, run_pool
from batch.rowset import RowSet
from batch.specs import Shard
from batch.store.storage import file_sha256
from batch.view.logs import EventLog

Confirm = Callable[[PlanSummary], bool]
#: Settings of the run that the undo keeps (how fast and how hard it tries, not what it writes).
#: Never credentials, a profile or client metadata (values for Lambda triggers): a file does
#: not choose who the undo is, nor what it sends besides the restore.
KEPT = ("rate", "workers", "max_attempts", "max_row_seconds", "per_user_rate", "get_rate",
        "max_rate", "give_up_after")


def undo_config(report: str, overrides: Mapping[str, Any]) -> tuple[JobConfig, dict[str, Any]]:
    """The undo's settings: the pool the run's journal records (``--user-pool-id``, when
    given, must name it: ``undo_check.run_pool``), speed from the run's summary (when the run
    got to write one), flags over both. Returns the config and the undo file's header."""
    path = Path(report)
    _refuse_merged(path)
    upath = undo_path(path)
    header = read_header(upath)
    pool, region = run_pool(path, overrides.get("user_pool_id"), overrides.get("region"))
    data: dict[str, Any] = {}
    try:
        settings = RunSummary.of(path).settings
        data.update(replayable({k: settings[k] for k in KEPT if k in settings}))
    except (OSError, UsageError, TypeError):
        pass  # a run killed before its summary: the header has what matters
    data.update({
        "input": str(upath), "user_pool_id": pool, "region": region,
        "report": str(undo_report_path(path)), "undo": False, "key": "username",
    })
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


def _refuse_merged(report: Path) -> None:
    """A merged report has no journal or before-images of its own: each shard's run is undone
    from its own, checked against its own journal. The shards' names are derived from the
    report's, never read from its summary (a file does not choose what an undo touches)."""
    try:
        shards = RunSummary.of(report).shards
    except (OSError, UsageError):
        return
    if shards:
        names = [Shard(k, len(shards)).path(report) for k in range(len(shards))]
        raise UsageError(f"{report}: a merged report has no before-images of its own; undo its "
                         "shards one by one: "
                         + "; ".join(f"cognito-batch undo {name}" for name in names))


class UndoWriter:
    """The gateway for undo writes: a restore whose ``*_verified`` flag was false goes out as
    two calls (``record.restore.message_split``), the second paced like any other."""

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
                                            client_metadata=client_metadata)
        if late:
            if self.pacer is not None and self.wait is not None:
                if not self.pacer.acquire(self.wait):
                    raise Cancelled("job stopping")
            self.gateway.update_user_attributes(user_pool_id, username, late,
                                                client_metadata=client_metadata)

    def delete_user_attributes(
        self, user_pool_id: str, username: str, names: Sequence[str]
    ) -> None:
        self.gateway.delete_user_attributes(user_pool_id, username, names)

    def __getattr__(self, name: str) -> Any:
        """A sync's restores: enable/disable, group changes, delete a created user."""
        return getattr(self.gateway, name)


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
        self.checked: Checked | None = None  # what the check let through (None: everything)
        #: A created user's groups now (AdminListGroupsForUser, paced): its undo deletes it
        #: only if it is as the run left it.
        self.groups_of: Callable[[str], list[str]] | None = None
        self._lock = threading.Lock()

    def items(self, path: Path, done: RowSet) -> Iterator[UserUpdate | RowResult]:
        """Placeholder updates, one a record the check let through (``undo_check``); the
        record waits here for ``__call__``. The others, and the rows the run updated with no
        image, are reported as what they are, with no call."""
        checked = self.checked
        for record in iter_records(path):
            if record.row in done:
                continue
            if checked is not None and record.row not in checked.restorable:
                yield _unrestored(record, checked)
                continue
            with self._lock:
                self._pending[record.row] = record
            yield UserUpdate(record.row, record.username, ())
        for row, username in checked.unrestorable() if checked is not None else ():
            if row not in done:
                yield RowResult(row, username, Status.SKIPPED, error_code="NoBeforeImage",
                                error_message="the run updated this user but recorded no "
                                "before-image: undo cannot restore it")

    def __call__(self, update: UserUpdate) -> UserUpdate | RowResult:
        with self._lock:
            record = self._pending.pop(update.row)
        users = [u for u in self.lookup.find(record.username)
                 if u.get("username") == record.username]
        current = users[0] if users else None
        if record.created and current is not None and self.groups_of is not None:
            current = {**current, "@groups": ";".join(self.groups_of(record.username))}
        restore = plan_sync_restore if record.sync else plan_restore  # a sync's row: issue 21
        return restore(record, current, force=self.force,
                            types=self.types,
                            verified_by_message=self.verified_by_message)


def _unrestored(record: UndoRecord, checked: Checked) -> RowResult:
    """A record the undo does not restore: its row has no journal line (a run killed before
    it recorded the row), or the run sent no call for it."""
    if record.row in checked.not_journaled:
        return RowResult(record.row, record.username, Status.SKIPPED, error_code="NotJournaled",
                         error_message="the run stopped before its journal recorded this row: "
                         "its before-image cannot be checked, so it is not restored")
    return RowResult(record.row, record.username, Status.UNCHANGED,
                     error_message="the run wrote nothing for this row")


class UndoWork(Work):
    """An undo's records through the pipeline: each read and planned as it is applied."""

    def __init__(
        self, job: UndoJob, resolver: UndoResolver, writer: UndoWriter, header: JournalHeader
    ) -> None:
        self.job, self.resolver, self._writer, self.header = job, resolver, writer, header

    def writer(self) -> UndoWriter:
        return self._writer

    def resolve(self) -> Resolve:
        return self.resolver

    def feed(
        self, reported: RowSet, stop: Callable[[str], None]
    ) -> Iterator[UserUpdate | RowResult]:
        return self.resolver.items(self.job.path, reported)

    def started(self, runner: Runner) -> None:
        self._writer.pacer = runner.pacer
        self._writer.wait = event_waiter(self.job.stop_event)

    def summary(self, summary: RunSummary) -> RunSummary:
        return summary.replace(
            undo_of=str(self.job.path), force=self.job.force,
            read_calls=self.resolver.lookup.reads, input=str(self.job.path.resolve()),
            input_sha256=self.header.input_sha256,
        )

    def announce(self, log: EventLog, summary: RunSummary) -> None:
        pass


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
        of: Path | None = None,
    ) -> None:
        self.config = config
        self.force = force
        self.stream = stream or sys.stderr
        self.confirm = confirm
        self.path = Path(config.input)
        # The run being undone: its report, journal, summary and before-images are kept.
        name = self.path.name.removesuffix(".undo.jsonl")
        self.of = of or self.path.with_name(name)
        self.gateway = gateway or gateway_for(config)
        self.log = EventLog(self.stream, format=config.log_format)  # type: ignore[arg-type]
        self.pipeline = Pipeline(config, stream=self.stream, log=self.log,  # type: ignore[arg-type]
                                 handle_signals=handle_signals)
        self.stop_event = self.pipeline.stop_event
        self.quotas: Quotas = default_quotas("not read")
        # Also before the first write: an s3:// report's state object goes too (``undo_s3``).
        self.forget_state: Callable[[], None] = lambda: None

    @property
    def runner(self) -> Runner | None:
        return self.pipeline.runner

    def run(self) -> JobResult:
        config = self.config
        kept = run_records(self.of, "the run being undone")
        check_own_report(config.report_path(), file_sha256(self.path))
        with self.pipeline.on(config.report_path(), input=self.path, protected=kept):
            return self._run()

    def _run(self) -> JobResult:
        config = self.config
        started = time.monotonic()
        # Before any call: the undo file against the run's journal (who, what, where).
        checked = check(self.of)
        if config.user_pool_id != checked.pool:
            raise UsageError(f"pool {config.user_pool_id}: the run being undone wrote to "
                             f"{checked.pool} (its journal); an undo writes only there")
        schema = PoolSchema.from_describe(
            describe_pool(self.gateway, config.user_pool_id, self.stop_event))
        # As a run does: the undo writes (UserUpdate) and reads each user first (UserRead).
        self.quotas = read_quotas(self.gateway, ["UserUpdate", "UserRead"])
        rows = sum(1 for _ in iter_records(self.path)) + len(checked.no_image)
        header = JournalHeader(file_sha256(self.path),
                               config.fingerprint() + (":force" if self.force else ""))
        state = None if config.dry_run else self.pipeline.resume(header, mismatch=_mismatch)
        if state is not None and state.complete:
            state = None  # a finished undo is simply done again: each restore is checked
        wait = event_waiter(self.stop_event)
        lookup = LiveLookup(self.gateway, config.user_pool_id, key="username", paced=PacedCall(
            Pacer(config.get_rate), Retrier(RetryPolicy(max_attempts=config.max_attempts),
                                            wait=wait), wait))
        message_attrs = schema.auto_verified | schema.verify_before_update
        resolver = UndoResolver(
            lookup, force=self.force, verified_by_message=message_attrs,
            types={n: r.data_type for n, r in schema.rules.items()},
        )
        resolver.checked = checked
        groups_read = PacedCall(Pacer(config.get_rate), Retrier(
            RetryPolicy(max_attempts=config.max_attempts), wait=wait), wait)
        resolver.groups_of = lambda name: groups_read(
            lambda: self.gateway.list_groups_for_user(config.user_pool_id, name))
        resumed = len(state.finished) if state is not None else 0
        plan = PlanSummary(
            pool_id=config.user_pool_id, pool_name=schema.pool_name, region=self.gateway.region,
            endpoint=config.endpoint_url, rows=rows, to_apply=rows - resumed,
            resumed=resumed, upper_bound=True,
        )
        fill_plan(plan, config, self.quotas)  # one undo: no shards
        if config.dry_run:
            return dry_run(resolver.items(self.path, RowSet()), plan, config.report_path(),
                           resolve=resolver, schema=None, stream=self.stream)
        if plan.to_apply and self.confirm is not None and not self.confirm(plan):
            raise UsageError("not confirmed: nothing was written")
        # The run's incremental state says what it applied; once anything is put back it no
        # longer does: removed before the first write, the next --incremental is a full run.
        RunFiles(self.of).state.unlink(missing_ok=True)
        self.forget_state()
        work = UndoWork(self, resolver, UndoWriter(self.gateway, message_attrs), header)
        # The run's controller: it backs off at throttles, which right after a bad run may
        # well be the live application's calls being refused.
        controller = rate_controller(config, self.quotas, plan.rate)
        with self.pipeline.handled():
            return self.pipeline.apply(work, header=header, state=state, plan=plan,
                                       quotas=self.quotas, controller=controller,
                                       started=started)


def _mismatch(state: JournalState, header: JournalHeader) -> str:
    return (f"{state.path}: an unfinished undo with other settings (or of another run) is "
            "recorded here; pass --fresh to discard it")
