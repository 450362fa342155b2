"""Resume at scale and the end of a run: flat memory, bulk-reported unreached rows, the
completion marker last, a missing report rebuilt, owner-only files.

The job runs in process against the in-memory Cognito (``fakes.FakeCognito``): these tests are
about what the job writes, not about HTTP, and a large input must stay affordable.
"""

from __future__ import annotations

import io
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from fakes import FakeCognito
from helpers import report_rows

from batch.cli import main
from batch.commands.retry import retry_config
from batch.commands.run import Job
from batch.config import JobConfig, build_config
from batch.engine import pipeline as pipeline_module
from batch.errors import ResumeError
from batch.record import summary as summary_module
from batch.record.journal import JournalState, journal_path, read_journal
from batch.record.layout import RunFiles
from batch.record.report import summary_path
from batch.record.timeline import timeline_path

POOL = "us-east-1_test"


def write_input(path: Path, n: int, *, valid_every: int = 1) -> Path:
    """n rows; every ``valid_every``-th has a good email, the others a bad one (invalid, no
    call): a large input whose run is not stretched by calls."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("username,email\n")
        for start in range(1, n + 1, 50_000):
            handle.write("".join(
                f"user{i},{f'u{i}@example.com' if i % valid_every == 0 else 'not-an-email'}\n"
                for i in range(start, min(start + 50_000, n + 1))
            ))
    return path


def users(n: int) -> dict[str, dict[str, str]]:
    return {f"user{i}": {} for i in range(1, n + 1)}


def config(source: Path, report: Path, **overrides: Any) -> JobConfig:
    settings: dict[str, Any] = {"input": str(source), "user_pool_id": POOL, "report": str(report),
                                "rate": "100000", "workers": 4, "quiet": True, "confirm": False,
                                "undo": False}  # the journal's scale, not the before-images'

    settings.update(overrides)
    return build_config(None, settings)


def stop_at(job: Job, fake: FakeCognito, username: str) -> None:
    """Stop the run during the call for ``username`` through the job's SIGTERM handler (as
    the signal would, without sending one to the test process): the reason and the exit code
    are then the job's own, not a string the test passed in."""

    def hook(user: str) -> None:
        if user == username:
            job.pipeline.signals._on_signal(signal.SIGTERM, None)  # noqa: SLF001 - the handler

    fake.hook = hook


def assert_each_row_once(report: Path, n: int) -> list[dict[str, str]]:
    rows = report_rows(report)
    assert sorted(rows) == list(range(1, n + 1)), "a row is missing"
    return list(rows.values())


def journal_rows(report: Path) -> list[int]:
    state = read_journal(journal_path(report))
    assert state is not None
    return [r.row for r in state.records()]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# What a resume keeps is a bitmap and a streamed carry, with no threshold between 20,000 and
# 200,000 rows (the carry looks for a stop every 4,096 rows; unreached rows are reported in
# chunks of 2**20): 50,000 rows take the same paths as the 200,000 this test once had, at a
# quarter of the cost. Flat memory is test_journal's (tracemalloc); peak RSS and time at 100 k
# to 2 M rows are bench/scale.py's. SCALE_ROWS=200000 runs it at the old size.
MANY_ROWS = int(os.environ.get("SCALE_ROWS", "50000"))


