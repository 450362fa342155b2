"""What is done, durably, so an interrupted run resumes without redoing or skipping rows.

The journal is a file beside the report (``REPORT.journal``). Version 3: one JSON header line,
then one short tab-separated line per result, each with its own checksum::

    {"journal": 3, "input_sha256": ..., "settings": ...}     the header
    CRC32\\tROW\\tS\\tATTEMPTS\\tELAPSED_MS[\\tUSERNAME[\\tKEY[\\tCODE[\\tMESSAGE[\\tIMAGE]]]]]
    CRC32\\t>ROW                                                  rows up to ROW may be sent
    CRC32\\t=complete                                             a run that ended

``CRC32`` is 8 hex digits over the rest of the line; ``S`` is the status's letter (``u``pdated,
u``n``changed, ``i``nvalid, ``f``ailed, ``s``kipped); trailing empty fields are left out, and a
backslash, tab, newline or carriage return in a text field is written ``\\\\ \\t \\n \\r``.
``IMAGE`` is the digest of the row's before-image (``before_images.digest``), on the line of
a row whose image the run recorded: what ``undo`` checks the undo file against (a journal
written before it has no such field, and reads as before). The header also names the pool
(``pool``, ``region``) the run wrote to: the one an undo may write to.

Version 3 adds the mark line ``>ROW``, written *before* any row above the previous mark is
handed to a worker (``engine.handout``): after a kill, the rows up to the highest mark that
have no finished result may have been sent, and a resume reads their users before writing
them again (issue 20 item 6); rows above it were never sent. A resume appends to the journal
it read, so an earlier attempt's marks stay in it and a resume killed in turn still knows.
Version 2 journals (no marks) are read as before.

Rows are keyed by the input's identity (SHA-256 of its bytes), the fingerprint of the settings
that change what is written (pool, mapping, key, empty-cell rule ...), and the 1-based data row.
Lines are written whole, one ``write`` each, unbuffered (so ``kill -9`` loses nothing the OS
has), and fsync'd every ``fsync_seconds`` (so a power cut loses at most that long's results,
which a resume applies again: the same values, an idempotent write), by time and not by count,
which at thousands of rows a second would cost more than the writes.

Reading stops at the first line that is torn (no newline: the process died mid-write) or
garbled (its checksum fails): what follows it is not trusted and is redone.

Reading keeps no row in memory: ``read_journal`` returns the finished rows as a bitmap
(``RowSet``), and ``JournalState.carried`` / ``records`` stream them again from the file when
the report is assembled. The last record of a row wins: a resume appends to the journal it
resumes (``Journal(..., append_at=...)``, no rewrite before its first write, issue 22 item 4),
so a row redone after a failure has two records; which line is a row's last is found by
reading the file backwards into a bitmap over lines (``JournalState._superseded``), so memory
stays flat however many rows were redone. Sizes and fsync costs measured:
docs/design/journal.md.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from batch.errors import ResumeError
from batch.models import FINISHED, RowResult, Status
from batch.record.layout import journal_path as journal_path  # named there, kept here for callers
from batch.rowset import RowSet
from batch.store.files import atomic_write, open_private

VERSION = 3
#: The versions this reads: 2 is 3 without mark lines.
READS = (2, 3)

_LETTER = {Status.UPDATED: "u", Status.UNCHANGED: "n", Status.INVALID: "i",
           Status.FAILED: "f", Status.SKIPPED: "s", Status.CREATED: "c"}
_STATUS = {letter.encode(): status for status, letter in _LETTER.items()}
_STATUS_OF = {letter: status for status, letter in _LETTER.items()}
_PAD = [""] * 8
_WORD = {letter: status.value for status, letter in _LETTER.items()}

#: A report row's cells, in ``REPORT_COLUMNS`` order.
Cells = tuple[int, str, str, str, int, str, str, int]
_FINISHED = frozenset(_LETTER[s].encode() for s in FINISHED)
_FINISHED_LETTERS = frozenset(_LETTER[s] for s in FINISHED)
_COMPLETE = b"=complete"
_MARK = b">"
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)
_UNESCAPE = {"t": "\t", "n": "\n", "r": "\r"}


# -- lines ----------------------------------------------------------------------------------


def _escape(text: str) -> str:
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
        return text.replace("\r", "\\r")
    return text


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    return _ESCAPED.sub(lambda m: _UNESCAPE.get(m.group(1), m.group(1)), text)


def _line(payload: bytes) -> bytes:
    return b"%08x\t%s\n" % (zlib.crc32(payload), payload)


def encode(result: RowResult, image: str = "") -> bytes:
    """One result as a journal line (checksum, fields, newline); ``image``: the digest of
    the row's before-image, when the run recorded one."""
    fields = [str(result.row), _LETTER[result.status], str(result.attempts),
              str(result.elapsed_ms), _escape(result.username), _escape(result.key),
              _escape(result.error_code), _escape(result.error_message), image]
    while len(fields) > 4 and not fields[-1]:
        fields.pop()
    # surrogatepass: an exception's text may hold anything; it must round-trip, not raise.
    return _line("\t".join(fields).encode("utf-8", "surrogatepass"))


