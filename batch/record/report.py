"""One result row per input row, streamed as results arrive; and the run's summary.

CSV and JSONL reports are appended as results arrive and flushed twice a second, so a crash
loses at most the last moments (and the journal has them anyway: a resume rebuilds the report
from it). A Parquet report cannot be valid until its footer is written, so its row groups are
streamed into a private temporary file that is renamed into place when the run ends. No writer
holds more than one chunk of rows. Every file is created owner-only (``batch/files.py``).

Rows a stopped run never reached are written in one bulk pass (``write_skipped``): the same
cells for every row but its number (and its user, when the input is read again to name it),
so a 2 M-row input is reported in seconds.

Attribute values are never copied into a report. CSV cells that begin with ``= + - @`` (or a
tab or carriage return) are prefixed with ``'`` so a spreadsheet does not run them as formulas.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from batch.errors import UsageError
from batch.models import REPORT_COLUMNS, RowResult, Status
from batch.record.layout import summary_path as summary_path  # named there, kept here for callers
from batch.record.summary import format_summary as format_summary  # the summary's own module
from batch.record.summary import write_summary as write_summary
from batch.store.files import atomic_path, open_private

#: The one list of report formats, and the file suffixes that name each (read and written).
REPORT_FORMATS = ("csv", "jsonl", "parquet")
REPORT_SUFFIXES = {"csv": "csv", "jsonl": "jsonl", "json": "jsonl", "ndjson": "jsonl",
                   "parquet": "parquet"}
# Spreadsheets also read the full-width (U+FF1D...) and small (U+FE62...) forms as operators.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r",
                  "\uff1d", "\uff0b", "\uff0d", "\uff20", "\ufe66", "\ufe62", "\ufe63", "\ufe6b",
                  "\u2212")
_RISKY = frozenset(FORMULA_START)


def report_format(path: Path) -> str:
    fmt = REPORT_SUFFIXES.get(path.suffix.lower().lstrip("."))
    if fmt is None:
        raise UsageError(f"report {path}: use a .csv, .jsonl or .parquet file name")
    return fmt


def is_report_name(path: Path) -> bool:
    """Whether ``path``'s suffix names a report format."""
    return path.suffix.lower().lstrip(".") in REPORT_SUFFIXES


def neutralise(cell: object) -> object:
    """Defuse spreadsheet formula injection in a CSV cell."""
    if isinstance(cell, str) and cell.startswith(FORMULA_START):
        return "'" + cell
    return cell


class ReportWriter(Protocol):
    def write(self, result: RowResult) -> None: ...
    def write_cells(self, cells: Sequence[Any]) -> None: ...
    def write_skipped(self, rows: np.ndarray, code: str, message: str, *,
                      usernames: Sequence[str] | None = None,
                      keys: Sequence[str] | None = None) -> None: ...
    def close(self) -> None: ...


def _skipped_record(code: str, message: str) -> dict[str, Any]:
    """The report row of a row a stopped run never reached (its row number aside)."""
    return RowResult(0, "", Status.SKIPPED, error_code=code, error_message=message).as_record()


def _named(writer: _Rows, rows: np.ndarray, record: dict[str, Any],
           usernames: Sequence[str], keys: Sequence[str] | None) -> None:
    """Skipped rows each naming its user: one row's cells at a time (the caller's chunk)."""
    keys = keys if keys is not None else [""] * len(usernames)
    for row, username, key in zip(rows.tolist(), usernames, keys, strict=True):
        record.update(row=row, username=username, key=key)
        writer.write_cells([record[c] for c in REPORT_COLUMNS])


