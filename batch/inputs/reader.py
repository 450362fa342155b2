"""Where a run's rows come from: one file (``source.py``) or a dataset of parts
(``datasets.py``), opened, checked and streamed through the same four calls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from batch.errors import InputError
from batch.inputs.datasets import dataset_column, dataset_header, dataset_rows, open_stored
from batch.inputs.source import (
    BATCH_ROWS,
    FORMATS,
    InputSource,
    csv_header,
    csv_rows,
    format_from_suffix,
    local_part,
    parquet_file,
    parquet_header,
    parquet_rows,
    to_cognito_string,
)
from batch.models import InputRow
from batch.store.storage import is_s3

__all__ = ["InputSource", "iter_column", "iter_rows", "open_input", "read_header",
           "to_cognito_string"]


def open_input(
    path: str | Path,
    *,
    format: str | None = None,
    delimiter: str = ",",
    profile: str | None = None,
) -> InputSource:
    """Check that the input exists and decide its format (``--format`` wins over the suffix).

    ``s3://bucket/key``, ``s3://bucket/prefix/`` and local folders go to
    ``batch.inputs.datasets``."""
    if is_s3(str(path)) or Path(path).is_dir():
        return open_stored(str(path), format=format, delimiter=delimiter, profile=profile)
    p = Path(path)
    if not p.is_file():
        raise InputError("no such file", path=str(p))
    fmt = (format or "").lower() or format_from_suffix(p)
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}: use --format csv or parquet", path=str(p))
    if fmt == "csv" and len(delimiter) != 1:
        raise InputError("the delimiter must be one character", path=str(p))
    return InputSource(p, fmt, delimiter, parts=(local_part(p),))


def read_header(source: InputSource) -> list[str]:
    """The column names, checked: present, non-empty, unique."""
    if source.dataset:
        return dataset_header(source)
    header = parquet_header(source) if source.format == "parquet" else csv_header(source)
    if not header:
        raise InputError("the file is empty: expected a header row", path=source.name)
    seen: set[str] = set()
    for index, name in enumerate(header, start=1):
        if not name.strip():
            raise InputError(f"column {index} has an empty name", path=source.name, row=0)
        if name in seen:
            # Positions, not the name: in a file without a header row the "names" are the
            # first user's values.
            first = header.index(name) + 1
            raise InputError(
                f"duplicate column name: columns {first} and {index} (is the first row a header?)",
                path=source.name,
                row=0,
            )
        seen.add(name)
    return header


def iter_rows(source: InputSource, *, after: int = 0, rows: int = 0) -> Iterator[InputRow]:
    """Every data row, in order, streamed. With ``after``: from row ``after + 1`` (a resume's
    carried prefix is not read again: a CSV file is skipped as bytes, checked against its
    ``rows``; a Parquet file's row groups before it are not read)."""
    if source.dataset:
        yield from (row for row in dataset_rows(source) if row.row > after)
        return
    if source.format == "parquet":
        yield from parquet_rows(source, after)
    else:
        yield from csv_rows(source, after, rows)


def iter_column(source: InputSource, column: str) -> Iterator[str]:
    """One column's values, in row order (a cheap pass: Parquet reads only that column)."""
    if source.dataset:
        yield from dataset_column(source, column)
        return
    if source.format == "parquet":
        pf = parquet_file(source)
        for batch in pf.iter_batches(batch_size=BATCH_ROWS * 8, columns=[column]):
            for value in batch.column(0).to_pylist():
                yield to_cognito_string(value)
        return
    for row in csv_rows(source):
        yield row.values.get(column, "")

