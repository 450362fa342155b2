"""Reports: CSV formula neutralisation, JSONL, Parquet, reading back, and the summary."""

from __future__ import annotations

import csv
import json
import stat
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from batch.errors import UsageError
from batch.models import REPORT_COLUMNS, RowResult, Status
from batch.record.report import (
    ParquetReport,
    format_summary,
    neutralise,
    open_report,
    report_format,
    summary_path,
    write_parquet,
    write_summary,
)
from batch.record.report_reader import read_results


def results() -> list[RowResult]:
    return [
        RowResult(1, "007", Status.UPDATED, attempts=1, elapsed_ms=40),
        RowResult(2, "-dash", Status.FAILED, attempts=3, error_code="UserNotFoundException",
                  error_message="=HYPERLINK(\"http://evil\")", elapsed_ms=5),
        RowResult(3, "u3", Status.INVALID, error_code="InvalidValue",
                  error_message="column 'email': not an email address, é", key="+15555550100"),
        RowResult(4, "u4", Status.SKIPPED, error_code="Stopped", error_message="SIGINT"),
    ]


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
)
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
    from batch.record import report as report_module
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
)
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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.parquet"]  # no temporary left


def test_a_parquet_report_streams_in_chunks_and_appears_only_when_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a Parquet report with a chunk of 2 rows
    monkeypatch.setattr(ParquetReport, "CHUNK", 2)
    path = tmp_path / "r.parquet"
    writer = open_report(path)
    # WHEN rows are written THEN none is held beyond a chunk, and no report is visible yet
    for item in results():
        writer.write(item)
    assert len(writer._chunk) < 2  # type: ignore[attr-defined]  # noqa: SLF001
    assert not path.exists()
    # WHEN it is closed THEN the whole report is there, in row groups of the chunk's size
    writer.close()
    parquet = pq.ParquetFile(path)
    assert parquet.metadata.num_row_groups == 2
    assert parquet.read().to_pylist() == [r.as_record() for r in results()]


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_rows_never_reached_are_written_in_bulk_as_one_skipped_row_each_naming_its_user(
    tmp_path: Path, suffix: str
) -> None:
    # GIVEN a report with one result, then 100,000 rows a stopped run never reached
    path = tmp_path / f"r.{suffix}"
    writer = open_report(path)
    writer.write(results()[0])
    rows = np.arange(2, 100_002, dtype=np.int64)
    names = [f"=u{row}" for row in rows.tolist()]  # a name a spreadsheet would run, too
    writer.write_skipped(rows, "Stopped", "=by SIGTERM, \"x\"", usernames=names,
                         keys=[""] * len(names))
    writer.close()
    # WHEN read back
    records = list(read_results(path))
    # THEN each is one skipped row naming its user (the report is per user), the reason kept
    # (defused in the CSV file, read back as it was), the other cells empty
    assert [r.row for r in records] == list(range(1, 100_002))
    assert records[-1] == RowResult(100_001, "=u100001", Status.SKIPPED, error_code="Stopped",
                                    error_message="=by SIGTERM, \"x\"")
    assert [r.username for r in records[1:]] == names


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_every_report_and_summary_is_owner_only_and_never_written_through_a_link(
    tmp_path: Path, suffix: str
) -> None:
    # GIVEN a report folder where someone planted links at the report's and summary's names
    victim = tmp_path / "victim"
    victim.write_text("precious")
    folder = tmp_path / "new"
    folder.mkdir(mode=0o700)
    path = folder / f"r.{suffix}"
    path.symlink_to(victim)
    summary_path(path).symlink_to(victim)
    # WHEN the report is written: CSV/JSONL refuse the link, Parquet and the summary replace it
    if suffix == "parquet":
        write(path, results())
    else:
        with pytest.raises(OSError):
            open_report(path)
        path.unlink()
        write(path, results())
    write_summary(path, summary())
    # THEN the victim is untouched, and the report and summary are regular 0600 files
    assert victim.read_text() == "precious"
    for made in (path, summary_path(path)):
        assert not made.is_symlink() and stat.S_IMODE(made.stat().st_mode) == 0o600