class _Rows:
    """What every report format shares: a result is its cells; rows a stopped run never
    reached are written one named row at a time, or (no names) in one bulk pass the format
    does its own way (``_skipped_bulk``)."""

    def write_cells(self, cells: Sequence[Any]) -> None:
        raise NotImplementedError

    def _skipped_bulk(self, rows: np.ndarray, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def write(self, result: RowResult) -> None:
        record = result.as_record()
        self.write_cells([record[c] for c in REPORT_COLUMNS])

    def write_skipped(self, rows: np.ndarray, code: str, message: str, *,
                      usernames: Sequence[str] | None = None,
                      keys: Sequence[str] | None = None) -> None:
        record = _skipped_record(code, message)
        if usernames is not None:
            _named(self, rows, record, usernames, keys)
            return
        self._skipped_bulk(rows, record)


class _Flushing(_Rows):
    """Flushes to the OS at most every ``FLUSH_SECONDS``: the journal, not the report, is
    what a resume trusts (it is flushed per row), so the report need not pay a system call
    per row; a crash is repaired by the resume, which rebuilds the report from the journal.
    ``close`` makes the report durable (fsync): the journal is marked complete only after."""

    FLUSH_SECONDS = 0.5

    def __init__(self, path: Path, *, newline: str | None = None) -> None:
        self._handle = open_private(path, "w", encoding="utf-8", newline=newline)
        self._last = time.monotonic()

    def _maybe_flush(self) -> None:
        now = time.monotonic()
        if now - self._last >= self.FLUSH_SECONDS:
            self._handle.flush()
            self._last = now

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()


class CsvReport(_Flushing):
    def __init__(self, path: Path) -> None:
        super().__init__(path, newline="")
        self._csv = csv.writer(self._handle)
        self._csv.writerow(REPORT_COLUMNS)
        self._handle.flush()

    def write_cells(self, cells: Sequence[Any]) -> None:
        # neutralise(), inlined: this runs for every row of a resume's carry.
        self._csv.writerow(
            ["'" + c if c.__class__ is str and c[:1] in _RISKY else c for c in cells]
        )
        self._maybe_flush()

    def _skipped_bulk(self, rows: np.ndarray, record: dict[str, Any]) -> None:
        # Every cell but the row number is the same: quote it once, then join row numbers.
        line = io.StringIO()
        csv.writer(line).writerow([neutralise(record[c]) for c in REPORT_COLUMNS[1:]])
        tail = "," + line.getvalue()
        for start in range(0, rows.size, 65536):
            self._handle.write(tail.join(map(str, rows[start : start + 65536].tolist())) + tail)
        self._maybe_flush()


class JsonlReport(_Flushing):
    def write(self, result: RowResult) -> None:
        self._handle.write(json.dumps(result.as_record(), ensure_ascii=False) + "\n")
        self._maybe_flush()

    def write_cells(self, cells: Sequence[Any]) -> None:
        record = dict(zip(REPORT_COLUMNS, cells, strict=True))
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._maybe_flush()

    def _skipped_bulk(self, rows: np.ndarray, record: dict[str, Any]) -> None:
        text = json.dumps(record, ensure_ascii=False)
        head, tail = '{"row": ', text[text.index(",") :] + "\n"
        for start in range(0, rows.size, 65536):
            chunk = rows[start : start + 65536].tolist()
            self._handle.write("".join(f"{head}{row}{tail}" for row in chunk))
        self._maybe_flush()


def _parquet_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [(c, pa.int64() if c in ("row", "attempts", "elapsed_ms") else pa.string())
         for c in REPORT_COLUMNS]
    )


class ParquetReport(_Rows):
    """Streams row groups into a private temporary file beside the report; ``close`` writes
    the footer and renames it into place, so a reader never sees half a Parquet file.

    Rows are in the order they were written (carried rows first, then results as they
    finished, then the rows a stopped run never reached): sorting them by ``row`` would mean
    holding them all. Memory: one chunk of ``CHUNK`` rows."""

    CHUNK = 10_000

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self.path = path
        self._schema = _parquet_schema()
        self._target: contextlib.AbstractContextManager[Path] | None = atomic_path(path)
        self._tmp = self._target.__enter__()
        self._writer = pq.ParquetWriter(self._tmp, self._schema)
        self._chunk: list[Sequence[Any]] = []

    def write_cells(self, cells: Sequence[Any]) -> None:
        self._chunk.append(cells)
        if len(self._chunk) >= self.CHUNK:
            self._flush()

    def _flush(self) -> None:
        if not self._chunk:
            return
        import pyarrow as pa

        values = zip(*self._chunk, strict=True)
        columns = {c: list(v) for c, v in zip(REPORT_COLUMNS, values, strict=True)}
        self._writer.write_table(pa.table(columns, schema=self._schema))
        self._chunk = []

    def _skipped_bulk(self, rows: np.ndarray, record: dict[str, Any]) -> None:
        import pyarrow as pa

        self._flush()
        zeros = np.zeros(rows.size, dtype=np.int64)
        columns = {
            c: (pa.array(rows) if c == "row" else pa.array(zeros) if c in ("attempts", "elapsed_ms")
                else pa.array([record[c]], pa.string()).take(pa.array(zeros)))
            for c in REPORT_COLUMNS
        }
        self._writer.write_table(pa.table(columns, schema=self._schema))

    def close(self) -> None:
        if self._target is None:
            return
        target, self._target = self._target, None
        try:
            self._flush()
            self._writer.close()
        except BaseException as exc:
            target.__exit__(type(exc), exc, exc.__traceback__)
            raise
        target.__exit__(None, None, None)


def open_report(path: Path) -> ReportWriter:
    """A streaming writer for the report's format; files owner-only, never through a link."""
    fmt = report_format(path)
    if fmt == "csv":
        return CsvReport(path)
    if fmt == "jsonl":
        return JsonlReport(path)
    return ParquetReport(path)


def write_parquet(path: Path, results: Iterable[RowResult]) -> None:
    """A whole Parquet report from a stream of results, in bounded memory."""
    writer = ParquetReport(path)
    for result in results:
        writer.write(result)
    writer.close()