def mark_line(row: int) -> bytes:
    """The write-ahead mark: rows up to ``row`` may be handed to workers (module docstring)."""
    return _line(b">%d" % row)


def decode(payload: bytes) -> RowResult:
    text = payload.decode("utf-8", "surrogatepass")
    parts = text.split("\t")
    if len(parts) < 8:
        parts += _PAD[len(parts) :]
    if "\\" in text:
        parts[4:] = [_unescape(p) for p in parts[4:]]
    # Positional: (row, username, status, attempts, error_code, error_message, elapsed, key).
    return RowResult(int(parts[0]), parts[4], _STATUS_OF[parts[1]], int(parts[2]), parts[6],
                     parts[7], int(parts[3]), parts[5])


# -- reading --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JournalHeader:
    input_sha256: str
    settings: str
    # The pool written to (the fingerprint in ``settings`` holds it too, hashed): named so an
    # undo can confirm where it writes. Not compared: ``settings`` already differs with it.
    pool: str = field(default="", compare=False)
    region: str = field(default="", compare=False)

    def as_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"journal": VERSION, "input_sha256": self.input_sha256,
                                  "settings": self.settings}
        if self.pool:
            record.update(pool=self.pool, region=self.region)
        return record


@dataclass(slots=True)
class JournalState:
    """What an earlier run left: its header, which rows are finished, whether it ended.

    No result is held: ``records()`` reads them again from the file, in journal order.
    """

    path: Path
    header: JournalHeader
    finished: RowSet  # rows whose last record is updated, unchanged or invalid
    complete: bool
    valid_bytes: int  # the length up to the last trusted line
    records_count: int = 0  # trusted result lines (a row recorded twice counts twice)
    version: int = VERSION
    # The highest write-ahead mark: rows up to it with no finished result may have been sent.
    handed_out: int = 0
    # Rows recorded more than once (a resume appends: a row redone after a failure, or a
    # hand-written journal): only their lines need the backward pass (``_superseded``).
    _repeated: RowSet | None = None
    _superseded_lines: RowSet | None = field(default=None, repr=False)
    # ``read_journal``'s ``beyond`` (the input's last row) and where the first line of a row
    # past it starts (0: none): a ``--disable-missing`` run's leavers (``beyond()``).
    past_row: int = 0
    past_at: int = 0

    def _superseded(self) -> RowSet | None:
        """The indices of the result lines a later line of the same row replaces (None: no
        row was recorded twice). Found reading the trusted bytes backwards: the first line of
        a row met from the end is its last; two bitmaps, whatever the journal holds."""
        if self._repeated is None or not len(self._repeated):
            return None
        if self._superseded_lines is None:
            out, seen, repeated = RowSet(self.records_count), RowSet(), self._repeated
            index = self.records_count
            for payload in _backwards(self.path, self.valid_bytes):
                if not payload[:1].isdigit():
                    continue  # not a result (``=complete``): no index
                index -= 1
                row = int(payload[: payload.find(b"\t")])
                if row in repeated:
                    if row in seen:
                        out.add(index)
                    else:
                        seen.add(row)
            self._superseded_lines = out
        return self._superseded_lines

    def _entries(self, *, finished_only: bool) -> Iterator[tuple[bytes, list[str]]]:
        """Each row's last line and its fields (unescaped), in journal order, from the file.
        ``finished_only``: the rows finished when the journal was read (the line's own status
        is checked too: ``finished`` is the resume's bitmap, which grows as the run goes)."""
        superseded = self._superseded()
        with open(self.path, "rb") as handle:
            offset = len(handle.readline())  # the header
            index = 0
            finished = self.finished
            for line in handle:
                offset += len(line)
                if offset > self.valid_bytes:
                    break
                payload = line[9:-1]
                if payload == _COMPLETE or payload[:1] == _MARK:
                    continue
                parts = payload.decode("utf-8", "surrogatepass").split("\t")
                row = int(parts[0])
                mine = index
                index += 1
                if finished_only and (row not in finished or parts[1] not in _FINISHED_LETTERS):
                    continue
                if superseded is not None and mine in superseded:
                    continue  # an earlier record of a row recorded again later
                if len(parts) < 8:
                    parts += _PAD[len(parts) :]
                if b"\\" in payload:
                    parts[4:] = [_unescape(p) for p in parts[4:]]
                yield line, parts

    def records(self) -> Iterator[RowResult]:
        """Each row's last result, in journal order, streamed from the file."""
        for _, p in self._entries(finished_only=False):
            yield RowResult(int(p[0]), p[4], _STATUS_OF[p[1]], int(p[2]), p[6], p[7], int(p[3]),
                            p[5])

    def images(self) -> Iterator[tuple[int, str, int, str, str]]:
        """Each row's last record as (row, status letter, attempts, username, image digest;
        '' when the line has none), in journal order, streamed: what ``undo`` checks."""
        for _, p in self._entries(finished_only=False):
            yield int(p[0]), p[1], int(p[2]), p[4], p[8] if len(p) > 8 else ""

    def beyond(self) -> Iterator[tuple[int, str, bool]]:
        """(row, username, finished) of every record of a row past ``past_row``, in journal
        order (a row recorded twice is yielded twice: the last wins), read from the first such
        line on, so a resume killed before its leavers reads nothing more here."""
        if not self.past_at:
            return
        with open(self.path, "rb") as handle:
            handle.seek(self.past_at)
            offset = self.past_at
            for line in handle:
                offset += len(line)
                if offset > self.valid_bytes:
                    break
                payload = line[9:-1]
                tab = payload.find(b"\t")
                if tab < 0 or not payload[:1].isdigit() or int(payload[:tab]) <= self.past_row:
                    continue  # a mark, the end, or an input row
                p = decode(payload)
                yield p.row, p.username, p.status in FINISHED

    def carried(self) -> Iterator[tuple[bytes, Cells]]:
        """The finished rows, as what a resume copies into the report: the journal line as it
        is and the report's cells (no ``RowResult``: a resume of millions of rows spends its
        time here)."""
        for line, p in self._entries(finished_only=True):
            yield line, (int(p[0]), p[4], p[5], _WORD[p[1]], int(p[2]), p[6], p[7], int(p[3]))


