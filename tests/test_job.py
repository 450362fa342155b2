"""A whole job through ``batch.commands.run.Job`` with the in-memory Cognito: reports, resume,
dry run."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeCognito
from helpers import report_rows

from batch.commands.run import EXIT_ROWS, Job
from batch.config import JobConfig, build_config
from batch.errors import ResumeError, UsageError
from batch.models import RowResult, Status
from batch.record.before_images import undo_path
from batch.record.journal import Journal, JournalHeader, journal_path, read_journal
from batch.store.storage import file_sha256

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"
DEMO = SAMPLE / "demo_users.csv"
POOL = "us-east-1_test"


def seed_users() -> dict[str, dict[str, str]]:
    with open(SAMPLE / "seed_users.csv", encoding="utf-8", newline="") as handle:
        return {r["username"]: {k: v for k, v in r.items() if k != "username"}
                for r in csv.DictReader(handle)}


def demo_rows() -> int:
    with open(DEMO, encoding="utf-8", newline="") as handle:
        return sum(1 for _ in csv.DictReader(handle))


def job_config(report: Path, input: Path = DEMO, **overrides: Any) -> JobConfig:
    settings: dict[str, Any] = {
        "input": str(input), "user_pool_id": POOL, "report": str(report), "rate": "10000",
        "workers": 8, "quiet": True, "confirm": False, "mark_verified": True,
        "columns": {"department": "custom:department"},
    }
    settings.update(overrides)
    return build_config(None, settings)


def run(config: JobConfig, fake: FakeCognito) -> Any:
    return Job(config, gateway=fake, stream=io.StringIO()).run()  # type: ignore[arg-type]


def test_every_input_row_gets_exactly_one_report_row(tmp_path: Path) -> None:
    # GIVEN the demo input and a pool seeded with its users
    fake = FakeCognito(seed_users())
    report = tmp_path / "demo.report.csv"

    # WHEN the job runs
    result = run(job_config(report), fake)

    # THEN each of the input's rows is reported once
    rows = report_rows(report)
    assert sorted(rows) == list(range(1, demo_rows() + 1))
    # AND the deliberately bad rows end as they should, the rest updated
    by_user: dict[str, list[dict[str, str]]] = {}
    for r in rows.values():
        by_user.setdefault(r["username"], []).append(r)
    assert by_user["user9999"][0]["status"] == "failed"
    assert by_user["user9999"][0]["error_code"] == "UserNotFoundException"
    assert [r["status"] for r in by_user["user0002"]] == ["invalid", "invalid"]
    for user in ("user0003x", "user0004x", "user0006x", ""):
        assert by_user[user][0]["status"] == "invalid", user
    statuses = [r["status"] for r in rows.values()]
    assert statuses.count("updated") == demo_rows() - 7
    # AND the job finished: exit 1 for the bad rows, journal complete, summary written
    assert result.exit_code == EXIT_ROWS
    state = read_journal(journal_path(report))
    assert state is not None and state.complete
    assert result.summary["counts"]["updated"] == demo_rows() - 7
    assert (tmp_path / "demo.report.csv.summary.json").is_file()
    # AND the concurrency range is the window used, and holds the final one
    window = result.summary["concurrency"]
    assert window["low"] <= window["final"] <= window["high"]
    # AND a changed email was marked verified in the same call
    assert fake.users["user0001"]["email_verified"] == "true"


def test_resume_after_an_interruption_skips_finished_rows(tmp_path: Path) -> None:
    # GIVEN a run interrupted (as a signal does) during the call for user0150
    fake = FakeCognito(seed_users())
    report = tmp_path / "demo.report.csv"
    config = job_config(report, workers=4)
    job = Job(config, gateway=fake, stream=io.StringIO())  # type: ignore[arg-type]

    def interrupt(username: str) -> None:
        if username == "user0150" and job.runner is not None:
            job.runner.stop("interrupted by SIGINT")

    fake.hook = interrupt
    first = job.run()
    first_rows = report_rows(report)
    done = {n for n, r in first_rows.items() if r["status"] in ("updated", "unchanged", "invalid")}
    assert first.summary["stopped"] == "interrupted by SIGINT"
    assert any(r["status"] == "skipped" for r in first_rows.values())
    state = read_journal(journal_path(report))
    assert state is not None and not state.complete

    # WHEN the same job runs again
    fake.hook = None
    fake.calls.clear()
    second = run(config, fake)

    # THEN the final report has every row exactly once, none left skipped
    rows = report_rows(report)
    assert sorted(rows) == list(range(1, demo_rows() + 1))
    assert not [r for r in rows.values() if r["status"] == "skipped"]
    # AND finished rows were carried, not redone
    for n in done:
        assert rows[n] == first_rows[n]
    redone = {user for _, user in fake.calls}
    assert redone.isdisjoint({first_rows[n]["username"] for n in done})
    assert second.summary["resumed_rows"] == len(done)
    final = read_journal(journal_path(report))
    assert final is not None and final.complete


def test_resume_from_a_hand_written_journal(tmp_path: Path) -> None:
    # GIVEN a journal as a killed run leaves it: rows 1-10 finished, row 11 failed, and a
    # torn last line
    fake = FakeCognito(seed_users())
    report = tmp_path / "r.csv"
    config = job_config(report)
    carried = [
        RowResult(n, f"user{n:04d}", Status.INVALID if n == 2 else Status.UPDATED,
                  attempts=1, elapsed_ms=999)
        for n in range(1, 11)
    ] + [RowResult(11, "user0011", Status.FAILED, error_code="InternalErrorException")]
    journal = Journal(journal_path(report),
                      JournalHeader(file_sha256(DEMO), config.fingerprint()),
                      carry=iter(carried))
    journal.close()
    with open(journal_path(report), "a", encoding="utf-8") as handle:
        handle.write('{"row": 12, "status": "upd')

    # WHEN the job runs
    result = run(config, fake)

    # THEN rows 1-10 were carried as recorded and not sent again; row 11 was redone
    rows = report_rows(report)
    assert sorted(rows) == list(range(1, demo_rows() + 1))
    for n in range(1, 11):
        assert rows[n]["elapsed_ms"] == "999"
    called = {user for _, user in fake.calls}
    assert called.isdisjoint({f"user{n:04d}" for n in range(1, 11)})
    assert "user0011" in called and "user0012" in called
    assert rows[11]["status"] == "updated"
    assert result.summary["resumed_rows"] == 10


def test_an_unfinished_journal_of_another_input_is_a_resume_error(tmp_path: Path) -> None:
    # GIVEN an interrupted run of the demo input
    fake = FakeCognito(seed_users())
    report = tmp_path / "r.csv"
    job = Job(job_config(report), gateway=fake, stream=io.StringIO())  # type: ignore[arg-type]
    fake.hook = lambda user: job.runner.stop("interrupted") if job.runner else None
    job.run()
    fake.hook = None
    # AND a different input aimed at the same report
    other = tmp_path / "other.csv"
    shutil.copy(DEMO, other)
    with open(other, "a", encoding="utf-8") as handle:
        handle.write("user0001,,,,,,,gold\n")
    fake.calls.clear()

    # WHEN it runs, THEN it refuses before any call
    with pytest.raises(ResumeError, match="different input"):
        run(job_config(report, input=other), fake)
    assert fake.calls == []

    # WHEN it runs with --fresh, THEN it is refused while the interrupted run's before-images
    # are there (the journal it would discard vouches for them)
    with pytest.raises(UsageError, match="before-images"):
        run(job_config(report, input=other, fresh=True), fake)
    assert fake.calls == []
    # ... and once they are moved aside, it ignores the journal and does every row
    undo_path(report).rename(tmp_path / "kept.undo.jsonl")
    result = run(job_config(report, input=other, fresh=True), fake)
    assert result.summary["resumed_rows"] == 0
    assert sorted(report_rows(report)) == list(range(1, demo_rows() + 2))


def test_an_unfinished_journal_with_other_settings_is_a_resume_error(tmp_path: Path) -> None:
    fake = FakeCognito(seed_users())
    report = tmp_path / "r.csv"
    job = Job(job_config(report), gateway=fake, stream=io.StringIO())  # type: ignore[arg-type]
    fake.hook = lambda user: job.runner.stop("interrupted") if job.runner else None
    job.run()
    fake.hook = None
    with pytest.raises(ResumeError, match="different settings"):
        run(job_config(report, empty="delete"), fake)


def test_dry_run_makes_no_calls_and_plans_what_a_real_run_does(tmp_path: Path) -> None:
    # GIVEN a pool where every user of the input exists
    users = seed_users()
    users["user9999"] = {}
    fake = FakeCognito(users)

    # WHEN the job is dry-run
    dry_report = tmp_path / "dry.csv"
    dry = run(job_config(dry_report, dry_run=True), fake)

    # THEN nothing was sent and no journal was started
    assert fake.calls == []
    assert fake.users == users
    assert not journal_path(dry_report).exists()
    assert dry.summary["dry_run"] is True

    # WHEN the same job runs for real
    real_report = tmp_path / "real.csv"
    run(job_config(real_report), fake)

    # THEN the dry run's planned status of every row is the real run's status
    planned = {n: r["status"] for n, r in report_rows(dry_report).items()}
    actual = {n: r["status"] for n, r in report_rows(real_report).items()}
    assert planned == actual
    assert dry.summary["to_apply"] == list(actual.values()).count("updated")
