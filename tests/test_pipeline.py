"""One apply pipeline (issue 19), and the numbers and guards it owns (issue 20, items 4 and 12).

Undo goes through the same pipeline as run, so it gains what it lacked; each with a test:
- a second concurrent undo is refused (the report's lock)
  -> test_undo_refuses_a_second_concurrent_run
- an undo report that is its own input or one of the run's files is refused, bytes kept
  -> test_undo_refuses_an_output_that_is_its_input_or_the_runs
- a timeline, and ``exit_code`` in its summary
  -> test_undo_writes_a_timeline_and_its_exit_code
- ``--give-up-after`` on a dead endpoint  -> test_undo_gives_up_on_a_dead_endpoint
- ``undo --dry-run`` after an undo keeps the undo's record
  -> test_undo_dry_run_after_an_undo_keeps_its_record
Numbers that are true:
- after a resume, the achieved rate counts this attempt's rows only
  -> test_the_achieved_rate_of_a_resume_counts_only_this_attempt
- a lost report rebuilt under the default rate: no traceback, JSON under --log-format json
  -> test_a_rebuilt_report_under_the_default_rate_logs_json
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeCognito
from helpers import FAST, write_csv
from test_job import job_config, report_rows, seed_users

from batch.cli import main
from batch.commands.run import Job
from batch.commands.undo import UndoJob, undo_config
from batch.config import JobConfig
from batch.record.layout import RunFiles
from batch.record.lock import RunLock
from batch.record.summary import RunSummary


def name(i: int) -> str:
    return f"u{i:03d}"


@pytest.fixture
def fast(emulator: Any) -> Any:
    emulator.configure(quotas=FAST)
    return emulator


def a_run(emulator: Any, make_pool: Any, tmp_path: Path, n: int = 4) -> tuple[str, Path]:
    """A run with before-images that changed ``n`` users; returns the pool and its report."""
    pool = make_pool(users=[{"username": name(i), "custom:tier": "silver"}
                            for i in range(1, n + 1)])
    source = write_csv(tmp_path / "in.csv", ["username", "tier"],
                       [[name(i), "gold"] for i in range(1, n + 1)])
    report = tmp_path / "out.csv"
    assert main(["run", "--undo", str(source), "--user-pool-id", pool, "--endpoint-url",
                 emulator.endpoint_url, "--report", str(report), "--rate", "500", "--yes",
                 "--quiet"]) == 0
    return pool, report


def undo(report: Path, emulator: Any, *extra: str) -> int:
    return main(["undo", str(report), "--endpoint-url", emulator.endpoint_url, "--yes",
                 "--quiet", "--rate", "500", *extra])


def family(report: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in RunFiles(report).all() if p.exists()}


def writes(emulator: Any) -> int:
    ops = emulator.stats()["operations"].get("AdminUpdateUserAttributes", {})
    return int(ops.get("calls", 0))


def test_undo_refuses_a_second_concurrent_run(
    fast: Any, make_pool: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a run to undo, and an undo of it holding its report's lock
    pool, report = a_run(fast, make_pool, tmp_path)
    fast.reset()
    with RunLock(RunFiles(report).undo().lock):
        # WHEN a second undo starts, THEN it is refused (exit 2), naming the holder, no write
        assert undo(report, fast) == 2
    assert "pid" in capsys.readouterr().err
    assert writes(fast) == 0
    assert fast.get_user_attributes(pool, name(1))["custom:tier"] == "gold"


@pytest.mark.parametrize("target", ["out.csv.undo.jsonl", "out.csv", "out.csv.summary.json",
                                    "out.csv.timeline.json"])
def test_undo_refuses_an_output_that_is_its_input_or_the_runs(
    fast: Any, make_pool: Any, tmp_path: Path, target: str
) -> None:
    # GIVEN a run with its before-images, report, journal and summary
    pool, report = a_run(fast, make_pool, tmp_path)
    kept = family(report)
    fast.reset()
    # WHEN its undo is told to report onto one of them, THEN exit 2, every byte kept, no write
    assert undo(report, fast, "--report", str(tmp_path / target)) == 2
    assert family(report) == kept
    assert writes(fast) == 0


def test_undo_writes_a_timeline_and_its_exit_code(fast: Any, make_pool: Any,
                                                  tmp_path: Path) -> None:
    # GIVEN a run that changed 4 users
    pool, report = a_run(fast, make_pool, tmp_path)
    # WHEN it is undone
    assert undo(report, fast) == 0
    # THEN the undo wrote its timeline beside its report, and its summary holds the exit code
    files = RunFiles(report).undo()
    timeline = json.loads(files.timeline.read_text())
    assert timeline["complete"] is True
    summary = RunSummary.of(files.report)
    assert summary.exit_code == 0 and summary.undo_of and summary.counts["updated"] == 4
    assert summary.timeline == str(files.timeline)
    assert fast.get_user_attributes(pool, name(1))["custom:tier"] == "silver"


def test_undo_gives_up_on_a_dead_endpoint(fast: Any, make_pool: Any, tmp_path: Path) -> None:
    # GIVEN a run to undo, and an endpoint that drops every connection once the undo is planned
    pool, report = a_run(fast, make_pool, tmp_path)
    config, _ = undo_config(str(report), {"endpoint_url": fast.endpoint_url, "rate": "500",
                                          "quiet": True, "give_up_after": 1.0})

    def go_away(plan: Any) -> bool:
        fast.configure(drop_rate=1.0)
        return True

    # WHEN the undo runs with --give-up-after 1
    try:
        result = UndoJob(config, confirm=go_away, of=report, stream=io.StringIO()).run()
    finally:
        fast.configure(drop_rate=0.0)
    # THEN it stops as run does: exit 2, after the 1 s it was given, every record reported
    assert result.exit_code == 2 and result.summary["exit_code"] == 2
    assert "--give-up-after 1)" in result.summary["stopped"]
    rows = report_rows(RunFiles(report).undo().report)
    assert sorted(rows) == [1, 2, 3, 4]
    assert fast.get_user_attributes(pool, name(1))["custom:tier"] == "gold"


def test_undo_dry_run_after_an_undo_keeps_its_record(fast: Any, make_pool: Any,
                                                     tmp_path: Path) -> None:
    # GIVEN a run and its undo
    _, report = a_run(fast, make_pool, tmp_path)
    assert undo(report, fast) == 0
    kept = family(RunFiles(report).undo().report)
    # WHEN a dry run of the undo follows, THEN it is refused: the undo's record stays whole
    assert undo(report, fast, "--dry-run") == 2
    assert family(RunFiles(report).undo().report) == kept


def test_the_achieved_rate_of_a_resume_counts_only_this_attempt(tmp_path: Path) -> None:
    # GIVEN a run stopped part way (as a signal stops it), then resumed
    fake = FakeCognito(seed_users())
    report = tmp_path / "demo.report.csv"
    config = job_config(report, workers=4)
    job = Job(config, gateway=fake, stream=io.StringIO())  # type: ignore[arg-type]

    def interrupt(username: str) -> None:
        if username == "user0150" and job.runner is not None:
            job.runner.stop("interrupted by SIGINT")

    fake.hook = interrupt
    first = job.run().summary
    fake.hook = None
    second = Job(config, gateway=fake, stream=io.StringIO()).run().summary  # type: ignore[arg-type]
    # THEN its rate is the rows it wrote over its own time, not the carried ones too
    assert second["resumed_rows"] > 0 and first["counts"]["updated"] > 0
    now = second["counts"]["updated"] - first["counts"]["updated"]
    assert second["achieved_rate"] == pytest.approx(now / second["duration_s"], rel=0.02)
    assert RunSummary.of(report).achieved_rate == second["achieved_rate"]


def test_a_rebuilt_report_under_the_default_rate_logs_json(tmp_path: Path) -> None:
    # GIVEN a finished run under the default (polite) rate whose report was then lost
    fake = FakeCognito(seed_users())
    report = tmp_path / "small.report.csv"
    source = write_csv(tmp_path / "small.csv", ["username", "department"],
                       [[f"user{i:04d}", "ops"] for i in range(1, 6)])
    polite = replace(job_config(report, source), rate=JobConfig().rate)
    assert Job(polite, gateway=fake, stream=io.StringIO()).run().exit_code in (0, 1)  # type: ignore[arg-type]
    report.unlink()
    # WHEN the same run is made again with --log-format json
    stream = io.StringIO()
    again = replace(polite, quiet=False, log_format="json")
    result = Job(again, gateway=fake, stream=stream).run()  # type: ignore[arg-type]
    # THEN the report is rebuilt, no traceback, and every line said is a JSON event
    assert result.summary["rebuilt_from_journal"] is True and report.is_file()
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert {"rebuilt", "summary"} <= set(events)
