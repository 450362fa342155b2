"""``--incremental``: a run that sends only what changed since the last finished run.

Before the apply, one pass over today's input plans every row and hashes the desired state it
asks for (``record.state.desired_hash``) into a spill on disk; the diff against the state the
last finished run left (``REPORT.state.parquet``) gives the rows whose desired state is already
true: they are reported ``unchanged`` without a call. Everything else goes through the run as
usual: rows that changed, rows the state has as not applied (their last attempt failed, was
skipped or invalid), new keys. ``--verify N|P%`` takes a random sample of the unchanged rows
(the same sample on a resume: seeded by the input and settings) and sends them through a read
and compare (as ``--skip-unchanged``): drift is fixed and counted.

At the end of a finished run the new state is written from the same spill and the journal's
results (a row is applied when its last result is ``updated`` or ``unchanged``); a run that is
stopped or killed leaves the previous state, and its resume computes the same diff.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import numpy as np

from batch.config import verify_sample
from batch.engine.work import Resolve
from batch.inputs.reader import iter_rows
from batch.inputs.scan import KeyScan, key_hash
from batch.models import RowResult, Status, UserUpdate
from batch.pace.pacer import Pacer, event_waiter
from batch.pace.retrying import Retrier, RetryPolicy
from batch.plan.desired import GROUP_SEPARATOR, SYNC_COLUMNS
from batch.plan.lookup import LiveLookup, PacedCall, Resolver
from batch.record.journal import read_journal
from batch.record.layout import RunFiles
from batch.record.state import (
    STATE_VERSION,
    Spill,
    desired_hash,
    diff,
    open_spill,
    read_state_info,
    rowset_of,
    state_settings,
    write_state,
)
from batch.rowset import RowSet

#: ``run.Job`` (typed loosely: it imports this module).
Job = Any
UNCHANGED_MESSAGE = "unchanged since the last applied state"


def settings_of(job: Job) -> str:
    """What shapes the state's hashes: pool, key, key column, mapping, empty-cell rule."""
    config = job.config
    return state_settings({
        "pool": config.user_pool_id, "key": config.key, "column": config.username_column,
        "mapping": sorted(job.columns.items()), "empty": config.empty,
        "mark_verified": config.mark_verified,
        "sync": [c for c in SYNC_COLUMNS if c in job.header],
    })


def _sync_cells(values: dict[str, str], present: list[str]) -> list[tuple[str, str]]:
    out = []
    for column in present:
        cell = values.get(column, "").strip()
        if column == "groups":
            cell = GROUP_SEPARATOR.join(sorted(g.strip() for g in cell.split(GROUP_SEPARATOR)
                                               if g.strip()))
        else:
            cell = cell.lower()
        out.append((column, cell))
    return out