#: The largest row a journal read without a known input may name (a bitmap of this many rows
#: is 125 MB): a row number read from a file must not make the reader allocate gigabytes.
MAX_ROW = 10**9


def read_journal(
    path: Path, *, last_row: int | None = None, of: JournalHeader | None = None,
    beyond: int | None = None,
) -> JournalState | None:
    """Scan a journal; None if there is none. Stops at a torn or garbled line, and at a row
    outside ``1..last_row`` (the input's last data row, when the journal's header is ``of``,
    the run's own; else at one past ``MAX_ROW``). ``beyond``: rows past it may follow (a
    ``--disable-missing`` run's leavers): where the first one's line starts is kept.

    One pass, a few bytes of work a line: the finished rows go into a bitmap, nothing else is
    kept, so memory does not grow with the journal.
    """
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise ResumeError(f"{path}: is a folder, not a journal") from None
    with handle:
        first = handle.readline()
        if not first:
            return None
        header, version = _header(path, first)
        if version not in READS:
            return _old_version(path, handle, header, version)
        ours = last_row is not None and header == of
        bound, low = (last_row, 1) if ours and last_row is not None else (MAX_ROW, 0)
        finished, seen, repeated = RowSet(limit=bound), RowSet(limit=bound), RowSet(limit=bound)
        complete = False
        valid = len(first)
        index = handed_out = past_at = 0
        past = MAX_ROW if beyond is None else beyond
        crc32, statuses, finished_codes = zlib.crc32, _STATUS, _FINISHED
        for line in handle:
            # Inlined checks: a resume of millions of rows spends its first seconds here.
            if line[-1:] != b"\n" or line[8:9] != b"\t":
                break  # torn: the process died mid-line
            payload = line[9:-1]
            try:
                if crc32(payload) != int(line[:8], 16):
                    break  # garbled: nothing from here on is trusted
            except ValueError:
                break
            if payload == _COMPLETE:
                complete = True
                valid += len(line)
                continue
            if payload[:1] == _MARK:
                try:
                    mark = int(payload[1:])
                except ValueError:
                    break
                if mark < 1:
                    break
                # A mark runs ahead of the rows handed out; past the input's end it says no more.
                handed_out = max(handed_out, min(mark, bound))
                valid += len(line)
                continue
            tab = payload.find(b"\t")
            try:
                row = int(payload[:tab])
            except ValueError:
                break
            status = payload[tab + 1 : tab + 2]
            if status not in statuses or row < low or row > bound:
                break  # a row no input of this run has: the file was damaged or edited
            if row > past and not past_at:
                past_at = valid
            valid += len(line)
            if row in seen:
                repeated.add(row)
            else:
                seen.add(row)
            if status in finished_codes:
                finished.add(row)
            else:
                finished.discard(row)
            index += 1
    return JournalState(path, header, finished, complete, valid, index, version, handed_out,
                        repeated, past_row=past, past_at=past_at)