def test_write_parquet_of_no_rows_is_a_valid_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    write_parquet(path, [])
    assert pq.read_table(path).num_rows == 0


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_every_format_reads_back_as_the_results_written(tmp_path: Path, suffix: str) -> None:
    # GIVEN a report in this format, with cells the CSV writer defuses
    path = tmp_path / f"r.{suffix}"
    if suffix == "parquet":
        write_parquet(path, results())
    else:
        write(path, results())

    # WHEN it is read back
    records = list(read_results(path))

    # THEN every format gives the results as they were ("007" stays "007", "-dash" loses the
    # CSV's defusing quote)
    assert records == results()


def test_a_csv_report_with_its_columns_reordered_or_missing_is_read_by_name(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r.csv"
    path.write_text("status,row,username\nupdated,2,bob\n", encoding="utf-8")
    assert list(read_results(path)) == [RowResult(2, "bob", Status.UPDATED)]


def test_reading_a_report_refuses_what_is_not_one(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        list(read_results(tmp_path / "missing.csv"))
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(UsageError, match="not a cognito-batch report"):
        list(read_results(other))
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(UsageError, match="unreadable"):
        list(read_results(broken))
    torn = tmp_path / "torn.csv"
    torn.write_text(",".join(REPORT_COLUMNS) + "\n1,a,,updated,1,,,3\n2,b,,upd", encoding="utf-8")
    with pytest.raises(UsageError, match="unreadable"):
        list(read_results(torn))
    # a run still writing its report: the torn last line is passed over
    assert [r.row for r in read_results(torn, partial=True)] == [1]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"row": 1, "status": "gone"}\n', encoding="utf-8")
    with pytest.raises(UsageError, match="row 1 is not a result"):
        list(read_results(bad))


def summary() -> dict[str, object]:
    return {
        "rows": 306, "duration_s": 12.34, "achieved_rate": 24.5, "rate": 25.0,
        "counts": {"updated": 299, "unchanged": 0, "invalid": 6, "failed": 1, "skipped": 0},
        "calls": 301, "throttles": 2, "faults": 0,
        "errors": {"UserNotFoundException": 1, "InvalidValue": 5},
        "stopped": "", "report": "reports/demo.report.csv",
    }


def test_write_summary_writes_json_beside_the_report(tmp_path: Path) -> None:
    report = tmp_path / "demo.report.csv"
    path = write_summary(report, summary())
    assert path == summary_path(report) == tmp_path / "demo.report.csv.summary.json"
    assert json.loads(path.read_text(encoding="utf-8")) == summary()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.report.csv.summary.json"]


def test_format_summary_names_the_counts_errors_and_report() -> None:
    text = format_summary(summary())
    assert "306 rows" in text
    assert "updated 299, unchanged 0, invalid 6, failed 1, skipped 0" in text
    assert "errors: InvalidValue 5, UserNotFoundException 1" in text
    assert "report: reports/demo.report.csv" in text
    assert "stopped" not in text
    assert "stopped: SIGINT" in format_summary({**summary(), "stopped": "SIGINT"})


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_reading_a_large_report_keeps_memory_flat(tmp_path: Path, suffix: str) -> None:
    import tracemalloc

    from batch.commands.retry import retry_rows

    # GIVEN a report of 200,000 rows (about 9 MB as CSV), every one finished
    n = 200_000
    path = tmp_path / f"r.{suffix}"
    writer = open_report(path)
    for row in range(1, n + 1):
        writer.write_cells([row, f"user{row:07d}", "", "updated", 1, "", "", 40])
    writer.close()

    # WHEN retry reads it for the rows to retry, and the reader streams it whole
    tracemalloc.start()
    try:
        rows = retry_rows(path)
        count = sum(1 for _ in read_results(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # THEN both saw every row, and the peak is a few batches, not the report (Python objects:
    # the whole report as rows would be well over 100 MB)
    assert rows == () and count == n
    assert peak < 12 * 2**20, f"peak {peak / 2**20:.1f} MiB"