class Incremental:
    """The diff of one incremental run, its verify sample and its new state."""

    def __init__(self, job: Job, scan: KeyScan, *, input_sha256: str) -> None:
        self.job, self.scan = job, scan
        self.files = RunFiles(job.config.report_path())
        self.settings = settings_of(job)
        self.note = ""
        info = read_state_info(self.files.state)
        state: Path | None = None
        if info is None:
            self.note = "no applied state yet: a full run, which writes it"
        elif info.version != STATE_VERSION or info.settings != self.settings:
            self.note = (f"{job._shown(self.files.state)} was made with other settings (mapping, "
                         "pool or key): a full run, which writes a new state")
        else:
            state = info.path
        self.spill = self._spill()
        try:
            dups = np.array(sorted(scan.counts), dtype=np.uint64)
            found = diff(self.spill, state, dups, scan.last_input_row)
        except BaseException:
            self.spill.remove()
            raise
        self.changed = found.changed
        self.verify = self._sample(found.unchanged, input_sha256)
        self.unchanged = found.unchanged
        for row in self.verify_rows:
            self.unchanged.discard(row)
        self.drift = 0
        self._lock = threading.Lock()

    # -- before the apply --------------------------------------------------------------------

    def _spill(self) -> Spill:
        job, config = self.job, self.job.config
        spill = open_spill(self.files.report.parent, self.scan.rows)
        planner, column = job.planner(), config.username_column
        present = [c for c in SYNC_COLUMNS if c in job.header]
        try:
            for row in iter_rows(job.source):
                key = row.values.get(column, "")
                if not key or (job.shard is not None and not job.shard.owns(key)):
                    continue
                item = planner.plan(row)
                wanted = 0
                if isinstance(item, UserUpdate):
                    wanted = desired_hash(item, _sync_cells(row.values, present))
                spill.add(row.row, key_hash(key), wanted, key)
            spill.close()
        except BaseException:
            spill.close()
            spill.remove()
            raise
        return spill

    def _sample(self, unchanged: RowSet, seed_text: str) -> RowSet:
        count = verify_sample(self.job.config.verify, len(unchanged)) if self.job.config.verify \
            else 0
        self.verify_rows: list[int] = []
        if not count:
            return RowSet()
        seed = int.from_bytes(hashlib.sha256(f"{seed_text}:{self.settings}".encode()).digest()[:8],
                              "little")
        rng = np.random.default_rng(seed)
        last = self.scan.last_input_row
        if len(unchanged) * 10 >= last:  # mostly unchanged (a nightly delta): draw and keep
            chosen: set[int] = set()
            while len(chosen) < count:
                for row in rng.integers(1, last + 1, size=2 * count).tolist():
                    if row in unchanged:
                        chosen.add(row)
                        if len(chosen) == count:
                            break
            rows = np.array(sorted(chosen), dtype=np.int64)
        else:
            every = np.flatnonzero(unchanged.mask(last))
            rows = np.sort(rng.choice(every, size=count, replace=False))
        self.verify_rows = [int(r) for r in rows]
        return rowset_of(rows, last)

    # -- the feed and the resolve step -------------------------------------------------------

    def unchanged_result(self, row: int, key: str) -> RowResult:
        is_key = self.job.config.key != "username"
        return RowResult(row, "" if is_key else key, Status.UNCHANGED,
                         error_message=UNCHANGED_MESSAGE, key=key if is_key else "")

    def resolve(self, inner: Resolve | None) -> Resolve | None:
        """Rows of the verify sample are read and compared first (drift is what differs)."""
        if not self.verify_rows:
            return inner
        job, config = self.job, self.job.config
        wait = event_waiter(job.stop_event)
        paced = PacedCall(Pacer(config.get_rate if config.key == "username" else config.list_rate),
                          Retrier(RetryPolicy(max_attempts=config.max_attempts), wait=wait),
                          wait)
        lookup = LiveLookup(job.gateway, config.user_pool_id, key=config.key, paced=paced)
        self.lookup = lookup
        types = {n: r.data_type for n, r in job.schema.rules.items()} if job.schema else {}
        check = Resolver(lookup, config.key, True, config.mark_verified, types)
        verify = self.verify

        def resolve(update: UserUpdate) -> UserUpdate | RowResult:
            if update.row not in verify:
                return inner(update) if inner is not None else update
            found = check(update)
            if isinstance(found, RowResult):
                return found
            with self._lock:
                self.drift += 1
            return inner(found) if inner is not None else found

        return resolve

    @property
    def reads(self) -> int:
        lookup = getattr(self, "lookup", None)
        return int(lookup.reads) if lookup is not None else 0

    # -- after the apply ---------------------------------------------------------------------

    def finish(self, finished: bool) -> None:
        """A finished run writes the new state (atomically); any run removes the spill."""
        try:
            if finished:
                applied = _applied(self.files.journal, self.scan.last_input_row)
                write_state(self.spill, self.files.state, settings=self.settings,
                            applied=lambda rows: applied[rows])
        finally:
            self.spill.remove()

    def summary(self) -> dict[str, Any]:
        return {"state": self.job._shown(self.files.state), "changed": self.changed,
                "unchanged": len(self.unchanged), "verified": len(self.verify_rows),
                "drift": self.drift, "verify_reads": self.reads,
                "full_run": bool(self.note)}


def _applied(journal: Path, last_row: int) -> np.ndarray:
    """A mask over rows: the row's last result in ``journal`` is updated or unchanged."""
    applied = RowSet(last_row)
    state = read_journal(journal)
    if state is not None:
        for _, cells in state.carried():
            if cells[3] in ("updated", "unchanged"):
                applied.add(cells[0])
    return applied.mask(last_row)


class StateSink:
    """Ends with the apply: the new state when it finished (``Incremental.finish``)."""

    def __init__(self, incremental: Incremental) -> None:
        self.incremental = incremental

    def on_result(self, result: RowResult) -> None:
        pass

    def close(self, finished: bool) -> None:
        self.incremental.finish(finished)
