"""``cognito-batch export``: every user's attributes, in the file format ``run`` reads.

The pool is paged with ListUsers (60 users a call) under its own quota (UserList, ~30/s, so
~1,800 users/s), paced and retried as ``snapshot.py`` reads it. The file is ``run``'s input:
a ``username`` column, then one column per attribute, named so ``run`` maps it back to the same
attribute (``plan.attribute_name``): ``custom:department`` becomes ``department``, unless the
bare name would mean something else (a standard attribute, or ``username``), then it keeps its
prefix. An absent attribute is an empty cell, which ``run`` leaves alone. Only attributes
``run`` can write are exported (never ``sub``, immutable or developer-only attributes), so
``run`` accepts the file as it is. The ``*_verified`` flags only when named in
``--attributes``: an edited email sent with the old ``email_verified = true`` would skip its
verification. The round trip holds: export, edit, ``run --skip-unchanged`` writes exactly the
edits, and the unedited file writes nothing. Values are written exactly as stored
(no spreadsheet-formula defusing: that would change them on the way back).

Memory is flat: users are streamed page by page; the CSV header comes from the pool's schema
(DescribeUserPool) or ``--attributes``, never from holding users. A Parquet file is written
at the end from the resumable CSV spool, in batches.

Resume: the rows go to ``OUT.partial`` and a checkpoint ``OUT.export.json`` holds the next
page's PaginationToken and the byte length written up to it (the partial file is fsync'd
first). Rerunning the same command truncates the partial file to that length and continues
from the token; ``--fresh`` starts over. Cognito does not document how long a PaginationToken
lasts: if it refuses a saved one (hours later, say), the export stops with exit 2 and says to
rerun with ``--fresh``. The output, the spool and the checkpoint are owner-only: they hold
personal data.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import stat
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from batch.cognito import CognitoGateway
from batch.errors import CognitoError, FatalError, RowError, UsageError
from batch.pace.pacer import Pacer, event_waiter
from batch.pace.retrying import Retrier, RetryPolicy
from batch.plan.lookup import PacedCall
from batch.plan.mapping import attribute_name
from batch.plan.schema import VERIFIED_FLAG, PoolSchema
from batch.store.files import atomic_path, create_private, reopen_private, write_text_atomic

FORMATS = ("csv", "jsonl", "parquet")
CHECKPOINT_SECONDS = 1.0
USERNAME = "username"
PAGE = 60  # ListUsers' most users a page (the gateway's Limit)
#: ``--sync-columns``: a user's enabled state and groups, as a sync's input states them.
SYNC_COLUMNS = ["enabled", "groups"]
#: Left out unless asked for: an export edited to a new email, run without --skip-unchanged,
#: would send the old ``email_verified = true`` with it and mark an unverified address verified.
VERIFIED_FLAGS = frozenset(VERIFIED_FLAG.values())


def export_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    suffix = "jsonl" if suffix in ("json", "ndjson") else suffix
    if suffix not in FORMATS:
        raise UsageError(f"{path}: export to a .csv, .jsonl or .parquet file")
    return suffix


def column_for(attr: str) -> str:
    """The input column ``run`` maps back to ``attr``: the bare custom name when unambiguous."""
    if attr.startswith("custom:"):
        bare = attr.removeprefix("custom:")
        if bare != USERNAME and attribute_name(bare, {}) == attr:
            return bare
    return attr


def export_attributes(schema: PoolSchema, wanted: Sequence[str] = ()) -> list[str]:
    """The attributes to export: those named (as ``run`` maps a column name), or every one
    ``run`` can write (no ``sub``, immutable or developer-only attributes), but the
    ``*_verified`` flags."""
    if not wanted:
        return [n for n in schema.writable_names()
                if not schema.rules[n].developer_only and n not in VERIFIED_FLAGS]
    out: list[str] = []
    for name in wanted:
        attr = attribute_name(name.strip(), {})
        problem = schema.check_attribute(attr)
        if problem:
            raise UsageError(f"--attributes {name!r}: {problem}; run could not write it back")
        if attr not in out:
            out.append(attr)
    return out


@dataclass(frozen=True, slots=True)
class ExportSettings:
    user_pool_id: str
    out: Path
    attributes: tuple[str, ...] = ()
    filter: str = ""
    list_rate: float = 25.0
    max_attempts: int = 8
    fresh: bool = False
    quiet: bool = False
    checkpoint_seconds: float = CHECKPOINT_SECONDS  # at most this much paging is redone
    sync_columns: bool = False  # also ``enabled`` and ``groups``: the sync's desired state


@dataclass(frozen=True, slots=True)
class ExportResult:
    path: Path
    users: int
    pages: int
    resumed: bool
    duration_s: float


class Exporter:
    """One export; ``run()`` pages the pool into the file. ``stop`` ends it at a page boundary
    (the checkpoint is then current)."""

    def __init__(
        self,
        settings: ExportSettings,
        gateway: CognitoGateway,
        *,
        stream: IO[str] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.gateway = gateway
        self.stream = stream or sys.stderr
        self.stop = stop or threading.Event()
        self.format = export_format(settings.out)
        self.partial = settings.out.with_name(settings.out.name + ".partial")
        self.checkpoint = settings.out.with_name(settings.out.name + ".export.json")

    def _paced(self) -> PacedCall:
        wait = event_waiter(self.stop)
        retrier = Retrier(RetryPolicy(max_attempts=self.settings.max_attempts), wait=wait)
        return PacedCall(Pacer(self.settings.list_rate), retrier, wait)

    def _schema(self, paced: PacedCall) -> PoolSchema:
        try:
            pool = paced(lambda: self.gateway.describe_user_pool(self.settings.user_pool_id))
        except CognitoError as exc:
            if isinstance(exc, FatalError) or exc.code == "ResourceNotFoundException":
                raise UsageError(f"user pool {self.settings.user_pool_id}: {exc.code}: "
                                 f"{exc.message}") from None
            raise
        return PoolSchema.from_describe(pool)

    def _identity(self, attributes: list[str]) -> dict[str, Any]:
        identity = {"export": 1, "pool": self.settings.user_pool_id,
                    "filter": self.settings.filter, "attributes": attributes,
                    "format": self.format}
        if self.settings.sync_columns:  # only when asked: older checkpoints still resume
            identity["sync_columns"] = True
        return identity

    def _memberships(self, paced: PacedCall) -> dict[str, list[str]]:
        """Every user's groups, read per group (ListGroups, then ListUsersInGroup: one call a
        group and 60 members, against one AdminListGroupsForUser a user): held while the
        export runs, as the sync's own membership read holds them."""
        pool = self.settings.user_pool_id
        out: dict[str, list[str]] = {}
        groups: list[str] = paced(lambda: self.gateway.list_groups(pool))
        for group in groups:
            token: str | None = None
            while True:
                page = functools.partial(self.gateway.list_users_in_group_page, pool, group,
                                         next_token=token)
                members, token = paced(page)
                for name in members:
                    out.setdefault(name, []).append(group)
                if not token:
                    break
        return out

    def _resume(self, identity: dict[str, Any]) -> tuple[str | None, int, int, int] | None:
        """(token, users, pages, bytes) of an unfinished export of the same thing, or None.
        Nothing here follows a symlink: a link at the partial file is never resumed into."""
        if self.settings.fresh or not self.checkpoint.is_file():
            return None
        try:
            spool = self.partial.lstat()
        except FileNotFoundError:
            return None
        try:
            saved = json.loads(self.checkpoint.read_text(encoding="utf-8"))
            if {k: saved.get(k) for k in identity} != identity:
                return None
        except (ValueError, AttributeError):
            return None
        if stat.S_ISLNK(spool.st_mode):
            raise UsageError(f"{self.partial}: a symlink where the export's partial file "
                             "belongs; remove it (the export writes only its own files)")
        why = _damage(saved, self.partial, spool.st_size, self.format,
                      filtered=bool(self.settings.filter))
        if why:
            raise UsageError(f"{self.checkpoint}: damaged checkpoint ({why}); rerun with "
                             "--fresh to start the export over")
        return saved["token"], saved["users"], saved["pages"], saved["bytes"]

    def run(self) -> ExportResult:
        started = time.monotonic()
        paced = self._paced()
        schema = self._schema(paced)
        attributes = export_attributes(schema, self.settings.attributes)
        columns = [column_for(a) for a in attributes]
        groups = self._memberships(paced) if self.settings.sync_columns else None
        if groups is not None:
            columns += SYNC_COLUMNS
        identity = self._identity(attributes)
        state = self._resume(identity)
        token, users, pages, size = state or (None, 0, 0, 0)
        # Resumed: cut to the checkpoint, refused if it is not our own file (a symlink or a
        # hard link planted there); fresh: a new file, whatever was at the name unlinked.
        handle = (
            reopen_private(self.partial, size, encoding="utf-8", newline="") if state
            else create_private(self.partial, encoding="utf-8", newline="")
        )
        try:
            spool_csv = self.format in ("csv", "parquet")
            writer = csv.writer(handle) if spool_csv else None
            if state is None and writer is not None:
                writer.writerow([USERNAME, *columns])
            last_checkpoint = time.monotonic()
            while True:
                if self.stop.is_set():
                    raise UsageError("export stopped; rerun the same command to resume it")
                page, token = self._page(paced, token, attributes)
                for user in page:
                    values = [user.get(a, "") for a in attributes]
                    if groups is not None:
                        values += [user.get("@enabled", ""),
                                   ";".join(sorted(groups.get(user[USERNAME], ())))]
                    if writer is not None:
                        writer.writerow([user[USERNAME], *values])
                    else:
                        record = {USERNAME: user[USERNAME]}
                        record.update({c: v for c, v in zip(columns, values, strict=True) if v})
                        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                users += len(page)
                pages += 1
                now = time.monotonic()
                if token and now - last_checkpoint >= self.settings.checkpoint_seconds:
                    self._save(handle, identity, token, users, pages)
                    last_checkpoint = now
                    if not self.settings.quiet:
                        self.stream.write(f"export: {users} users, {pages} pages\n")
                if not token:
                    break
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            handle.close()
        self._finish()
        return ExportResult(self.settings.out, users, pages, state is not None,
                            round(time.monotonic() - started, 3))

    def _page(
        self, paced: PacedCall, token: str | None, attributes: list[str]
    ) -> tuple[list[dict[str, str]], str | None]:
        pool, expression = self.settings.user_pool_id, self.settings.filter or None
        try:
            return paced(lambda: self.gateway.list_users_page(
                pool, pagination_token=token, filter_expression=expression,
                attributes_to_get=attributes,
            ))
        except RowError as exc:
            if token is None:
                raise UsageError(f"ListUsers refused: {exc.code}: {exc.message}") from None
            raise UsageError(
                f"{self.checkpoint}: Cognito refused the saved PaginationToken ({exc.code}): "
                "tokens do not last; rerun with --fresh to start the export over"
            ) from None

    def _save(self, handle: IO[str], identity: dict[str, Any], token: str, users: int,
              pages: int) -> None:
        """The rows before ``token`` are on disk, then the checkpoint says so."""
        handle.flush()
        os.fsync(handle.fileno())
        size = os.fstat(handle.fileno()).st_size
        state = {**identity, "token": token, "users": users, "pages": pages, "bytes": size}
        write_text_atomic(self.checkpoint, json.dumps(state) + "\n")

    def _finish(self) -> None:
        out = self.settings.out
        if self.format == "parquet":
            _csv_to_parquet(self.partial, out)
            self.partial.unlink()
        else:
            os.replace(self.partial, out)
        self.checkpoint.unlink(missing_ok=True)


