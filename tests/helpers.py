"""Small helpers several end-to-end test files share: input files, fast quotas, polling a
child process's progress, reading a report."""

from __future__ import annotations

import csv
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

#: Emulator quotas high enough that a test's few calls never wait on them.
FAST = {"UserUpdate": 1000, "UserList": 1000, "UserRead": 1000, "UserPoolRead": 1000}


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def wait_for(
    predicate: Callable[[], object], proc: subprocess.Popen[bytes], timeout: float = 60.0
) -> bool:
    """Poll a condition on the process's files or effects; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    raise AssertionError("condition not reached in time")


def report_rows(path: Path) -> dict[int, dict[str, str]]:
    """A report's rows by row number, read through the tool's one reader (any format), each
    as strings ("1", "updated", "" for no error); a row number reported twice fails the test."""
    from batch.record.report_reader import read_results

    rows: dict[int, dict[str, str]] = {}
    for result in read_results(path):
        assert result.row not in rows, f"{path}: row {result.row} is reported twice"
        rows[result.row] = {k: str(v) for k, v in result.as_record().items()}
    return rows
