"""An operator's mistake never costs data: the input is never an output, one run per report,
an input that changes under the run stops it, OS failures are one line, SIGHUP is a graceful
stop, snapshots do not linger, and ``retry`` connects only where it is told to.

Most tests go through the CLI against the emulator (real HTTP) or through ``Job`` with the
in-memory fake; the signal and lock tests run the job as a real subprocess.
"""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeCognito
from helpers import report_rows
from test_crash import (
    assert_applied_once,
    journal_lines,
    prepare,
    start,
    updates_accepted,
    wait_for,
    write_input,
)

from batch.cli import main
from batch.commands.run import Job
from batch.config import build_config
from batch.errors import InputError, ResumeError, UsageError
from batch.plan.in_doubt import HELD
from batch.record.journal import journal_path
from batch.record.report import summary_path

ROOT = Path(__file__).resolve().parent.parent
POOL = "us-east-1_test"


def cli(emulator: Any, pool: str, source: Path, *args: str) -> int:
    return main(["run", str(source), "--user-pool-id", pool, "--endpoint-url",
                 emulator.endpoint_url, "--yes", "--quiet", *args])


def fake_users(n: int) -> FakeCognito:
    return FakeCognito({f"k{i:05d}": {} for i in range(1, n + 1)})


def fake_job(report: Path, source: Path, fake: FakeCognito, **settings: Any) -> Job:
    config = build_config(None, {"input": str(source), "user_pool_id": POOL,
                                 "report": str(report), "rate": "10000", "quiet": True,
                                 "confirm": False, **settings})
    return Job(config, gateway=fake, stream=io.StringIO())  # type: ignore[arg-type]


def one_line(err: str) -> None:
    assert "Traceback" not in err, err
    assert err.count("\n") == 1 and err.startswith("cognito-batch: error: "), err


# -- 1. the input is sacred ------------------------------------------------------------------


@pytest.mark.parametrize("how", ["same name", "symlink", "hard link"])
def test_a_report_that_is_the_input_is_refused_and_the_input_kept(
    emulator: Any, make_pool: Any, tmp_path: Path, capsys: Any, how: str
) -> None:
    # GIVEN an input, and a report path that is the same file (by name, symlink or hard link)
    pool = make_pool(users=[{"username": f"k{i:05d}"} for i in range(1, 6)])
    source = write_input(tmp_path / "in.csv", 5)
    before = source.read_bytes()
    report = tmp_path / "report.csv"
    if how == "same name":
        report = tmp_path / "." / "in.csv"
    elif how == "symlink":
        report.symlink_to(source)
    else:
        os.link(source, report)
    # WHEN the job runs with it
    code = cli(emulator, pool, source, "--report", str(report))
    # THEN exit 2, one line naming the input, the input untouched, nothing written or sent
    err = capsys.readouterr().err
    assert code == 2
    one_line(err)
    assert "is the input" in err
    assert source.read_bytes() == before
    assert not journal_path(report).exists() and not summary_path(report).exists()
    assert updates_accepted(emulator) == 0


def test_a_job_file_whose_report_is_its_input_is_refused(
    emulator: Any, make_pool: Any, tmp_path: Path, capsys: Any
) -> None:
    # GIVEN a job file with report = input
    pool = make_pool(users=[{"username": "k00001"}])
    source = write_input(tmp_path / "in.csv", 1)
    before = source.read_bytes()
    job = tmp_path / "job.toml"
    job.write_text(f'input = "in.csv"\nreport = "in.csv"\nuser_pool_id = "{pool}"\n'
                   f'endpoint_url = "{emulator.endpoint_url}"\nconfirm = false\n')
    # WHEN it runs, THEN it is refused and the input kept
    assert main(["run", "--job", str(job), "--quiet"]) == 2
    assert "is the input" in capsys.readouterr().err
    assert source.read_bytes() == before


def test_a_journal_or_summary_that_would_be_the_input_is_refused(tmp_path: Path) -> None:
    # GIVEN an input whose name is the journal (or summary) name of the report
    for sidecar in (".journal", ".summary.json"):
        source = write_input(tmp_path / f"r.csv{sidecar}", 3)
        before = source.read_bytes()
        job = fake_job(tmp_path / "r.csv", source, fake_users(3), format="csv")
        # WHEN it runs, THEN it is refused before anything is written
        with pytest.raises(UsageError, match="is the input"):
            job.run()
        assert source.read_bytes() == before
        assert not (tmp_path / "r.csv").exists()