@pytest.mark.parametrize(("suffix", "n"), [("csv", MANY_ROWS), ("parquet", 20_000)])
def test_a_stopped_run_of_many_rows_resumes_with_every_row_exactly_once(
    tmp_path: Path, suffix: str, n: int
) -> None:
    # GIVEN 50,000 rows (Parquet: 20,000), one in 1,000 valid, and a run stopped during the
    # call for the row half way
    source = write_input(tmp_path / "in.csv", n, valid_every=1000)
    report = tmp_path / f"out.{suffix}"
    fake = FakeCognito(users(n))
    first = Job(config(source, report), gateway=fake, stream=io.StringIO())  # type: ignore[arg-type]
    stop_at(first, fake, f"user{n // 2}")
    stopped = first.run()

    # THEN the stopped run's report holds every row once, the unreached rest skipped
    assert stopped.exit_code == 143 and stopped.summary["stopped"] == "interrupted by SIGTERM"
    rows = assert_each_row_once(report, n)
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert len(skipped) >= n // 2 - 10
    # ... and its journal only what was done (the unreached rows were never written there)
    assert len(journal_rows(report)) <= n // 2 + 10

    # WHEN the same command runs again
    fake.hook = None
    fake.calls.clear()
    second = Job(config(source, report), gateway=fake, stream=io.StringIO()).run()  # type: ignore[arg-type]

    # THEN every row is reported exactly once, nothing skipped, only the rest was called
    rows = assert_each_row_once(report, n)
    assert not [r for r in rows if r["status"] == "skipped"]
    assert sum(r["status"] == "updated" for r in rows) == n // 1000
    assert {u for _, u in fake.calls} <= {f"user{i}" for i in range(n // 2, n + 1, 1000)}
    assert second.summary["counts"]["invalid"] == n - n // 1000
    # AND the journal was compacted: each row once, and marked complete
    assert sorted(journal_rows(report)) == list(range(1, n + 1))
    state = read_journal(journal_path(report))
    assert state is not None and state.complete


def test_rows_not_reached_are_reported_in_bulk_without_passing_the_runner(tmp_path: Path) -> None:
    # GIVEN 5,000 valid rows and a stop (as SIGTERM) during row 100's call
    n = 5_000
    source = write_input(tmp_path / "in.csv", n)
    report = tmp_path / "out.csv"
    fake = FakeCognito(users(n))
    job = Job(config(source, report, workers=2), gateway=fake, stream=io.StringIO())  # type: ignore[arg-type]
    results: list[int] = []
    original = pipeline_module.Runner.__init__

    def spy(self: Any, *args: Any, on_result: Any, **kwargs: Any) -> None:
        def counted(result: Any) -> None:
            results.append(result.row)
            on_result(result)

        original(self, *args, on_result=counted, **kwargs)

    stop_at(job, fake, "user100")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline_module.Runner, "__init__", spy)
        outcome = job.run()

    # THEN the runner produced results only for the rows it reached (a window's worth past 100)
    assert len(results) < 100 + 20
    # AND the report still holds all 5,000 rows, the unreached ones skipped with the reason
    rows = assert_each_row_once(report, n)
    unreached = [r for r in rows if int(r["row"]) not in set(results)]
    assert len(unreached) == n - len(results)
    assert {(r["status"], r["error_code"], r["error_message"]) for r in unreached} == {
        ("skipped", "Stopped", "interrupted by SIGTERM")
    }
    assert outcome.summary["counts"]["skipped"] >= len(unreached)
    # AND the journal holds only what the runner did: a resume redoes the rest
    assert sorted(journal_rows(report)) == sorted(results)
    state = read_journal(journal_path(report))
    assert state is not None and not state.complete


def test_the_completion_marker_waits_for_the_report_and_summary(tmp_path: Path) -> None:
    # GIVEN a run whose summary cannot be written (the disk fills at the very end)
    n = 50
    source = write_input(tmp_path / "in.csv", n)
    report = tmp_path / "out.csv"
    fake = FakeCognito(users(n))

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(summary_module, "write_summary", full)
        with pytest.raises(OSError, match="No space"):
            Job(config(source, report), gateway=fake, stream=io.StringIO()).run()  # type: ignore[arg-type]

    # THEN the journal is not marked complete, so the next run resumes (carrying every row)
    state = read_journal(journal_path(report))
    assert state is not None and not state.complete
    fake.calls.clear()
    again = Job(config(source, report), gateway=fake, stream=io.StringIO()).run()  # type: ignore[arg-type]
    assert fake.calls == [] and again.summary["resumed_rows"] == n
    assert summary_path(report).is_file()


def test_when_the_marker_is_written_the_report_and_summary_are_on_disk(tmp_path: Path) -> None:
    # GIVEN a Parquet report (written whole only at the end)
    n = 30
    source = write_input(tmp_path / "in.csv", n)
    report = tmp_path / "out.parquet"
    seen: list[tuple[int, bool]] = []
    original = pipeline_module.Journal.complete

    def complete(self: Any) -> None:
        seen.append((pq.read_table(report).num_rows, summary_path(report).is_file()))
        original(self)

    # WHEN the run ends
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline_module.Journal, "complete", complete)
        Job(config(source, report), gateway=FakeCognito(users(n)), stream=io.StringIO()).run()  # type: ignore[arg-type]

    # THEN the marker was written once, after the whole report and the summary
    assert seen == [(n, True)]