def _damage(saved: Any, partial: Path, size: int, fmt: str, *, filtered: bool) -> str:
    """Why a checkpoint of this export cannot be resumed from ('' when it can). A resume cuts
    the partial file to ``bytes`` and continues from ``token``: a cut that loses rows, or a
    length past the file, would end in an export with users missing and exit 0 (or EINVAL)."""
    token, users, pages, length = (saved.get(k) for k in ("token", "users", "pages", "bytes"))
    if not isinstance(token, str) or not token:
        return "its token is not text"
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
               for v in (users, pages, length)):
        return "users, pages and bytes must be whole numbers, 0 or more"
    if length > size:
        return f"it says {length} bytes were written, {partial.name} holds {size}"
    # A token comes after a page; a page holds at most 60 users, and without a filter at
    # least one (Cognito pages an unfiltered pool with a token only while users follow).
    if pages < 1 or users > PAGE * pages or (not filtered and users < pages):
        return f"{users} users in {pages} pages"
    records = _records(partial, length, fmt)
    if records != users:
        return f"it says {users} users, the first {length} bytes of {partial.name} hold {records}"
    return ""


def _records(partial: Path, length: int, fmt: str) -> int | str:
    """The users in the first ``length`` bytes of the partial file, streamed ('a cut line'
    when they end inside one)."""
    with open(partial, "rb") as handle:
        lines = _lines(handle, length)
        if fmt in ("csv", "parquet"):
            count = sum(1 for _ in csv.reader(lines)) - 1  # the header
        else:
            count = sum(1 for _ in lines)
        handle.seek(max(0, length - 1))
        if length and handle.read(1) != b"\n":
            return "a cut line"
    return max(count, 0)