def test_retry_onto_the_report_it_retries_is_refused(tmp_path: Path) -> None:
    # GIVEN a finished run with failed rows
    from batch.commands.retry import retry_config

    source = write_input(tmp_path / "in.csv", 10)
    fake = fake_users(10)
    del fake.users["k00003"]
    report = tmp_path / "out.csv"
    assert fake_job(report, source, fake).run().exit_code == 1
    kept = {p: p.read_bytes() for p in (report, summary_path(report))}
    # WHEN it is retried into the same report, its summary or its journal
    for target in (report, summary_path(report), journal_path(report)):
        # THEN it is refused, and the report and summary are unchanged
        with pytest.raises(UsageError, match="report being retried"):
            retry_config(str(report), None, {"report": str(target), "format": "csv"})
    assert {p: p.read_bytes() for p in kept} == kept


def test_a_dry_run_onto_a_real_runs_report_is_refused(tmp_path: Path) -> None:
    # GIVEN a finished real run
    source = write_input(tmp_path / "in.csv", 5)
    report = tmp_path / "out.csv"
    fake = fake_users(5)
    fake_job(report, source, fake).run()
    kept = {p: p.read_bytes() for p in (report, summary_path(report))}
    # WHEN a dry run is aimed at its report, THEN it is refused and the run's files kept
    with pytest.raises(UsageError, match="real run"):
        fake_job(report, source, fake, dry_run=True).run()
    assert {p: p.read_bytes() for p in kept} == kept


# -- 2. one run per report -------------------------------------------------------------------


def test_a_second_run_on_a_locked_report_is_refused_naming_the_holder(tmp_path: Path) -> None:
    from batch.record.lock import RunLock, lock_path

    # GIVEN a run holding the report's lock
    source = write_input(tmp_path / "in.csv", 3)
    report = tmp_path / "out.csv"
    fake = fake_users(3)
    with RunLock(lock_path(report)):
        # THEN its record is private and names this process
        assert stat.S_IMODE(os.stat(lock_path(report)).st_mode) == 0o600
        # WHEN a second run starts on the same report, THEN it is refused, naming the holder
        with pytest.raises(UsageError) as caught:
            fake_job(report, source, fake).run()
        assert f"pid {os.getpid()} on {socket.gethostname()}" in str(caught.value)
        assert fake.calls == [] and not report.exists()
    # AND once the holder is done, the lock file is gone and the run goes ahead
    assert not lock_path(report).exists()
    assert fake_job(report, source, fake).run().exit_code == 0
    assert not lock_path(report).exists()


