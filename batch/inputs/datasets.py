"""Inputs that are not one local file: an S3 object, or a Parquet dataset of part files.

    s3://bucket/exports/users.csv        one object (CSV or Parquet, by suffix or --format)
    s3://bucket/exports/users/           a dataset: every part file under the prefix
    exports/users/                       the same, as a local folder

A **dataset** is what Spark, Glue, Athena (UNLOAD) and pyarrow write: Parquet part files under
one prefix, maybe in hive-partitioned folders (``dt=2026-11-30/region=eu/part-0.parquet``).

- **Parts**: every object under the prefix except folder markers and any path component that
  starts with ``_`` or ``.`` (``_SUCCESS``, ``_temporary/``, ``.crc``: the rule of Spark and
  pyarrow). Part names need no ``.parquet`` suffix (Athena writes none); each must be Parquet.
- **Order**: lexicographic order of the key under the prefix (UTF-8 bytes, S3's listing order;
  a local folder is listed the same way), so the same dataset numbers its rows the same on
  disk and in S3.
- **Rows**: ``row`` is the dataset-wide 1-based row in that order: the first part's rows are
  1..n1, the next part's n1+1..n1+n2, and so on. The summary's ``input_parts`` lists each part
  with its first and last row, so a report row leads back to its part and row within the part.
- **Partition columns become columns** (strings from the folder names, URL-decoded;
  ``__HIVE_DEFAULT_PARTITION__`` is an empty cell), as Spark, Athena and pyarrow.dataset show
  them: the table you queried is the table you apply. A partition column that is not an
  attribute (``dt``) must be listed in ``exclude`` like any other column. Every part must sit
  at the same partition depth and names, and hold the same columns (order may differ).

Memory: one part open at a time, read a record batch at a time through ``batch.store.storage``'s
ranged reads (S3) or the file (local).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from batch.errors import InputError, StorageError
from batch.inputs.source import (
    BATCH_ROWS,
    FORMATS,
    InputSource,
    format_from_suffix,
    parquet_file,
    parquet_header,
    to_cognito_string,
)
from batch.models import InputRow
from batch.store.storage import Location, ObjectInfo, Storage, parse, storage_for

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def open_stored(
    text: str, *, format: str | None, delimiter: str, profile: str | None
) -> InputSource:
    """An S3 object, or a dataset under an S3 prefix or a local folder, checked."""
    location = parse(text)
    store = storage_for(location, profile=profile)
    fmt = (format or "").lower()
    try:
        if location.is_s3 and location.key and not location.key.endswith("/"):
            single = _stat_or_none(store, location)
            if single is not None:
                return _single(single, store, fmt, delimiter)
            location = parse(text + "/")  # s3://b/prefix without the slash: a dataset?
            if not _has_objects(store, location):
                raise StorageError("NoSuchKey: no such object", uri=text, code="NoSuchKey")
        return _dataset(location, store, fmt)
    except StorageError as exc:
        raise InputError(str(exc).removeprefix(f"{exc.uri}: "), path=exc.uri) from None


def _stat_or_none(store: Storage, location: Location) -> ObjectInfo | None:
    try:
        return store.stat(location)
    except StorageError as exc:
        if exc.code == "NoSuchKey":
            return None
        raise


def _has_objects(store: Storage, prefix: Location) -> bool:
    # Listing answers NoSuchBucket and AccessDenied by name, which a HEAD (no body) cannot.
    return next(iter(store.list(prefix)), None) is not None


def _single(info: ObjectInfo, store: Storage, fmt: str, delimiter: str) -> InputSource:
    name = str(info.location)
    fmt = fmt or format_from_suffix(Path(info.location.name))
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}: use --format csv or parquet", path=name)
    if fmt == "csv" and len(delimiter) != 1:
        raise InputError("the delimiter must be one character", path=name)
    return InputSource(Path(info.location.name), fmt, delimiter, uri=name, parts=(info,),
                       storage=store)


def is_part(relative: str) -> bool:
    """A part file, not a marker, a temporary folder or a checksum (``_``/``.`` prefixes)."""
    if not relative or relative.endswith("/"):
        return False
    return not any(c.startswith(("_", ".")) for c in relative.split("/"))


def partition_values(relative: str) -> list[tuple[str, str]]:
    """The ``name=value`` folders of a part's relative key, in order."""
    out = []
    for folder in relative.split("/")[:-1]:
        name, sep, value = folder.partition("=")
        if not sep or not name:
            raise InputError(
                f"folder {folder!r} is not a hive partition (NAME=VALUE); a dataset's parts "
                "sit directly under the prefix or in NAME=VALUE folders",
                path=relative,
            )
        value = unquote(value)
        out.append((unquote(name), "" if value == HIVE_NULL else value))
    return out