def _lines(handle: IO[bytes], length: int) -> Iterator[str]:
    left = length
    for line in handle:
        if left <= 0:
            return
        yield line[:left].decode("utf-8", "replace")
        left -= len(line)


def _csv_to_parquet(source: Path, out: Path, *, chunk: int = 10_000) -> None:
    """The spool as Parquet, every column a string, ``chunk`` rows a row group. Parsed with
    the csv module rather than pyarrow's streaming CSV reader, whose memory grew with the
    file (44 MB of Arrow memory at 1M rows against 6 MB at 20k, pyarrow 26)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with open(source, encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle)
        header = next(rows)
        schema = pa.schema([(name, pa.string()) for name in header])
        with atomic_path(out) as tmp, pq.ParquetWriter(tmp, schema) as writer:
            batch: list[list[str]] = []
            for row in rows:
                batch.append(row)
                if len(batch) >= chunk:
                    writer.write_table(_table(batch, schema))
                    batch = []
            if batch:
                writer.write_table(_table(batch, schema))


def _table(rows: list[list[str]], schema: Any) -> Any:
    import pyarrow as pa

    columns = list(zip(*rows, strict=True)) if rows else [()] * len(schema)
    return pa.Table.from_arrays([pa.array(c, pa.string()) for c in columns], schema=schema)
