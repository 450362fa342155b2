"""One result row per input row, streamed as results arrive; and the run's summary.

CSV and JSONL reports are appended and flushed row by row, so a crash loses at most the rows
in flight (and the journal has them anyway). A Parquet report cannot be valid until its footer
is written, so it is written from the journal when the run ends.

Attribute values are never copied into a report. CSV cells that begin with ``= + - @`` (or a
tab or carriage return) are prefixed with ``'`` so a spreadsheet does not run them as formulas.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from batch.errors import UsageError
from batch.models import REPORT_COLUMNS, RowResult

REPORT_FORMATS = ("csv", "jsonl", "parquet")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def report_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("json", "ndjson"):
        suffix = "jsonl"
    if suffix not in REPORT_FORMATS:
        raise UsageError(f"report {path}: use a .csv, .jsonl or .parquet file name")
    return suffix


def neutralise(cell: object) -> object:
    """Defuse spreadsheet formula injection in a CSV cell."""
    if isinstance(cell, str) and cell.startswith(_FORMULA_START):
        return "'" + cell
    return cell


class ReportWriter(Protocol):
    def write(self, result: RowResult) -> None: ...
    def close(self) -> None: ...


class _Flushing:
    """Flushes to the OS at most every ``FLUSH_SECONDS``: the journal, not the report, is
    what a resume trusts (it is flushed per row), so the report need not pay a system call
    per row; a crash is repaired by the resume, which rebuilds the report from the journal."""

    FLUSH_SECONDS = 0.5

    def __init__(self, path: Path, *, newline: str | None = None) -> None:
        self._handle = open(path, "w", encoding="utf-8", newline=newline)
        self._last = time.monotonic()

    def _maybe_flush(self) -> None:
        now = time.monotonic()
        if now - self._last >= self.FLUSH_SECONDS:
            self._handle.flush()
            self._last = now

    def close(self) -> None:
        self._handle.close()


class CsvReport(_Flushing):
    def __init__(self, path: Path) -> None:
        super().__init__(path, newline="")
        self._csv = csv.writer(self._handle)
        self._csv.writerow(REPORT_COLUMNS)
        self._handle.flush()

    def write(self, result: RowResult) -> None:
        record = result.as_record()
        self._csv.writerow([neutralise(record[c]) for c in REPORT_COLUMNS])
        self._maybe_flush()


class JsonlReport(_Flushing):
    def write(self, result: RowResult) -> None:
        self._handle.write(json.dumps(result.as_record(), ensure_ascii=False) + "\n")
        self._maybe_flush()


class ParquetReport:
    """Collects nothing itself: ``finish_parquet`` writes it from the journal's results."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, result: RowResult) -> None:
        pass

    def close(self) -> None:
        pass


def open_report(path: Path) -> ReportWriter:
    fmt = report_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        return CsvReport(path)
    if fmt == "jsonl":
        return JsonlReport(path)
    return ParquetReport(path)


def write_parquet(path: Path, results: Iterable[RowResult]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [(c, pa.int64() if c in ("row", "attempts", "elapsed_ms") else pa.string())
         for c in REPORT_COLUMNS]
    )  # fmt: skip
    tmp = path.with_name(path.name + ".tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        chunk: list[dict[str, Any]] = []
        for result in results:
            chunk.append(result.as_record())
            if len(chunk) >= 10_000:
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                chunk = []
        if chunk:
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
    os.replace(tmp, path)


def read_report(path: Path) -> list[dict[str, str]]:
    """A report's rows as strings (for ``retry``); any of the three formats."""
    import pandas as pd

    fmt = report_format(path)
    if not path.is_file():
        raise UsageError(f"report {path}: no such file")
    try:
        if fmt == "csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        elif fmt == "jsonl":
            frame = pd.read_json(path, lines=True, dtype=False).astype(str)
        else:
            frame = pd.read_parquet(path).astype(str)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a usage error here
        raise UsageError(f"report {path}: unreadable ({exc})") from None
    missing = {"row", "status"} - set(frame.columns)
    if missing:
        raise UsageError(f"report {path}: not a cognito-batch report (no {sorted(missing)})")
    records: list[dict[str, str]] = frame.to_dict(orient="records")  # type: ignore[assignment]
    return records


def summary_path(report: Path) -> Path:
    return report.with_name(report.name + ".summary.json")


def write_summary(report: Path, summary: dict[str, Any]) -> Path:
    path = summary_path(report)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def format_summary(summary: dict[str, Any]) -> str:
    """The human summary printed on stderr at the end of a run."""
    counts = summary["counts"]
    lines = [
        f"cognito-batch: {summary['rows']} rows in {summary['duration_s']:.1f}s — "
        + ", ".join(f"{k} {counts.get(k, 0)}" for k in
                    ("updated", "unchanged", "invalid", "failed", "skipped")),
        f"  calls {summary['calls']}, throttled {summary['throttles']}, faults retried "
        f"{summary['faults']}, achieved {summary['achieved_rate']:.1f} updates/s "
        f"(rate {summary['rate']}"
        + (
            f": from {summary['rate_low']:g} to {summary['rate_high']:g}, "
            f"ending at {summary['rate_final']:g}/s)"
            if summary.get("rate") in ("auto", "polite") or "rate_low" in summary
            else ")"
        ),
    ]  # fmt: skip
    quota = summary.get("quota")
    if isinstance(quota, dict) and quota.get("rates"):
        lines.append(f"  quota: UserUpdate {quota['rates'].get('UserUpdate', 0):g}/s "
                     f"({quota.get('source', '')}); the run took up to "
                     f"{100 * float(quota.get('share', 0)):.0f}% of it")  # fmt: skip
    if summary.get("window_capped"):
        lines.append(f"  capped: {summary['window_capped']}")
    if summary.get("errors"):
        lines.append(
            "  errors: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["errors"].items()))
        )
    if summary.get("stopped"):
        lines.append(f"  stopped: {summary['stopped']}")
    lines.append(f"  report: {summary['report']}")
    return "\n".join(lines)
