"""One CSV or Parquet file (local, or one S3 object): its rows streamed in bounded memory,
values exactly as written.

CSV is read with the standard library's ``csv`` module rather than ``pandas.read_csv``: it
streams row by row, never infers a type ("02134" stays "02134", "NaN" stays "NaN"), and a row
with the wrong number of fields becomes that row's ``invalid`` result instead of either stopping
the file (pandas' C parser) or being dropped (``on_bad_lines="skip"``).

Parquet is read a record batch at a time with pyarrow. Typed values become Cognito's string
forms: booleans ``true``/``false``; integers as digits; floats with an integral value as
integers ("7", not "7.0"), other floats by ``repr``; dates ``YYYY-MM-DD``; timestamps ISO 8601
(``YYYY-MM-DDTHH:MM:SS[.ffffff]``, ``Z`` for UTC); nulls as empty cells.

Row numbers: a result's ``row`` is the 1-based data row (the first row after the CSV header, or
the first Parquet row, is row 1). Blank CSV lines are not rows.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batch.errors import InputError
from batch.models import InputRow
from batch.store.storage import LocalStorage, ObjectInfo, Storage, parse

FORMATS = ("csv", "parquet")
BATCH_ROWS = 2048
csv.field_size_limit(min(sys.maxsize, 16 * 1024 * 1024))


@dataclass(frozen=True, slots=True)
class InputSource:
    """A readable input and how to read it: a local file (``path``), an S3 object, or a
    Parquet dataset of part files (``dataset``), each part in ``parts`` (see ``datasets``)."""

    path: Path
    format: str
    delimiter: str = ","
    uri: str = ""  # s3://... or a dataset folder; empty for a local file
    parts: tuple[ObjectInfo, ...] = ()
    dataset: bool = False
    storage: Storage | None = None
    part_rows: tuple[int, ...] = ()  # a dataset's rows per part, from the footers
    partitions: tuple[str, ...] = ()  # hive partition columns, in folder order

    @property
    def name(self) -> str:
        return self.uri or str(self.path)


def local_part(path: Path) -> ObjectInfo:
    return LocalStorage().stat(parse(path))


def format_from_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes or ".pq" in suffixes:
        return "parquet"
    if any(s in (".csv", ".tsv", ".txt") for s in suffixes):
        return "csv"
    raise InputError(
        f"cannot tell the format from {path.name!r}: use --format csv or parquet", path=str(path)
    )


# -- CSV -------------------------------------------------------------------------------------


def _open_text(source: InputSource) -> Any:
    # utf-8-sig strips a BOM if there is one; newline="" lets csv see quoted newlines;
    # surrogateescape keeps an undecodable byte in the text, so the row that holds it is
    # the row named in the error, not the start of an 8 KiB decoding block.
    return io.TextIOWrapper(
        open_bytes(source), encoding="utf-8-sig", errors="surrogateescape", newline=""
    )


def open_bytes(source: InputSource) -> Any:
    """The input's bytes: the local file, or a ranged-GET stream of the S3 object."""
    if source.storage is None:
        return open(source.path, "rb")
    return source.storage.open_read(source.parts[0])


def _csv_reader(handle: Any, source: InputSource) -> Any:
    return csv.reader(handle, delimiter=source.delimiter, strict=False)


def csv_header(source: InputSource) -> list[str]:
    with _open_text(source) as handle:
        reader = _csv_reader(handle, source)
        try:
            for fields in reader:
                if fields:
                    _check_utf8(source, 0, fields)
                    return [str(f) for f in fields]
        except csv.Error as exc:
            raise InputError(f"not readable as CSV: {exc}", path=source.name, row=0) from None
    return []


def _open_at(source: InputSource, start: int) -> Any:
    if not start:
        return _open_text(source)
    raw = open(source.path, "rb")
    raw.seek(start)
    return io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")


def csv_row_offset(source: InputSource, row: int, rows: int) -> int | None:
    """The byte offset where data row ``row`` starts, found without parsing fields: lines are
    split on newlines outside double quotes (a quoted field's newline is inside its row), and
    blank lines are not rows, as ``csv_rows`` reads them. Checked: the whole file must count
    ``rows`` data rows, as the key scan found; else None (a quote inside an unquoted field,
    say), and the caller reads from the start."""
    if source.storage is not None:
        return None
    found: int | None = None
    count = -1  # the header is not a data row
    offset = 0
    quoted = False
    with open(source.path, "rb") as handle:
        for line in handle:
            if not quoted:
                bare = line.rstrip(b"\r\n")
                if bare and (bare != b'""' or count < 0):
                    count += 1
                    if count == row:
                        found = offset
            if line.count(b'"') % 2:
                quoted = not quoted
            offset += len(line)
    return found if count == rows and found is not None else None


