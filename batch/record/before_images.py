"""Before-images: what every row's user held before the run wrote it, and the restore it implies.

For every row the run writes, the previous value of each attribute it writes (``null`` when
absent) and of ``email_verified`` / ``phone_number_verified`` go to ``REPORT.undo.jsonl``
beside the report, with what the run wrote (``null`` for a delete), *before* the write is sent:

    {"undo": 1, "pool": ..., "region": ..., "input_sha256": ..., "settings": ...}   header
    {"row": 17, "username": "u017", "before": {...}, "wrote": {...}}              per row
    {"complete": true}                                                             run ended

Durability: a record is flushed and fsync'd before its row's write leaves the process, so a
crash between the read and the write, or between the write and the journal, still leaves a
correct undo. Workers share the fsyncs (group commit): a worker whose record is not yet on
disk either runs the next fsync, covering every record written so far, or waits for the one
running. With one row in flight that is one fsync per row; with eight, about one per eight.

Each image's digest (``digest``) goes into its row's journal line, which is what ``undo``
checks this file against (``undo_check``): the file alone cannot aim an undo.

Resume keeps the first image: a rerun of an unfinished run appends to the same file and never
records a row again, because after a crash the user may already hold the run's values.

The values are personal data: the file is owner-only (``files.open_private``) and nothing here
logs them. Reads come from the job's lookup (``snapshot.py``): the read quotas, not UserUpdate.

``record.restore.plan_restore`` turns one record and the user's current attributes into the
undo's write:
previous values back, attributes the run added deleted, and a user whose attribute changed
again since the run (neither the run's value nor the previous one) is ``skipped``
(``Conflict``) unless forced. Restoring an email or phone number in a pool that verifies it
sends ``*_verified = true`` in the same call (no message), then puts the flag back as it was.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from batch.errors import FatalError, UsageError
from batch.models import RowResult, Status, UserUpdate
from batch.plan.lookup import Lookup
from batch.plan.operations import Kind, SyncUpdate
from batch.plan.schema import VERIFIED_FLAG
from batch.record.layout import undo_path as undo_path  # named there, kept here for callers
from batch.rowset import RowSet
from batch.store.files import open_private

VERSION = 1
FLAGS = tuple(VERIFIED_FLAG.values())
#: The header fields that must match for a rerun to append to an unfinished run's images.
SAME_RUN = ("pool", "input_sha256", "settings")

Value = str | None
#: A row of a resume found already holding what an earlier attempt recorded an image for.
WRITTEN_BEFORE = "written by an earlier attempt of this run (read back after the restart)"




@dataclass(frozen=True, slots=True)
class UndoRecord:
    """One row's before-image: previous values (None: absent) and what the run wrote."""

    row: int
    username: str
    before: Mapping[str, Value]
    wrote: Mapping[str, Value]
    # A sync's row (issue 21), only in its records: the run created the user; the enabled
    # state before and as written; the managed groups it added the user to / removed from.
    created: bool = False
    enabled: tuple[bool | None, bool] | None = None
    groups_added: tuple[str, ...] = ()
    groups_removed: tuple[str, ...] = ()

    @property
    def sync(self) -> bool:
        return bool(self.created or self.enabled or self.groups_added or self.groups_removed)

    def as_record(self) -> dict[str, Any]:
        out = {"row": self.row, "username": self.username, "before": dict(self.before),
               "wrote": dict(self.wrote)}
        if self.created:
            out["created"] = True
        if self.enabled is not None:
            out["enabled"] = {"before": self.enabled[0], "wrote": self.enabled[1]}
        if self.groups_added or self.groups_removed:
            out["groups"] = {"added": list(self.groups_added),
                             "removed": list(self.groups_removed)}
        return out

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> UndoRecord:
        enabled = record.get("enabled")
        groups = record.get("groups") or {}
        return cls(int(record["row"]), str(record["username"]), dict(record["before"]),
                   dict(record["wrote"]), created=record.get("created") is True,
                   enabled=(enabled["before"], bool(enabled["wrote"])) if enabled else None,
                   groups_added=tuple(groups.get("added", ())),
                   groups_removed=tuple(groups.get("removed", ())))