def test_overlapping_runs_of_the_same_command_the_second_refused(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN a cron job whose run is still going when the next one starts
    n = 300
    pool, source, report = prepare(emulator, make_pool, tmp_path, n)
    # (7.5 s at 40/s: the second's start-up, even on a loaded machine, falls inside it)
    first = start(source, pool, emulator, report, "--rate", "40")
    assert wait_for(lambda: journal_lines(report) >= 20, first)
    # WHEN the same command starts again
    second = start(source, pool, emulator, report, "--rate", "40")
    _, err = second.communicate(timeout=60)
    # THEN the second exits 2 at once, naming the first, and the first finishes whole
    assert first.poll() is None, "the first run ended before the second started: too fast"
    assert second.returncode == 2, err
    assert f"pid {first.pid}".encode() in err and b"Traceback" not in err
    first.wait(timeout=60)
    assert first.returncode == 0
    assert_applied_once(report, emulator, n)


def test_a_lock_left_by_kill_9_does_not_block_the_resume(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    from batch.record.lock import lock_path

    # GIVEN a run killed with SIGKILL: its lock file stays, naming a dead process
    n = 300
    pool, source, report = prepare(emulator, make_pool, tmp_path, n)
    proc = start(source, pool, emulator, report, "--rate", "200")
    assert wait_for(lambda: journal_lines(report) >= 20, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert json.loads(lock_path(report).read_text())["pid"] == proc.pid
    # WHEN the same command runs again, THEN it resumes and finishes
    again = start(source, pool, emulator, report, "--rate", "1000")
    _, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    rows = list(report_rows(report).values())
    assert sorted(int(r["row"]) for r in rows) == list(range(1, n + 1))
    # (a row the killed run had sent is read first and, holding its values, not written again)
    assert {r["status"] for r in rows} <= {"updated", "unchanged"}
    assert all(r["error_message"] == HELD for r in rows if r["status"] == "unchanged")


# -- 3. the input cannot change under the run ------------------------------------------------


def test_rows_appended_during_the_run_are_never_applied(tmp_path: Path) -> None:
    # GIVEN a run of 2,000 rows, and someone appending rows to its input after 50 calls
    n = 2000
    source = write_input(tmp_path / "in.csv", n)
    fake = fake_users(n + 100)
    report = tmp_path / "out.csv"
    job = fake_job(report, source, fake, workers=4)

    def append(username: str) -> None:
        if len(fake.calls) == 50:
            with open(source, "a", encoding="utf-8") as handle:
                handle.writelines(f"k{i:05d},new,new\n" for i in range(n + 1, n + 101))

    fake.hook = append
    # WHEN it runs
    result = job.run()
    # THEN it stops with exit 2, no appended row is applied, every row is reported once,
    # and those not applied are skipped with the reason
    assert result.exit_code == 2
    called = {user for _, user in fake.calls}
    assert not called & {f"k{i:05d}" for i in range(n + 1, n + 101)}
    rows = report_rows(report)
    assert sorted(rows) == list(range(1, n + 1))
    skipped = [r for r in rows.values() if r["status"] == "skipped"]
    assert len(skipped) > n / 2
    assert all("input changed" in r["error_message"] for r in skipped)
    assert {r["status"] for r in rows.values()} == {"updated", "skipped"}
    # AND the summary does not claim the changed file's old hash
    summary = json.loads(summary_path(report).read_text())
    assert summary["input_sha256"] is None and "input changed" in summary["stopped"]


def test_an_input_rewritten_in_place_mid_run_applies_no_row_from_the_new_content(
    tmp_path: Path,
) -> None:
    # GIVEN a run, and its input rewritten in place after 50 calls: the first row removed,
    # so every later row would shift up by one, with other values
    n = 2000
    source = write_input(tmp_path / "in.csv", n)
    lines = source.read_text().splitlines(keepends=True)
    fake = fake_users(n)
    report = tmp_path / "out.csv"
    job = fake_job(report, source, fake, workers=4)

    def rewrite(username: str) -> None:
        if len(fake.calls) == 50:
            with open(source, "r+", encoding="utf-8") as handle:  # same inode
                handle.writelines([lines[0], *(x.replace(",t", ",X") for x in lines[2:])])
                handle.truncate()

    fake.hook = rewrite
    # WHEN it runs
    result = job.run()
    # THEN exit 2, no user got a value from the new content, every row reported once
    assert result.exit_code == 2
    assert not [u for u, a in fake.users.items() if a.get("custom:tier", "").startswith("X")]
    rows = list(report_rows(report).values())
    assert sorted(int(r["row"]) for r in rows) == list(range(1, n + 1))
    assert {r["status"] for r in rows} == {"updated", "skipped"}


def test_a_same_size_rewrite_that_keeps_the_mtime_is_caught_by_the_hash(tmp_path: Path) -> None:
    # GIVEN a small input rewritten in place at the same size, its mtime put back
    n = 300
    source = write_input(tmp_path / "in.csv", n)
    st = os.stat(source)
    fake = fake_users(n)
    report = tmp_path / "out.csv"
    # One worker, kept: the input is read on the workers' threads, so with one the rewrite and
    # its mtime put back are a single step to the reader. With more, a reader can stat the file
    # between the two and stop the run on the mtime (rightly), never reaching the hash path.
    job = fake_job(report, source, fake, workers=1)

    def rewrite(username: str) -> None:
        if len(fake.calls) == 5:
            source.write_bytes(source.read_bytes().replace(b",t1,", b",z1,"))
            os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))

    fake.hook = rewrite
    # WHEN it runs
    result = job.run()
    # THEN reading ends on the hash check: exit 2, and the summary records no hash
    assert result.exit_code == 2
    assert result.summary["input_sha256"] is None
    assert "SHA-256" in result.summary["stopped"]


def test_an_input_changed_before_the_first_write_stops_with_exit_2(tmp_path: Path) -> None:
    # GIVEN a job whose input changes after it was opened, before the run
    source = write_input(tmp_path / "in.csv", 10)
    fake = fake_users(20)
    job = fake_job(tmp_path / "out.csv", source, fake)
    with open(source, "a", encoding="utf-8") as handle:
        handle.write("k00011,t,d\n")
    # WHEN it runs, THEN it stops before any call (an InputError: one line, exit 2)
    with pytest.raises(InputError, match="changed"):
        job.run()
    assert fake.calls == []


def test_an_input_changed_while_the_operator_confirms_applies_nothing(tmp_path: Path) -> None:
    # GIVEN an interactive run whose input is edited while the plan waits for a "yes"
    n = 50
    source = write_input(tmp_path / "in.csv", n)
    fake = fake_users(n)
    report = tmp_path / "out.csv"
    settings = {"input": str(source), "user_pool_id": POOL, "report": str(report), "quiet": True}
    config = build_config(None, {**settings, "rate": "10000"})

    def confirm(plan: Any) -> bool:
        source.write_text(source.read_text().replace(",t", ",X"))
        return True

    job = Job(config, gateway=fake, confirm=confirm, stream=io.StringIO())  # type: ignore[arg-type]
    # WHEN it goes ahead
    result = job.run()
    # THEN nothing is applied: exit 2, every row reported skipped with the reason
    assert result.exit_code == 2
    assert fake.calls == []
    rows = list(report_rows(report).values())
    assert sorted(int(r["row"]) for r in rows) == list(range(1, n + 1))
    assert {(r["status"], r["error_code"]) for r in rows} == {("skipped", "InputChanged")}


# -- 4. every OS failure is one line, exit 2 -------------------------------------------------


def test_a_report_path_that_is_a_folder_is_one_line_exit_2(
    emulator: Any, make_pool: Any, tmp_path: Path, capsys: Any
) -> None:
    pool = make_pool(users=[{"username": "k00001"}])
    source = write_input(tmp_path / "in.csv", 1)
    (tmp_path / "out.csv").mkdir()
    assert cli(emulator, pool, source, "--report", str(tmp_path / "out.csv")) == 2
    err = capsys.readouterr().err
    one_line(err)
    assert "is a folder" in err


def test_a_read_only_report_folder_is_one_line_exit_2(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN a report folder the job cannot write to (chmod, or for root a read-only mount)
    pool = make_pool(users=[{"username": "k00001"}])
    source = write_input(tmp_path / "in.csv", 1)
    folder = tmp_path / "ro"
    folder.mkdir()
    command = [sys.executable, "-m", "batch", "run", str(source), "--user-pool-id", pool,
               "--endpoint-url", emulator.endpoint_url, "--report", str(folder / "out.csv"),
               "--yes", "--quiet"]
    if os.geteuid() == 0:  # root writes through permission bits: mount a read-only tmpfs
        probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
        if probe.returncode != 0:
            pytest.skip("running as root without unshare: no read-only folder to test with")
        script = f'mount -t tmpfs -o ro tmpfs "{folder}" && exec "$@"'
        command = ["unshare", "-m", "sh", "-c", script, "sh", *command]
    else:
        folder.chmod(0o500)
    # WHEN the job runs
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    folder.chmod(0o700)
    # THEN one line naming the file and the reason, exit 2 (not 1: no row failed)
    assert proc.returncode == 2, proc.stderr
    one_line(proc.stderr)
    assert "Read-only file system" in proc.stderr or "Permission denied" in proc.stderr


def test_a_full_disk_mid_run_is_one_line_exit_2_and_loses_no_row(
    emulator: Any, make_pool: Any, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batch.record import report as report_module
    # GIVEN a disk that fills up after the report's 40th row
    n = 200
    pool, source, report = prepare(emulator, make_pool, tmp_path, n)
    real_write = report_module.CsvReport.write
    written = [0]

    def write(self: Any, result: Any) -> None:
        written[0] += 1
        if written[0] > 40:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(self, result)

    monkeypatch.setattr(report_module.CsvReport, "write", write)
    # WHEN the job runs
    code = cli(emulator, pool, source, "--report", str(report), "--rate", "1000")
    # THEN one line, exit 2
    err = capsys.readouterr().err
    assert code == 2
    one_line(err)
    assert "No space left on device (ENOSPC)" in err
    # WHEN space is freed and the same command runs again
    monkeypatch.setattr(report_module.CsvReport, "write", real_write)
    assert cli(emulator, pool, source, "--report", str(report), "--rate", "1000") == 0
    # THEN the journal resumed: every row once, updated, at most the rows in flight redone
    rows = list(report_rows(report).values())
    assert sorted(int(r["row"]) for r in rows) == list(range(1, n + 1))
    assert {r["status"] for r in rows} == {"updated"}
    assert n <= updates_accepted(emulator) <= n + 8


@pytest.mark.parametrize(
    ("line", "bad"), [(5, '{"row": 3, "status": "bogus"}'), (5, "[1, 2]"), (5, "not json"),
                      (0, "not a header")]
)
def test_a_corrupt_journal_line_in_the_middle_is_a_resume_error(
    tmp_path: Path, line: int, bad: str
) -> None:
    # GIVEN an unfinished run's journal with a damaged line among its results
    n = 40
    source = write_input(tmp_path / "in.csv", n)
    report = tmp_path / "out.csv"
    fake = fake_users(n)
    job = fake_job(report, source, fake)
    fake.hook = lambda user: (
        job.runner.stop("interrupted") if user == "k00020" and job.runner else None
    )
    job.run()
    lines = journal_path(report).read_text().splitlines(keepends=True)
    assert len(lines) > 10
    lines[line] = bad + "\n"
    journal_path(report).write_text("".join(lines))
    # WHEN the run is resumed, THEN it is refused in one line naming the journal
    fake.hook = None
    with pytest.raises(ResumeError, match="journal.*--fresh"):
        fake_job(report, source, fake).run()


def test_a_torn_last_journal_line_still_resumes(tmp_path: Path) -> None:
    # GIVEN an unfinished journal whose last line was cut short by a crash
    n = 40
    source = write_input(tmp_path / "in.csv", n)
    report = tmp_path / "out.csv"
    fake = fake_users(n)
    job = fake_job(report, source, fake)
    fake.hook = lambda user: (
        job.runner.stop("interrupted") if user == "k00020" and job.runner else None
    )
    job.run()
    with open(journal_path(report), "a", encoding="utf-8") as handle:
        handle.write('{"row": 30, "sta')
    # WHEN it resumes, THEN it finishes
    fake.hook = None
    assert fake_job(report, source, fake).run().exit_code == 0


# -- 5. SIGHUP -------------------------------------------------------------------------------


def test_sighup_stops_like_sigterm_and_a_rerun_finishes(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN a run in progress
    n = 400
    pool, source, report = prepare(emulator, make_pool, tmp_path, n)
    proc = start(source, pool, emulator, report, "--rate", "100")
    assert wait_for(lambda: journal_lines(report) >= 50, proc)
    # WHEN its terminal hangs up
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=30)
    # THEN exit 129 after a graceful stop: a message, every row reported, the summary written
    assert proc.returncode == 129, err
    assert b"SIGHUP" in err and b"Traceback" not in err
    rows = list(report_rows(report).values())
    assert sorted(int(r["row"]) for r in rows) == list(range(1, n + 1))
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert skipped and all("SIGHUP" in r["error_message"] for r in skipped)
    assert json.loads(summary_path(report).read_text())["stopped"] == "interrupted by SIGHUP"
    # WHEN the same command runs again, THEN it resumes to a whole report
    again = start(source, pool, emulator, report, "--rate", "1000")
    again.wait(timeout=60)
    assert again.returncode == 0
    assert_applied_once(report, emulator, n)


def test_a_hang_up_of_the_terminal_still_ends_with_report_and_summary(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    import pty

    # GIVEN a run (not quiet) whose stdout and stderr are a terminal
    n = 400
    pool, source, report = prepare(emulator, make_pool, tmp_path, n)
    master, slave = pty.openpty()
    command = [sys.executable, "-m", "batch", "run", str(source), "--user-pool-id", pool,
               "--endpoint-url", emulator.endpoint_url, "--report", str(report), "--yes",
               "--rate", "100"]
    proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=slave)
    os.close(slave)
    try:
        assert wait_for(lambda: journal_lines(report) >= 50, proc)
    finally:
        # WHEN the terminal goes away (its writes now fail with EIO) and SIGHUP arrives
        os.close(master)
    proc.send_signal(signal.SIGHUP)
    proc.wait(timeout=30)
    # THEN the job still stops gracefully: exit 129, every row reported, the summary written
    assert proc.returncode == 129
    assert sorted(report_rows(report)) == list(range(1, n + 1))
    assert json.loads(summary_path(report).read_text())["stopped"] == "interrupted by SIGHUP"


def test_under_nohup_a_hang_up_is_still_ignored(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN a run started with SIGHUP ignored, as nohup starts it
    n = 200
    pool, source, report = prepare(emulator, make_pool, tmp_path, n)
    command = [sys.executable, "-m", "batch", "run", str(source), "--user-pool-id", pool,
               "--endpoint-url", emulator.endpoint_url, "--report", str(report), "--yes",
               "--quiet", "--rate", "100"]
    ignore = lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN)  # noqa: E731
    proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=ignore)
    assert wait_for(lambda: journal_lines(report) >= 20, proc)
    # WHEN the terminal hangs up
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=60)
    # THEN the job runs on to the end
    assert proc.returncode == 0, err
    assert {r["status"] for r in report_rows(report).values()} == {"updated"}


# -- 6. snapshots ----------------------------------------------------------------------------


def test_a_snapshot_is_private_beside_the_report_in_a_private_new_folder(tmp_path: Path) -> None:
    from batch.plan.lookup import PoolSnapshot

    # GIVEN a report folder that does not exist yet
    folder = tmp_path / "reports" / "nightly"
    # WHEN a snapshot is made for a report there
    snapshot = PoolSnapshot(folder, prefix="out.csv.snapshot-")
    # THEN the folders are 0700, the file 0600, named for the report; closing removes it
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(snapshot.path).st_mode) == 0o600
    assert snapshot.path.parent == folder and snapshot.path.name.startswith("out.csv.snapshot-")
    snapshot.close()
    assert not snapshot.path.exists()