def _dataset(prefix: Location, store: Storage, fmt: str) -> InputSource:
    name = str(prefix)
    if fmt and fmt != "parquet":
        raise InputError("a folder or prefix is read as a Parquet dataset: drop --format csv",
                         path=name)
    parts = tuple(p for p in store.list(prefix) if is_part(p.relative))
    if not parts:
        raise InputError("no part files under this prefix (a dataset needs at least one)",
                         path=name)
    names = [n for n, _ in partition_values(parts[0].relative)]
    rows: list[int] = []
    source = InputSource(Path(prefix.name), "parquet", uri=name, parts=parts, dataset=True,
                         storage=store, partitions=tuple(names))
    first: list[str] | None = None
    for part in parts:
        if [n for n, _ in partition_values(part.relative)] != names:
            raise InputError(f"partition folders differ from the first part's ({names})",
                             path=str(part.location))
        one = _part_source(source, part)
        columns = parquet_header(one)
        if first is None:
            first = columns
        elif sorted(columns) != sorted(first):
            raise InputError(f"columns {sorted(set(columns) ^ set(first))} are not in every "
                             "part: a dataset's parts must hold the same columns",
                             path=str(part.location))
        rows.append(int(_parquet(one).metadata.num_rows))
    assert first is not None
    for column in names:
        if column in first:
            raise InputError("a partition folder repeats a column of the files",
                             path=name, column=column)
    return InputSource(source.path, "parquet", uri=name, parts=parts, dataset=True, storage=store,
                       part_rows=tuple(rows), partitions=tuple(names))


def _part_source(source: InputSource, part: ObjectInfo) -> InputSource:
    local = not part.location.is_s3
    return InputSource(part.location.path if local else Path(part.location.name), "parquet",
                       uri="" if local else str(part.location), parts=(part,),
                       storage=None if local else source.storage)


def _parquet(source: InputSource) -> Any:
    return parquet_file(source)


def dataset_header(source: InputSource) -> list[str]:
    first = _part_source(source, source.parts[0])
    return parquet_header(first) + list(source.partitions)


def dataset_parts(source: InputSource) -> list[dict[str, Any]] | None:
    """A dataset's parts with their dataset-wide first and last rows, for the summary (None
    for a single file): how a report's ``row`` leads back to a part and a row within it."""
    if not source.dataset:
        return None
    out, first = [], 1
    for part, count in zip(source.parts, source.part_rows, strict=True):
        out.append({"part": part.relative, "first_row": first, "last_row": first + count - 1,
                    "rows": count})
        first += count
    return out


def dataset_rows(source: InputSource) -> Iterator[InputRow]:
    header = dataset_header(source)
    row = 0
    for part in source.parts:
        one = _part_source(source, part)
        fixed = {n: v for n, v in partition_values(part.relative)}
        pf = _parquet(one)
        names = [str(n) for n in pf.schema_arrow.names]
        try:
            for batch in pf.iter_batches(batch_size=BATCH_ROWS):
                columns = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
                for values in zip(*columns, strict=True):
                    row += 1
                    cells = {n: to_cognito_string(v) for n, v in zip(names, values, strict=True)}
                    cells.update(fixed)
                    yield InputRow(row, {name: cells[name] for name in header})
        except (InputError, StorageError):
            raise
        except Exception as exc:  # noqa: BLE001 - a corrupt page surfaces mid-stream
            raise InputError(f"Parquet data unreadable ({' '.join(str(exc).split())[:200]})",
                             path=str(part.location), row=row + 1) from None


def dataset_column(source: InputSource, column: str) -> Iterator[str]:
    if column in source.partitions:
        for part, count in zip(source.parts, source.part_rows, strict=True):
            value = dict(partition_values(part.relative))[column]
            for _ in range(count):
                yield value
        return
    for part in source.parts:
        pf = _parquet(_part_source(source, part))
        for batch in pf.iter_batches(batch_size=BATCH_ROWS * 8, columns=[column]):
            for value in batch.column(0).to_pylist():
                yield to_cognito_string(value)
