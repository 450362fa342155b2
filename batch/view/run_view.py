"""What ``report`` shows about a run, gathered from what exists beside its report: the
summary, the timeline, and the report (or, for a Parquet report, the journal) streamed for its
counts with a bounded number of sample rows per error code, so a report of millions of rows
costs seconds and flat memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batch.errors import UsageError
from batch.models import Status
from batch.record.report import report_format, summary_path
from batch.record.report_reader import read_cells
from batch.record.summary import RunSummary
from batch.record.timeline import Timeline, read_timeline

SAMPLES_PER_CODE = 5
MAX_CODES = 200  # distinct error codes tracked with samples; more are counted as "(other)"


@dataclass(slots=True)
class ErrorSample:
    """One error code: how many rows, the first message, a few sample rows."""

    count: int = 0
    message: str = ""
    rows: list[tuple[int, str]] = field(default_factory=list)


@dataclass(slots=True)
class ReportScan:
    """What streaming the report found: counts and bounded samples."""

    rows: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    errors: dict[str, ErrorSample] = field(default_factory=dict)
    source: str = ""

    def add(self, row: int, username: str, status: str, code: str, message: str) -> None:
        self.rows += 1
        self.by_status[status] = self.by_status.get(status, 0) + 1
        if code:
            self.add_error(row, username, code, message)

    def add_error(self, row: int, username: str, code: str, message: str) -> None:
        if code not in self.errors and len(self.errors) >= MAX_CODES:
            code = "(other)"
        sample = self.errors.setdefault(code, ErrorSample(message=message))
        sample.count += 1
        if len(sample.rows) < SAMPLES_PER_CODE:
            sample.rows.append((row, username))


def scan_report(path: Path) -> ReportScan:
    """Count a report's rows, streamed (the run may still be writing it: a torn last line is
    passed over); only rows with an error code take the slow path (most rows of a night have
    none, and a million of them should cost about what reading them does)."""
    scan = ReportScan(source=str(path))
    by_status = scan.by_status
    rows = 0
    for cells in read_cells(path, partial=True):
        rows += 1
        status = str(cells[3])
        by_status[status] = by_status.get(status, 0) + 1
        if cells[5]:
            scan.add_error(int(cells[0]), str(cells[1] or ""), str(cells[5]),
                           str(cells[6] or ""))
    scan.rows += rows
    return scan


@dataclass(slots=True)
class RunView:
    """Everything the page and the terminal show about one run."""

    report: Path
    summary: dict[str, Any] | None
    timeline: Timeline | None
    scan: ReportScan
    finished: bool

    @property
    def counts(self) -> dict[str, int]:
        if self.summary is not None and self.finished:
            return {k: int(v) for k, v in self.summary.get("counts", {}).items()}
        return {s.value: self.scan.by_status.get(s.value, 0) for s in Status}

    @property
    def total_rows(self) -> int | None:
        if self.summary is not None and self.finished:
            return int(self.summary.get("rows", 0))
        if self.timeline is not None and self.timeline.rows:
            return self.timeline.rows
        return None


def load_run(report: Path) -> RunView:
    """Read a run from what exists beside ``report``; a usage error when nothing does."""
    from batch.record.journal import journal_path, read_journal
    from batch.record.timeline import timeline_path

    report_format(report)
    spath, jpath = summary_path(report), journal_path(report)
    summary: dict[str, Any] | None = None
    if spath.is_file():
        try:
            summary = RunSummary.load(spath).as_json()  # older shapes read as today's
        except OSError as exc:
            raise UsageError(f"summary {spath}: unreadable ({exc})") from None
    # A run writes its summary after the report and the timeline (only the journal's
    # completion marker comes later): a summary older than either belongs to an earlier run,
    # and this one has not ended.
    others = [p.stat().st_mtime for p in (report, timeline_path(report)) if p.exists()]
    finished = summary is not None and spath.stat().st_mtime >= max(others, default=0.0)
    if report.is_file():
        scan = scan_report(report)
    elif jpath.is_file():  # a Parquet report is only written when its run ends
        scan = ReportScan(source=str(jpath))
        state = read_journal(jpath)
        for result in state.records() if state is not None else ():
            scan.add(result.row, result.username, result.status.value, result.error_code,
                     result.error_message)
    elif summary is None:
        raise UsageError(f"report {report}: no such file (nor its summary or journal)")
    else:
        scan = ReportScan()
    return RunView(report, summary, read_timeline(timeline_path(report)), scan, finished)