def _backwards(path: Path, end: int, block: int = 1 << 18) -> Iterator[bytes]:
    """The payloads of the lines after the header and before ``end`` (a line's end), last
    first, read a block at a time."""
    with open(path, "rb") as handle:
        start = len(handle.readline())
        tail, high = b"", end
        while high > start:
            low = max(start, high - block)
            handle.seek(low)
            lines = (handle.read(high - low) + tail).split(b"\n")
            high = low
            # The block's first piece may be the end of a line that began earlier.
            tail = lines[0] + b"\n" if high > start else b""
            for line in reversed(lines[1 if high > start else 0 : -1]):
                yield line[9:]


def _header(path: Path, first: bytes) -> tuple[JournalHeader, int]:
    try:
        record = json.loads(first)
        version = record["journal"]
        header = JournalHeader(str(record["input_sha256"]), str(record["settings"]),
                               str(record.get("pool") or ""), str(record.get("region") or ""))
    except (ValueError, KeyError, TypeError):
        raise ResumeError(
            f"{path}: not a cognito-batch journal; move it away or pass --fresh to replace it"
        ) from None
    if not isinstance(version, int) or version > VERSION:
        raise ResumeError(
            f"{path}: journal version {version!r} is newer than this cognito-batch reads "
            f"({VERSION}); upgrade, or pass --fresh to discard it"
        )
    return header, version