@pytest.mark.parametrize("lost", ["report", "summary"])
def test_a_finished_run_whose_report_is_gone_is_rebuilt_without_calls(
    tmp_path: Path, lost: str
) -> None:
    # GIVEN a finished run with failed rows, whose report (or summary) was then lost
    n = 40
    source = write_input(tmp_path / "in.csv", n)
    report = tmp_path / "out.jsonl"
    fake = FakeCognito({f"user{i}": {} for i in range(1, n + 1) if i % 10})
    first = Job(config(source, report), gateway=fake, stream=io.StringIO()).run()  # type: ignore[arg-type]
    before = report_rows(report)
    (report if lost == "report" else summary_path(report)).unlink()
    fake.calls.clear()

    # WHEN the same command runs again
    rebuilt = Job(config(source, report), gateway=fake, stream=io.StringIO()).run()  # type: ignore[arg-type]

    # THEN nothing is called, and the report and summary are back, as the run left them
    assert fake.calls == []
    assert report_rows(report) == before
    assert rebuilt.exit_code == first.exit_code == 1
    assert rebuilt.summary["counts"] == first.summary["counts"]
    assert rebuilt.summary["rebuilt_from_journal"] is True
    # AND retry works from it: exactly the failed rows
    assert retry_config(str(report), None, {}).rows == (10, 20, 30, 40)


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_report_journal_and_summary_are_owner_only(tmp_path: Path, suffix: str) -> None:
    # GIVEN a report in a folder that does not exist yet
    n = 20
    source = write_input(tmp_path / "in.csv", n)
    report = tmp_path / "reports" / f"out.{suffix}"
    # WHEN a run writes it
    Job(config(source, report), gateway=FakeCognito(users(n)), stream=io.StringIO()).run()  # type: ignore[arg-type]
    # THEN the folder is 0700, every file in it 0600, and no temporary file is left
    assert mode(report.parent) == 0o700
    names = sorted(p.name for p in report.parent.iterdir())
    assert names == sorted([report.name, journal_path(report).name, summary_path(report).name,
                            timeline_path(report).name])
    assert {mode(p) for p in report.parent.iterdir()} == {0o600}
    assert len(report_rows(report)) == n


def test_an_unfinished_journal_of_an_older_version_is_exit_2_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the journal of an unfinished run of an older cognito-batch (version 1)
    source = write_input(tmp_path / "in.csv", 5)
    report = tmp_path / "out.csv"
    journal_path(report).write_text(
        '{"journal": 1, "input_sha256": "x", "settings": "y"}\n{"row": 1, "status": "updated"}\n'
    )
    # WHEN the run starts (the library raises; the CLI says one line, exit 2)
    with pytest.raises(ResumeError, match="older cognito-batch"):
        Job(config(source, report), gateway=FakeCognito(users(5)), stream=io.StringIO()).run()  # type: ignore[arg-type]
    code = main(["run", str(source), "--user-pool-id", POOL, "--report", str(report),
                 "--endpoint-url", "http://127.0.0.1:9", "--yes", "--quiet"])
    err = capsys.readouterr().err
    # THEN exit 2, no traceback; --fresh is named as the way out
    assert code == 2 and "Traceback" not in err and "--fresh" in err
    assert err.count("\n") == 1


def updated_in_journal(report: Path) -> set[str]:
    """The users whose last record in the journal is ``updated``: written, never again."""
    state = read_journal(journal_path(report))
    assert state is not None
    return {r.username for r in state.records() if r.status.value == "updated"}


def stopped_half_way(
    tmp_path: Path, n: int, suffix: str = "csv"
) -> tuple[Path, Path, FakeCognito, bytes]:
    """A run of n rows (one in 100 a call) stopped half way by SIGTERM: about n/2 finished
    rows for a resume to carry; the input, the report, the pool and the journal's bytes."""
    source = write_input(tmp_path / "in.csv", n, valid_every=100)
    report = tmp_path / f"out.{suffix}"
    fake = FakeCognito(users(n))
    first = Job(config(source, report), gateway=fake, stream=io.StringIO())  # type: ignore[arg-type]
    stop_at(first, fake, f"user{n // 2}")
    first.run()
    fake.hook = None
    fake.calls.clear()
    return source, report, fake, journal_path(report).read_bytes()