def csv_rows(source: InputSource, after: int = 0, rows: int = 0) -> Iterator[InputRow]:
    """Every data row; with ``after`` (and the file's ``rows``, to check the skip), from row
    ``after + 1``, the rows before it skipped as bytes (a resume's carried prefix)."""
    start = csv_row_offset(source, after + 1, rows) if after and source.storage is None else None
    if start is not None:
        yield from _csv_rows_from(source, start, after)
        return
    for item in _csv_rows_from(source, 0, 0):
        if item.row > after:
            yield item


def _csv_rows_from(source: InputSource, start: int, first: int) -> Iterator[InputRow]:
    """The rows from byte ``start`` (0: the header; else row ``first + 1``'s first byte)."""
    header: list[str] | None = csv_header(source) if start else None
    with _open_at(source, start) as handle:
        row = first
        reader = _csv_reader(handle, source)
        try:
            for fields in reader:
                if not fields or (len(fields) == 1 and fields[0] == "" and header):
                    continue  # blank line
                if header is None:
                    _check_utf8(source, 0, fields)
                    header = fields
                    continue
                row += 1
                _check_utf8(source, row, fields)
                if len(fields) != len(header):
                    # No values at all: with a field too many or too few, which field is which
                    # is unknown, and a shifted one would land in the wrong column (an email
                    # as the username, a key counted as a duplicate of another row's).
                    yield InputRow(
                        row, {}, error=f"row has {len(fields)} fields, the header has {len(header)}"
                    )
                    continue
                yield InputRow(row, dict(zip(header, fields, strict=True)))
        except csv.Error as exc:
            raise InputError(f"not readable as CSV: {exc}", path=source.name, row=row + 1) from None


_UNDECODED = re.compile("[\udc80-\udcff]")


def _check_utf8(source: InputSource, row: int, fields: list[str]) -> None:
    for index, field in enumerate(fields):
        match = _UNDECODED.search(field)
        if match is None:
            continue
        byte = ord(match.group()) - 0xDC00
        with open_bytes(source) as handle:
            parquet = handle.read(4) == b"PAR1"
        hint = " (it looks like a Parquet file: use --format parquet)" if parquet else ""
        raise InputError(
            f"not UTF-8 text (byte 0x{byte:02x} in field {index + 1}){hint}; "
            "re-save the file as UTF-8",
            path=source.name,
            row=row,
        )


# -- Parquet ---------------------------------------------------------------------------------


def parquet_file(source: InputSource) -> Any:
    import pyarrow.parquet as pq  # deferred: only Parquet runs pay for the import

    try:
        return pq.ParquetFile(source.path if source.storage is None else open_bytes(source))
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several unrelated types
        raise InputError(
            f"not a readable Parquet file ({' '.join(str(exc).split())[:200]})", path=source.name
        ) from None


def parquet_header(source: InputSource) -> list[str]:
    import pyarrow.types as pt

    schema = parquet_file(source).schema_arrow
    for field in schema:
        t = field.type
        if (
            pt.is_nested(t)
            or pt.is_binary(t)
            or pt.is_large_binary(t)
            or pt.is_fixed_size_binary(t)
        ):
            raise InputError(
                f"column type {t} cannot be an attribute value (only scalar columns)",
                path=source.name,
                column=field.name,
            )
    return [str(name) for name in schema.names]


def parquet_rows(source: InputSource, after: int = 0) -> Iterator[InputRow]:
    """Every row; with ``after``, from row ``after + 1``: the row groups wholly before it are
    not read (their row counts are in the footer), the rest of its own group is skipped."""
    header = parquet_header(source)
    pf = parquet_file(source)
    row, groups = 0, list(range(pf.metadata.num_row_groups))
    while after and groups and row + pf.metadata.row_group(groups[0]).num_rows <= after:
        row += pf.metadata.row_group(groups.pop(0)).num_rows
    try:
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, row_groups=groups):
            if row + batch.num_rows <= after:
                row += batch.num_rows
                continue
            columns = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
            for values in zip(*columns, strict=True):
                row += 1
                if row <= after:
                    continue
                yield InputRow(
                    row,
                    {name: to_cognito_string(v) for name, v in zip(header, values, strict=True)},
                )
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt page surfaces mid-stream
        raise InputError(
            f"Parquet data unreadable ({' '.join(str(exc).split())[:200]})",
            path=source.name,
            row=row + 1,
        ) from None


def to_cognito_string(value: object) -> str:
    """A typed value in the string form Cognito stores."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:  # NaN: a missing value in float columns
            return ""
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, decimal.Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else str(value)
    if isinstance(value, dt.datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