def _old_version(
    path: Path, handle: IO[bytes], header: JournalHeader, version: int
) -> JournalState:
    """A journal of an older version: a finished one is simply replaced by the next run, as
    any finished journal is; an unfinished one cannot be resumed by this version."""
    size = os.fstat(handle.fileno()).st_size
    handle.seek(max(0, size - 64))
    if handle.read().rstrip(b"\n").endswith(b'{"complete": true}'):
        return JournalState(path, header, RowSet(), True, size, 0, version)
    raise ResumeError(
        f"{path}: an unfinished run recorded by an older cognito-batch (journal version "
        f"{version}); finish it with that version, or pass --fresh to discard it and redo "
        "every row"
    )


# -- writing --------------------------------------------------------------------------------


class Journal:
    """Appends results durably. Thread-safe."""

    def __init__(
        self,
        path: Path,
        header: JournalHeader,
        *,
        carry: Iterable[RowResult | bytes] | None = None,
        handed_out: int = 0,
        fsync_every: int = 0,  # also every N lines (0: by time only)
        fsync_seconds: float = 1.0,
        append_at: int | None = None,
    ) -> None:
        self.path = path
        self._fsync_every = fsync_every
        self._fsync_seconds = fsync_seconds
        # Re-entrant: a signal handler (main thread) may stop the run while it holds the lock.
        self._lock = threading.RLock()
        self._pending = 0
        self._last_sync = time.monotonic()
        if append_at is not None:
            # A resume continues the journal it read (its header is this run's): nothing is
            # rewritten before the first write. Only a torn last line (``valid_bytes`` short
            # of the size) is cut, so the next line starts where the trusted ones end; a crash
            # around the cut leaves a file that reads the same either way.
            with open(path, "r+b") as old:
                if os.fstat(old.fileno()).st_size > append_at:
                    old.truncate(append_at)
                    os.fsync(old.fileno())
        else:
            # A fresh journal is written aside and renamed into place, so a crash here leaves
            # either the old journal or the new one, never half of one. A carry is streamed
            # from the old file while the new one is written: no row is held.
            with atomic_write(path, "wb") as out:
                out.write(json.dumps(header.as_record()).encode() + b"\n")
                if handed_out:  # an earlier attempt's mark: its unfinished rows stay in doubt
                    out.write(mark_line(handed_out))
                for item in carry or ():
                    out.write(item if isinstance(item, bytes) else encode(item))
        # Unbuffered: each line is one write(2), so it is the OS's as soon as write() returns.
        self._handle: IO[bytes] = open_private(path, "ab", buffering=0)

    def _append(self, line: bytes) -> None:
        view = memoryview(line)
        while view:
            view = view[self._handle.write(view) or 0 :]

    def write(self, result: RowResult, image: str = "") -> None:
        line = encode(result, image)
        with self._lock:
            self._append(line)
            self._pending += 1
            now = time.monotonic()
            if now - self._last_sync >= self._fsync_seconds or (
                self._fsync_every and self._pending >= self._fsync_every
            ):
                os.fsync(self._handle.fileno())
                self._pending = 0
                self._last_sync = now

    def mark(self, row: int) -> int:
        """Write the mark ``>row`` (rows up to ``row`` may be sent from now); the journal's
        length once it is written: what a copy elsewhere (S3) must hold before they are."""
        with self._lock:
            self._append(mark_line(row))
            return self._handle.tell()

    def sync(self) -> None:
        with self._lock:
            if not self._handle.closed:
                os.fsync(self._handle.fileno())
                self._pending = 0

    def complete(self) -> None:
        """Mark the run finished. Only once the report and summary are durable: a finished
        journal is never resumed, only replaced (or rebuilt into a missing report)."""
        with self._lock:
            self._append(_line(_COMPLETE))
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        with self._lock:
            if not self._handle.closed:
                os.fsync(self._handle.fileno())
                self._handle.close()