def test_a_signal_during_the_carry_stops_at_once_and_the_journal_keeps_every_result(
    tmp_path: Path,
) -> None:
    # GIVEN a run of 20,000 rows stopped half way (about 10,000 finished rows to carry)
    n = 20_000
    source, report, fake, before = stopped_half_way(tmp_path, n)
    summary_before = summary_path(report).read_bytes()

    # WHEN a resume is signalled (as SIGTERM does) just after its carry starts copying the
    # finished rows into the report, while its runner already writes
    job = Job(config(source, report), gateway=fake, stream=io.StringIO())  # type: ignore[arg-type]
    copied: list[int] = []
    calls_at_signal: list[int] = []
    original = JournalState.carried

    def carried(self: JournalState) -> Any:
        for item in original(self):
            copied.append(item[1][0])
            if len(copied) == 1:
                calls_at_signal.append(len(fake.calls))
                job.pipeline.signals._on_signal(signal.SIGTERM, None)  # noqa: SLF001 - the handler
            yield item

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(JournalState, "carried", carried)
        result = job.run()

    # THEN the first write did not wait for the carry (a call was answered before it began)
    assert calls_at_signal and calls_at_signal[0] >= 1
    # AND the carry stopped within a few thousand rows, exit 143
    assert len(copied) <= 4097 < len(read_journal(journal_path(report)).finished)  # type: ignore[union-attr]
    assert result.exit_code == 143
    # AND the journal was appended to, not rewritten: its old lines as they were, then what
    # this attempt did; no half report, no summary of this attempt, no temporary left
    assert journal_path(report).read_bytes().startswith(before)
    assert summary_path(report).read_bytes() == summary_before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            ["in.csv", journal_path(report).name, summary_path(report).name,
             timeline_path(report).name,  # the first run's, beside its journal
             RunFiles(report).keyscan.name]  # its key scan, kept for the resume
    )
    # WHEN the same command runs again THEN it resumes to a whole report, writing no user
    # that an earlier attempt updated
    written = updated_in_journal(report)
    fake.calls.clear()
    Job(config(source, report), gateway=fake, stream=io.StringIO()).run()  # type: ignore[arg-type]
    rows = assert_each_row_once(report, n)
    assert not [r for r in rows if r["status"] == "skipped"]
    assert not written & {u for _, u in fake.calls}
    assert sum(r["status"] == "updated" for r in rows) == n // 100


KILLED_IN_CARRY = """
import io, os, signal, sys, threading
sys.path.insert(0, {tests!r})
from fakes import FakeCognito
from batch.commands.run import Job
from batch.config import build_config
from batch.record.journal import JournalState

fake = FakeCognito({{f"user{{i}}": {{}} for i in range(1, {n} + 1)}})
called = threading.Event()
fake.hook = lambda user: called.set()
original = JournalState.carried

def carried(self):
    for k, item in enumerate(original(self)):
        if k == {at}:  # half way through the carry, once the runner has written: kill -9
            called.wait(60)
            os.kill(os.getpid(), signal.SIGKILL)
        yield item

JournalState.carried = carried
settings = {{"input": {source!r}, "user_pool_id": "us-east-1_test", "report": {report!r},
            "rate": "100000", "workers": 4, "quiet": True, "confirm": False, "undo": False}}
Job(build_config(None, settings), gateway=fake, stream=io.StringIO()).run()
"""


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_a_kill_9_during_the_carry_then_a_resume_reports_and_writes_every_row_once(
    tmp_path: Path, suffix: str
) -> None:
    # GIVEN a run of 20,000 rows stopped half way
    n = 20_000
    source, report, fake, before = stopped_half_way(tmp_path, n, suffix)

    # WHEN a resume is killed with SIGKILL half way through its carry, its runner writing
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_IN_CARRY.format(
            tests=str(Path(__file__).parent), n=n, at=n // 4, source=str(source),
            report=str(report))],
        capture_output=True, text=True, timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    # THEN the journal kept its old lines as they were, the killed attempt's after them
    assert journal_path(report).read_bytes().startswith(before)
    assert len(journal_path(report).read_bytes()) > len(before)

    # WHEN the same command runs again
    written = updated_in_journal(report)
    again = Job(config(source, report), gateway=fake, stream=io.StringIO()).run()  # type: ignore[arg-type]

    # THEN every row is reported once, none skipped, and no user written twice
    rows = assert_each_row_once(report, n)
    assert not [r for r in rows if r["status"] == "skipped"] and again.exit_code == 1
    assert not written & {u for _, u in fake.calls}
    assert sum(r["status"] == "updated" for r in rows) == n // 100
    state = read_journal(journal_path(report))
    assert state is not None and state.complete
    # AND the report lists the rows carried first, then the rows this attempt did
    carried = again.summary["resumed_rows"]
    assert min(int(r["row"]) for r in rows[carried:]) > n // 2 - 100
