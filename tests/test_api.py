"""The Python API (``batch.run``): a job through it against the emulator, its typed result,
its progress callback, and the documented errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import batch
from batch.models import RowResult, Status
from batch.view.progress import Progress, Tick


def _input(path: Path, n: int) -> Path:
    path.write_text("username,tier\n" + "".join(f"u{i},gold\n" for i in range(1, n + 1))
                    + "nobody,gold\n")
    return path


def test_a_job_through_the_api_returns_a_typed_result(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN a pool of 20 users and an input with one user the pool lacks
    pool = make_pool(users=[{"username": f"u{i}"} for i in range(1, 21)])
    ticks: list[Tick] = []
    # WHEN the job runs through the API, settings as keyword arguments
    result = batch.run(None, {"input": str(_input(tmp_path / "in.csv", 20)),
                              "report": str(tmp_path / "out.csv")},
                       user_pool_id=pool, endpoint_url=emulator.endpoint_url,
                       region="us-east-1", rate=500, quiet=True, undo=False,
                       on_progress=ticks.append)
    # THEN the result is typed and true to the run
    assert isinstance(result, batch.RunResult) and isinstance(result.summary, batch.RunSummary)
    assert (result.exit_code, result.success, result.finished) == (1, False, True)
    assert result.counts["updated"] == 20 and result.counts["failed"] == 1
    assert result.summary.calls >= 21 and result.summary.exit_code == 1
    assert result.report == tmp_path / "out.csv" and result.report.is_file()
    assert result.summary_path.is_file() and result.html is None
    assert emulator.get_user_attributes(pool, "u20")["custom:tier"] == "gold"
    # AND the progress callback saw the end, counts only
    assert ticks and ticks[-1].final and ticks[-1].done == 21
    assert ticks[-1].counts["updated"] == 20


def test_a_real_pool_is_never_written_without_being_asked(tmp_path: Path) -> None:
    # GIVEN settings for a real pool (no emulator endpoint) and no way to ask
    settings = {"input": str(_input(tmp_path / "in.csv", 2)), "user_pool_id": "eu-west-1_Real1",
                "region": "eu-west-1", "report": str(tmp_path / "out.csv")}
    # WHEN run through the API THEN it refuses before anything is opened or written
    with pytest.raises(batch.UsageError, match="real pool"):
        batch.run(None, settings)
    assert not (tmp_path / "out.csv").exists()


def test_bad_settings_raise_the_documented_error(tmp_path: Path) -> None:
    with pytest.raises(batch.BatchError):
        batch.run(None, {"input": str(tmp_path / "missing.csv"), "user_pool_id": "x_1",
                         "rate": "fast"}, confirm=False)


def test_progress_listeners_tick_on_the_interval_and_once_at_the_end() -> None:
    # GIVEN a progress with a listener and a manual clock
    now = [0.0]
    ticks: list[Tick] = []
    progress = Progress(5, quiet=True, interval=10.0, clock=lambda: now[0],
                        listeners=[ticks.append])
    # WHEN rows are reported at 0, 4, 11, 12 and 25 s, then it closes
    for row, at in enumerate((0.0, 4.0, 11.0, 12.0, 25.0), start=1):
        now[0] = at
        progress.add(RowResult(row, f"u{row}", Status.UPDATED))
    progress.close()
    # THEN a tick at 11 s and at 25 s (ten seconds apart at least), and a final one
    assert [(t.done, t.elapsed_s, t.final) for t in ticks] == [
        (3, 11.0, False), (5, 25.0, False), (5, 25.0, True)]
    assert ticks[-1].counts == {"updated": 5}
