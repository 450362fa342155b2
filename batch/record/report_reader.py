"""Reading a report back: one streamed reader for every format, used by retry, merge, the
viewer and the tests, so they agree on what a report holds.

Memory stays flat whatever the report's size: CSV is read a line at a time (the csv module),
JSONL a line at a time, Parquet a record batch at a time (pyarrow's ``iter_batches``). pandas
is not used here: it would build the whole file as a frame to hand its rows over one by one.

CSV cells that the writer defused with a leading ``'`` (``report.neutralise``) are read back
as written before the defence, so every format reads the same values. (A value that itself
began with ``'`` followed by ``= + - @`` reads back without its ``'``: the one ambiguity.)
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from batch.errors import UsageError
from batch.models import REPORT_COLUMNS, RowResult, Status
from batch.record.report import FORMULA_START, report_format

#: One report row: its cells in ``REPORT_COLUMNS`` order. ``row``, ``attempts`` and
#: ``elapsed_ms`` are ``int`` in Parquet and JSONL and ``str`` in CSV (``int()`` takes both);
#: a column the report lacks reads as ``""``.
Cells = Sequence[str | int]

BATCH_ROWS = 8192  # Parquet rows per record batch: a few MB at most
_REQUIRED = ("row", "status")
_TEXT = tuple(i for i, c in enumerate(REPORT_COLUMNS) if c not in ("row", "attempts", "elapsed_ms"))
_RISKY = frozenset(FORMULA_START)


def read_results(path: Path, *, partial: bool = False) -> Iterator[RowResult]:
    """The report's rows as typed results, streamed, in the order they were written.

    ``partial`` is for a report whose run may still be writing it: a torn or malformed line
    is passed over instead of refused."""
    status = Status
    for number, cells in enumerate(read_cells(path, partial=partial), start=1):
        try:
            result = RowResult(int(cells[0]), str(cells[1] or ""), status(str(cells[3])),
                               int(cells[4] or 0), str(cells[5] or ""), str(cells[6] or ""),
                               int(cells[7] or 0), str(cells[2] or ""))
        except (ValueError, TypeError) as exc:
            if partial:
                continue
            raise UsageError(f"report {path}: row {number} is not a result ({exc})") from None
        yield result


def read_cells(path: Path, *, partial: bool = False) -> Iterator[Cells]:
    """The report's rows as cells (``Cells``), streamed: the fast path for a reader that
    looks at a few columns of millions of rows (the viewer's counts)."""
    fmt = report_format(path)
    if not path.is_file():
        raise UsageError(f"report {path}: no such file")
    rows = {"csv": _csv_cells, "jsonl": _jsonl_cells, "parquet": _parquet_cells}[fmt]
    try:
        yield from rows(path, partial)
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        raise UsageError(f"report {path}: unreadable ({exc})") from None


def _not_a_report(path: Path, columns: Sequence[str]) -> None:
    missing = [c for c in _REQUIRED if c not in columns]
    if missing:
        raise UsageError(f"report {path}: not a cognito-batch report (no {missing})")


def _csv_cells(path: Path, partial: bool) -> Iterator[Cells]:
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        _not_a_report(path, header)
        width = len(header)
        at = {name: i for i, name in enumerate(header)}
        # The usual header is the report's own columns in order: rows pass through as read.
        order = None if tuple(header) == REPORT_COLUMNS else [at.get(c) for c in REPORT_COLUMNS]
        risky, text = _RISKY, _TEXT
        for cells in reader:
            if len(cells) != width:
                if partial or not cells:
                    continue  # a torn last line of a run still writing, or a blank line
                raise ValueError(f"line {reader.line_num}: {len(cells)} cells, not {width}")
            if order is not None:
                cells = [cells[i] if i is not None else "" for i in order]
            for i in text:
                cell = cells[i]
                if cell[:1] == "'" and cell[1:2] in risky:
                    cells[i] = cell[1:]
            yield cells


def _jsonl_cells(path: Path, partial: bool) -> Iterator[Cells]:
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not an object")
                _not_a_report(path, list(record))
            except (ValueError, UsageError) as exc:
                if partial:
                    continue  # a torn line of a run still writing
                raise ValueError(f"line {number}: {exc}") from None
            yield [record.get(c, "") for c in REPORT_COLUMNS]


def _parquet_cells(path: Path, partial: bool) -> Iterator[Cells]:
    import pyarrow.parquet as pq

    source = pq.ParquetFile(path)
    present = set(source.schema_arrow.names)
    _not_a_report(path, list(present))
    read = [c for c in REPORT_COLUMNS if c in present]
    for batch in source.iter_batches(batch_size=BATCH_ROWS, columns=read):
        data = batch.to_pydict()
        empty = [""] * batch.num_rows
        yield from zip(*(data.get(c, empty) for c in REPORT_COLUMNS), strict=True)
