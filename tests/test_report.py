"""Reports: CSV formula neutralisation, JSONL, Parquet, reading back, and the summary."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from batch.errors import UsageError
from batch.models import REPORT_COLUMNS, RowResult, Status
from batch.report import (
    format_summary,
    neutralise,
    open_report,
    read_report,
    report_format,
    summary_path,
    write_parquet,
    write_summary,
)


def results() -> list[RowResult]:
    return [
        RowResult(1, "007", Status.UPDATED, attempts=1, elapsed_ms=40),
        RowResult(2, "-dash", Status.FAILED, attempts=3, error_code="UserNotFoundException",
                  error_message="=HYPERLINK(\"http://evil\")", elapsed_ms=5),
        RowResult(3, "u3", Status.INVALID, error_code="InvalidValue",
                  error_message="column 'email': not an email address, é", key="+15555550100"),
        RowResult(4, "u4", Status.SKIPPED, error_code="Stopped", error_message="SIGINT"),
    ]  # fmt: skip


def write(path: Path, items: list[RowResult]) -> None:
    writer = open_report(path)
    for item in items:
        writer.write(item)
    writer.close()


@pytest.mark.parametrize(
    ("cell", "out"),
    [("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"),
     ("\tx", "'\tx"), ("\rx", "'\rx"), ("plain", "plain"), ("a=b", "a=b"), ("", ""),
     (-5, -5), (3, 3)],
)  # fmt: skip
def test_neutralise(cell: object, out: object) -> None:
    assert neutralise(cell) == out


def test_csv_report_defuses_formulas_and_keeps_other_cells(tmp_path: Path) -> None:
    # GIVEN results whose username, key and message start like formulas
    path = tmp_path / "r.csv"

    # WHEN written as CSV
    write(path, results())

    # THEN the header is the report columns and risky cells start with a quote
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == list(REPORT_COLUMNS)
    body = [dict(zip(REPORT_COLUMNS, r, strict=True)) for r in rows[1:]]
    assert body[0]["username"] == "007"
    assert body[1]["username"] == "'-dash"
    assert body[1]["error_message"] == "'=HYPERLINK(\"http://evil\")"
    assert body[2]["key"] == "'+15555550100"
    assert body[2]["error_message"] == "column 'email': not an email address, é"
    assert [b["row"] for b in body] == ["1", "2", "3", "4"]


def test_csv_report_rows_reach_the_disk_before_close_once_the_flush_interval_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a report whose flush interval has always passed
    from batch import report as report_module

    monkeypatch.setattr(report_module._Flushing, "FLUSH_SECONDS", 0.0)
    path = tmp_path / "r.csv"
    writer = open_report(path)
    # WHEN a row is written
    writer.write(results()[0])
    text = path.read_text(encoding="utf-8")
    writer.close()
    # THEN it is on disk while the report is still open
    assert text.count("\n") == 2


def test_jsonl_report(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    write(path, results())
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert records == [r.as_record() for r in results()]
    assert records[1]["error_message"].startswith("=")  # JSON is not a spreadsheet


def test_open_report_makes_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "r.csv"
    write(path, results()[:1])
    assert path.is_file()


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("r.csv", "csv"), ("r.CSV", "csv"), ("r.jsonl", "jsonl"), ("r.json", "jsonl"),
     ("r.ndjson", "jsonl"), ("r.parquet", "parquet"), ("run.report.csv", "csv")],
)  # fmt: skip
def test_report_format(name: str, fmt: str) -> None:
    assert report_format(Path(name)) == fmt


@pytest.mark.parametrize("name", ["r.txt", "r", "r.xlsx", "r.csv.gz"])
def test_report_format_errors(name: str) -> None:
    with pytest.raises(UsageError, match="use a .csv, .jsonl or .parquet"):
        report_format(Path(name))


def test_write_parquet_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    write_parquet(path, iter(results()))
    table = pq.read_table(path)
    assert table.column_names == list(REPORT_COLUMNS)
    assert table.to_pylist() == [r.as_record() for r in results()]
    assert not path.with_name(path.name + ".tmp").exists()


def test_write_parquet_of_no_rows_is_a_valid_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    write_parquet(path, [])
    assert pq.read_table(path).num_rows == 0


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_read_report_reads_every_format_as_strings(tmp_path: Path, suffix: str) -> None:
    # GIVEN a report in this format
    path = tmp_path / f"r.{suffix}"
    if suffix == "parquet":
        write_parquet(path, results())
    else:
        write(path, results())

    # WHEN it is read back
    records = read_report(path)

    # THEN rows, statuses and codes are strings as written ("007" stays "007")
    assert [r["row"] for r in records] == ["1", "2", "3", "4"]
    assert [r["status"] for r in records] == ["updated", "failed", "invalid", "skipped"]
    assert records[0]["username"] == "007"
    assert records[1]["error_code"] == "UserNotFoundException"
    assert records[0]["error_code"] == ""
    assert records[2]["attempts"] == "0"


def test_read_report_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        read_report(tmp_path / "missing.csv")
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(UsageError, match="not a cognito-batch report"):
        read_report(other)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(UsageError, match="unreadable"):
        read_report(broken)


def summary() -> dict[str, object]:
    return {
        "rows": 306, "duration_s": 12.34, "achieved_rate": 24.5, "rate": 25.0,
        "counts": {"updated": 299, "unchanged": 0, "invalid": 6, "failed": 1, "skipped": 0},
        "calls": 301, "throttles": 2, "faults": 0,
        "errors": {"UserNotFoundException": 1, "InvalidValue": 5},
        "stopped": "", "report": "reports/demo.report.csv",
    }  # fmt: skip


def test_write_summary_writes_json_beside_the_report(tmp_path: Path) -> None:
    report = tmp_path / "demo.report.csv"
    path = write_summary(report, summary())
    assert path == summary_path(report) == tmp_path / "demo.report.csv.summary.json"
    assert json.loads(path.read_text(encoding="utf-8")) == summary()
    assert not path.with_name(path.name + ".tmp").exists()


def test_format_summary_names_the_counts_errors_and_report() -> None:
    text = format_summary(summary())
    assert "306 rows" in text
    assert "updated 299, unchanged 0, invalid 6, failed 1, skipped 0" in text
    assert "errors: InvalidValue 5, UserNotFoundException 1" in text
    assert "report: reports/demo.report.csv" in text
    assert "stopped" not in text
    assert "stopped: SIGINT" in format_summary({**summary(), "stopped": "SIGINT"})