def test_skip_unchanged_into_a_new_folder_snapshots_privately_and_cleans_up(
    emulator: Any, make_pool: Any, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batch.plan.lookup import PoolSnapshot

    # GIVEN a --skip-unchanged run whose report folder does not exist yet (main: a traceback)
    pool = make_pool(users=[{"username": f"k{i:05d}"} for i in range(1, 31)])
    source = write_input(tmp_path / "in.csv", 30)
    report = tmp_path / "new" / "out.csv"
    seen: list[tuple[str, int]] = []
    real_fill = PoolSnapshot.fill

    def fill(self: PoolSnapshot, *args: Any, **kwargs: Any) -> None:
        seen.append((self.path.name, stat.S_IMODE(os.stat(self.path).st_mode)))
        real_fill(self, *args, **kwargs)

    monkeypatch.setattr(PoolSnapshot, "fill", fill)
    # WHEN it runs
    code = cli(emulator, pool, source, "--skip-unchanged", "--report", str(report))
    # THEN it succeeds; the snapshot was 0600 beside the report, named for it, and is gone
    assert code == 0, capsys.readouterr().err
    [(name, mode)] = seen
    assert name.startswith("out.csv.snapshot-") and mode == 0o600
    assert stat.S_IMODE(os.stat(report.parent).st_mode) == 0o700
    assert not [p for p in report.parent.iterdir() if p.name.startswith("out.csv.snapshot-")]


def test_a_snapshot_left_by_a_killed_run_is_removed_on_the_next_start(tmp_path: Path) -> None:
    # GIVEN the snapshot a kill -9 left beside the report, and another report's live one
    source = write_input(tmp_path / "in.csv", 3)
    stale = tmp_path / "out.csv.snapshot-k1ll3d_x.sqlite3"
    stale.write_bytes(b"users' current attributes")
    other = tmp_path / "out.csv.snapshot-x.csv.snapshot-l1v3abcd.sqlite3"
    other.write_bytes(b"another run's")
    # WHEN the next run on the report starts
    fake_job(tmp_path / "out.csv", source, fake_users(3)).run()
    # THEN the stale snapshot is gone, another report's (whose name starts the same) kept
    assert not stale.exists()
    assert other.exists()


# -- 7. retry --------------------------------------------------------------------------------


def finished_with_failures(tmp_path: Path) -> Path:
    source = write_input(tmp_path / "in.csv", 10)
    fake = fake_users(10)
    del fake.users["k00003"]
    report = tmp_path / "out.csv"
    assert fake_job(report, source, fake).run().exit_code == 1
    return report


def test_retry_takes_no_connection_setting_from_the_summary(tmp_path: Path, caplog: Any) -> None:
    from batch.commands.retry import retry_config
    from batch.commands.run import needs_confirmation

    # GIVEN a summary someone edited to send the retry elsewhere, without asking
    report = finished_with_failures(tmp_path)
    spath = summary_path(report)
    summary = json.loads(spath.read_text())
    summary["settings"].update(endpoint_url="https://attacker.example", profile="prod-admin",
                               region="eu-west-1", confirm=False)
    spath.write_text(json.dumps(summary))
    # WHEN it is retried with no connection flags
    config = retry_config(str(report), None, {})
    # THEN none of those came from the summary, and the retry asks like run does
    assert (config.endpoint_url, config.profile, config.region) == ("", "", "")
    assert config.confirm and needs_confirmation(config)
    # ... and the operator is told which flags the run had, by name, never the summary's values
    assert "--endpoint-url, --profile, --region" in caplog.text
    assert "attacker" not in caplog.text and "prod-admin" not in caplog.text
    # WHEN flags or a job file give them, THEN those are used
    flagged = retry_config(
        str(report), None, {"endpoint_url": "http://127.0.0.1:9", "confirm": False}
    )
    assert flagged.endpoint_url == "http://127.0.0.1:9" and not flagged.confirm
    job = tmp_path / "job.toml"
    job.write_text('profile = "ops"\nregion = "us-west-2"\ninput = "elsewhere.csv"\n'
                   'columns = { tier = "custom:other" }\n')
    from_job = retry_config(str(report), str(job), {})
    assert (from_job.profile, from_job.region) == ("ops", "us-west-2")
    # ... but what is written still comes from the run (its input and mapping)
    assert from_job.input == summary["input"] and dict(from_job.columns) == {}


def test_retry_of_a_report_whose_run_is_still_going_is_refused(tmp_path: Path) -> None:
    from batch.commands.retry import retry_config
    from batch.record.lock import RunLock, lock_path

    # GIVEN a report whose run (resumed) is still going
    report = finished_with_failures(tmp_path)
    with RunLock(lock_path(report)):
        # WHEN it is retried, THEN it is refused: its rows are not final yet
        with pytest.raises(UsageError, match="another run is using this report"):
            retry_config(str(report), None, {})


def test_retry_dry_run_leaves_the_retry_name_free(tmp_path: Path) -> None:
    from batch.commands.retry import retry_config

    # GIVEN a finished run with failed rows
    report = finished_with_failures(tmp_path)
    # WHEN the retry is dry-run
    dry = retry_config(str(report), None, {"dry_run": True})
    fake = fake_users(10)
    Job(dry, gateway=fake, stream=io.StringIO()).run()  # type: ignore[arg-type]
    # THEN its report says dry run, and the real retry still gets retry1
    assert Path(dry.report).name == "out.retry1.dry-run.csv" and Path(dry.report).is_file()
    assert fake.calls == []
    assert Path(retry_config(str(report), None, {}).report).name == "out.retry1.csv"


# -- 8. folders ------------------------------------------------------------------------------


def test_folders_the_job_creates_are_owner_only(tmp_path: Path) -> None:
    # GIVEN a report two folders deep that do not exist, and a permissive umask
    source = write_input(tmp_path / "in.csv", 3)
    report = tmp_path / "reports" / "nightly" / "out.csv"
    old = os.umask(0o022)
    try:
        # WHEN the job runs
        fake_job(report, source, fake_users(3)).run()
    finally:
        os.umask(old)
    # THEN both folders are 0700
    for folder in (tmp_path / "reports", report.parent):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700


def test_retry_of_a_run_with_client_metadata_needs_the_values_again(tmp_path: Path) -> None:
    from batch.commands.retry import retry_config

    # GIVEN a finished run that passed client metadata (the summary keeps only its keys)
    report = finished_with_failures(tmp_path)
    spath = summary_path(report)
    summary = json.loads(spath.read_text())
    summary["client_metadata_keys"] = ["source", "token"]
    spath.write_text(json.dumps(summary))
    # WHEN it is retried without them THEN it is refused, naming the keys (never values)
    with pytest.raises(UsageError, match="keys: source, token"):
        retry_config(str(report), None, {})
    # WHEN they are given again THEN the retry passes them to the triggers
    config = retry_config(str(report), None, {"client_metadata": {"source": "hr", "token": "t"}})
    assert dict(config.client_metadata) == {"source": "hr", "token": "t"}
