"""What is done, durably, so an interrupted run resumes without redoing or skipping rows.

The journal is a JSON-lines file beside the report (``REPORT.journal``):

    {"journal": 1, "input_sha256": ..., "settings": ..., "rows": N}     the header
    {"row": 17, "status": "updated", ...}                                one per result
    {"complete": true}                                                   a run that ended

Rows are keyed by the input's identity (SHA-256 of its bytes), the fingerprint of the settings
that change what is written (pool, mapping, key, empty-cell rule ...), and the 1-based data row.
Lines are written whole and flushed at once (so ``kill -9`` loses nothing the OS has), and
fsync'd every ``fsync_every`` lines or ``fsync_seconds`` (so a power cut loses at most that).
A torn last line, from a crash in the middle of a write, is dropped on reading.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from batch.errors import ResumeError
from batch.models import FINISHED, RowResult

VERSION = 1


def journal_path(report: Path) -> Path:
    return report.with_name(report.name + ".journal")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class JournalHeader:
    input_sha256: str
    settings: str

    def as_record(self) -> dict[str, Any]:
        return {"journal": VERSION, "input_sha256": self.input_sha256, "settings": self.settings}


@dataclass(slots=True)
class JournalState:
    """What an earlier, unfinished run left: its header and each row's last result."""

    header: JournalHeader
    results: dict[int, RowResult]
    complete: bool
    valid_bytes: int  # the length up to the last whole line

    def finished(self) -> dict[int, RowResult]:
        return {row: r for row, r in self.results.items() if r.status in FINISHED}


def read_journal(path: Path) -> JournalState | None:
    """Parse a journal; None if there is none. A torn or garbled last line is ignored."""
    if not path.is_file():
        return None
    data = path.read_bytes()
    header: JournalHeader | None = None
    results: dict[int, RowResult] = {}
    complete = False
    valid = 0
    offset = 0
    for raw in data.splitlines(keepends=True):
        offset += len(raw)
        if not raw.endswith(b"\n"):
            break  # torn write: the process died mid-line
        try:
            record = json.loads(raw)
        except ValueError:
            break
        valid = offset
        if header is None:
            if record.get("journal") != VERSION:
                raise ResumeError(f"{path}: not a cognito-batch journal (version mismatch)")
            header = JournalHeader(record["input_sha256"], record["settings"])
        elif record.get("complete"):
            complete = True
        else:
            result = RowResult.from_record(record)
            results[result.row] = result
    if header is None:
        return None
    return JournalState(header, results, complete, valid)


class Journal:
    """Appends results durably. Thread-safe."""

    def __init__(
        self,
        path: Path,
        header: JournalHeader,
        *,
        carry: Iterator[RowResult] | None = None,
        fsync_every: int = 64,
        fsync_seconds: float = 1.0,
    ) -> None:
        self.path = path
        self._fsync_every = fsync_every
        self._fsync_seconds = fsync_seconds
        # Re-entrant: a signal handler (main thread) may stop the run while it holds the lock.
        self._lock = threading.RLock()
        self._pending = 0
        self._last_sync = time.monotonic()
        # A fresh (or compacted) journal is written aside and renamed into place, so a crash
        # here leaves either the old journal or the new one, never half of one.
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(header.as_record()) + "\n")
            for result in carry or ():
                handle.write(json.dumps(result.as_record(), ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        self._handle: IO[str] = open(path, "a", encoding="utf-8")

    def write(self, result: RowResult) -> None:
        line = json.dumps(result.as_record(), ensure_ascii=False) + "\n"
        with self._lock:
            self._handle.write(line)
            self._handle.flush()
            self._pending += 1
            now = time.monotonic()
            if self._pending >= self._fsync_every or now - self._last_sync >= self._fsync_seconds:
                os.fsync(self._handle.fileno())
                self._pending = 0
                self._last_sync = now

    def sync(self) -> None:
        with self._lock:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._pending = 0

    def complete(self) -> None:
        with self._lock:
            self._handle.write(json.dumps({"complete": True}) + "\n")
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        with self._lock:
            if not self._handle.closed:
                self._handle.flush()
                os.fsync(self._handle.fileno())
                self._handle.close()