def digest(record: UndoRecord) -> str:
    """The image's digest: SHA-256 of its canonical JSON (keys sorted, no spaces), 128 bits
    in hex. Kept in the run's journal line for the row, it is what ties the undo file to the
    run: an image changed, added or dropped afterwards no longer matches (``undo_check``)."""
    text = json.dumps(record.as_record(), sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def before_image(update: UserUpdate, current: Mapping[str, str]) -> UndoRecord:
    """The record for ``update`` (final: resolved and diffed) against the user's ``current``."""
    wrote: dict[str, Value] = dict(update.attributes)
    wrote.update({name: None for name in update.deletes})
    names = list(wrote) + [f for f in FLAGS if f not in wrote]
    before = {name: current.get(name.removeprefix("dev:")) for name in names}
    if not isinstance(update, SyncUpdate):
        return UndoRecord(update.row, update.username, before, wrote)
    kinds = {op.kind for op in update.ops}
    toggled = kinds & {Kind.ENABLE, Kind.DISABLE}
    was = current.get("@enabled")
    return UndoRecord(
        update.row, update.username, before, wrote, created=Kind.CREATE in kinds,
        enabled=(None if was is None else was == "true", Kind.ENABLE in kinds) if toggled
        else None,
        groups_added=tuple(op.group for op in update.ops if op.kind is Kind.ADD_TO_GROUP),
        groups_removed=tuple(op.group for op in update.ops if op.kind is Kind.REMOVE_FROM_GROUP),
    )


class UndoLog:
    """The before-image store: appends records durably before their writes. Thread-safe."""

    def __init__(
        self, path: Path, header: Mapping[str, Any], *, journaled: RowSet | None = None
    ) -> None:
        self.path = path
        self.records = 0  # written by this process
        self.fsyncs = 0
        self.fsync_seconds = 0.0
        self._done = bytearray()  # rows with an image already (a bitmap: 1 bit a row)
        # Each image's digest until its row's journal line takes it (``take``): the rows in
        # flight, and on a resume the earlier attempt's images whose rows are not
        # ``journaled`` (finished, their lines carried with their digests) yet.
        self._digests: dict[int, str] = {}
        self._users: dict[int, str] = {}  # the user each of those earlier images names
        previous = _read_header(path)
        resume = previous is not None and not previous[1] and all(
            previous[0].get(k) == header.get(k) for k in SAME_RUN
        )
        if resume:
            for record in iter_records(path):
                self._mark(record.row)
                if journaled is None or record.row not in journaled:
                    self._digests[record.row] = digest(record)
                    self._users[record.row] = record.username
        self._handle: IO[str] = open_private(path, "a" if resume else "w", encoding="utf-8")
        if not resume:
            self._handle.write(json.dumps({"undo": VERSION, **header}) + "\n")
            self._handle.flush()
            os.fsync(self._handle.fileno())
            _sync_dir(path.parent)  # a power cut must not lose the new file's name either
        self.resumed = resume
        self._cond = threading.Condition(threading.Lock())
        self._written = 0
        self._synced = 0
        self._syncing = False

    def _mark(self, row: int) -> None:
        byte = row >> 3
        if byte >= len(self._done):
            self._done.extend(bytes(byte + 1 - len(self._done) + 1024))
        self._done[byte] |= 1 << (row & 7)

    def has(self, row: int) -> bool:
        byte = row >> 3
        return byte < len(self._done) and bool(self._done[byte] & (1 << (row & 7)))

    def earlier_user(self, row: int) -> str | None:
        """The user an earlier attempt's image of ``row`` names, while its line is pending."""
        with self._cond:
            return self._users.get(row)

    def take(self, row: int) -> str:
        """The digest of ``row``'s image for its journal line ('' when it has none), once."""
        with self._cond:
            return self._digests.pop(row, "")

    def record(self, image: UndoRecord) -> None:
        """Append ``image`` and return once it is on disk (group commit, see the module)."""
        line = json.dumps(image.as_record(), ensure_ascii=False) + "\n"
        with self._cond:
            self._digests[image.row] = digest(image)
            self._handle.write(line)
            self._handle.flush()
            self._mark(image.row)
            self.records += 1
            self._written += 1
            mine = self._written
            while self._synced < mine:
                if self._syncing:
                    self._cond.wait()
                    continue
                self._syncing = True
                target = self._written
                self._cond.release()  # others append while this fsync runs
                started = time.perf_counter()
                try:
                    _datasync(self._handle.fileno())
                finally:
                    self._cond.acquire()
                    self._syncing = False
                    self._cond.notify_all()
                self.fsyncs += 1
                self.fsync_seconds += time.perf_counter() - started
                self._synced = max(self._synced, target)

    def complete(self) -> None:
        """The run ended: the next run with this report starts a new file."""
        with self._cond:
            self._handle.write(json.dumps({"complete": True}) + "\n")
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        with self._cond:
            if not self._handle.closed:
                self._handle.flush()
                os.fsync(self._handle.fileno())
                self._handle.close()

    def stats(self) -> dict[str, Any]:
        return {"file": str(self.path), "records": self.records, "fsyncs": self.fsyncs,
                "fsync_ms": round(self.fsync_seconds * 1000, 1),
                "resumed": self.resumed}


def _sync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not possible everywhere (some platforms cannot open a folder)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _datasync(fd: int) -> None:
    """fdatasync where there is one: the data and the size, not the timestamps."""
    getattr(os, "fdatasync", os.fsync)(fd)


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    """The file's whole JSON lines; a torn or garbled last line (a crash) ends it."""
    return (record for _, record in _numbered(path))


def _numbered(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) of ``_lines``."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.endswith(b"\n"):
                return
            try:
                record = json.loads(raw)
            except ValueError:
                return
            if isinstance(record, dict):
                yield number, record


def _read_header(path: Path) -> tuple[dict[str, Any], bool] | None:
    """(header, complete) of an existing file, or None when there is none or it is not ours."""
    if not path.is_file():
        return None
    lines = _lines(path)
    header = next(lines, None)
    if header is None or header.get("undo") != VERSION:
        return None
    return header, any(r.get("complete") for r in lines)


def unfinished_images(path: Path) -> int:
    """How many before-images an unfinished run left in ``path`` (0: none, or it finished)."""
    found = _read_header(path)
    if found is None or found[1]:
        return 0
    return sum(1 for record in _lines(path) if "row" in record)


def read_header(path: Path) -> dict[str, Any]:
    """The header of an undo file; a UsageError naming the file when there is none."""
    found = _read_header(path)
    if found is None:
        raise UsageError(
            f"{path}: no before-images here (the run had --no-undo or was a dry run, or this "
            "is not the report's folder)"
        )
    return found[0]


def iter_records(path: Path) -> Iterator[UndoRecord]:
    """Every row's image in file order; a row recorded twice keeps its first image. A record
    not of the shape this module writes (edited by hand, or another tool's) is refused in one
    line naming the file and line: an undo must not guess what a broken image meant."""
    lines = _numbered(path)
    next(lines, None)
    for number, record in lines:
        if "row" in record:
            problem = _malformed(record)
            if problem:
                raise UsageError(f"{path}, line {number}: not a before-image record ({problem});"
                                 " the file was changed after the run wrote it")
            yield UndoRecord.from_record(record)


def earlier_leavers(
    path: Path, header: Mapping[str, Any], *, past: int
) -> tuple[dict[int, str], int]:
    """The images an unfinished earlier attempt of this run (``SAME_RUN`` with ``header``)
    recorded for rows past ``past``, a ``--disable-missing`` run's leavers: row -> username of
    each that only disables an enabled user (first image of a row), and the highest row any
    image past ``past`` names (0: none). A resume gives those rows back under their own users
    (``commands.sync``); the file alone never adds a user to write. Memory: those rows."""
    found = _read_header(path)
    if found is None or found[1] or not all(found[0].get(k) == header.get(k)
                                            for k in SAME_RUN):
        return {}, 0
    out: dict[int, str] = {}
    top = 0
    for record in iter_records(path):
        if record.row <= past:
            continue
        top = max(top, record.row)
        if (record.enabled == (True, False) and not record.wrote and not record.created
                and not record.groups_added and not record.groups_removed):
            out.setdefault(record.row, record.username)
    return out, top


def _malformed(record: Mapping[str, Any]) -> str:
    """What is wrong with a record's shape ('' when nothing); never quotes a value."""
    row = record.get("row")
    if not isinstance(row, int) or isinstance(row, bool) or row < 1:
        return "'row' is not a row number"
    if not isinstance(record.get("username"), str) or not record["username"]:
        return "'username' is not a name"
    for part in ("before", "wrote"):
        values = record.get(part)
        if not isinstance(values, dict):
            return f"'{part}' is missing or not an object"
        if not all(isinstance(v, str | None) for v in values.values()):
            return f"a value in '{part}' is neither text nor null"
    enabled, groups = record.get("enabled"), record.get("groups")
    if enabled is not None and not (isinstance(enabled, dict)
                                    and isinstance(enabled.get("wrote"), bool)
                                    and isinstance(enabled.get("before"), bool | None)):
        return "'enabled' is not a before/wrote pair of true or false"
    if groups is not None and not (isinstance(groups, dict) and all(
            isinstance(groups.get(k, []), list) and all(isinstance(g, str) for g in groups.get(
                k, [])) for k in ("added", "removed"))):
        return "'groups' is not lists of group names"
    if record.get("created") not in (None, True):
        return "'created' is not true"
    return ""


# -- the hook in the run's write path ---------------------------------------------------------


class Remembering:
    """A lookup that remembers, per thread, what the last ``find`` returned: the resolver
    reads the user, and the before-image reuses that read instead of paying for another."""

    def __init__(self, inner: Lookup) -> None:
        self.inner = inner
        self._last = threading.local()

    @property
    def reads(self) -> int:
        return self.inner.reads

    @reads.setter
    def reads(self, value: int) -> None:
        self.inner.reads = value

    def find(self, key: str) -> list[dict[str, str]]:
        users = self.inner.find(key)
        self._last.users = users
        return users

    def take(self) -> list[dict[str, str]] | None:
        """What this thread's last ``find`` returned (once), or None."""
        users: list[dict[str, str]] | None = getattr(self._last, "users", None)
        self._last.users = None
        return users

    def peek(self) -> list[dict[str, str]] | None:
        """What this thread's last ``find`` returned, kept for ``take`` (the sync's resolve
        step reads it between the diff and the before-image)."""
        users: list[dict[str, str]] | None = getattr(self._last, "users", None)
        return users

    def close(self) -> None:
        self.inner.close()


class BeforeImages:
    """Wraps the runner's ``resolve`` step: the row is resolved (user found, diffed), its
    before-image stored durably, then the runner sends the write."""

    def __init__(
        self,
        resolve: Callable[[UserUpdate], UserUpdate | RowResult],
        lookup: Remembering,
        log: UndoLog,
    ) -> None:
        self.resolve, self.lookup, self.log = resolve, lookup, log

    def __call__(self, update: UserUpdate) -> UserUpdate | RowResult:
        self.lookup.take()
        resolved = self.resolve(update)
        users = self.lookup.take()
        if isinstance(resolved, RowResult):
            if resolved.status is Status.UNCHANGED and resolved.username and (
                    self.log.earlier_user(resolved.row) == resolved.username):
                # An earlier attempt recorded this row's image, so it was about to write (and
                # most likely wrote) it: the run changed this user, and undo must say so. Its
                # journal line takes that image's digest (``take``), as for any written row.
                return dataclasses.replace(resolved, status=Status.UPDATED,
                                           error_message=WRITTEN_BEFORE)
            return resolved
        if self.log.has(resolved.row):
            earlier = self.log.earlier_user(resolved.row)
            if earlier is not None and earlier != resolved.username:
                # Its journal line will vouch for that image: it must be this row's user.
                raise FatalError("UndoFileChanged", f"{self.log.path}: row {resolved.row}'s "
                                 "before-image names another user than the row; the file was "
                                 "changed after the run wrote it")
            return resolved
        current = next((u for u in users or () if u.get("username") == resolved.username), None)
        if current is None and isinstance(resolved, SyncUpdate) and (
                resolved.creates or resolved.preplanned):
            # a user this run creates: nothing before it; a leaver: the state its listing read
            current = dict(resolved.known)
        if current is not None:
            # A user the lookup did not find has no image: its write most likely fails
            # (UserNotFound); one created since the snapshot is not undone (README).
            self.log.record(before_image(resolved, current))
        return resolved
