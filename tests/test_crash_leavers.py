"""A ``--disable-missing --undo`` sync killed (SIGKILL) while leavers are in flight, resumed,
then undone: every leaver enabled again, every attribute put back (docs/sync.md).

A leaver whose before-image was recorded and whose AdminDisableUser was sent, but whose
journal line was never written, is a leaver in doubt: the resume must report it under its own
row, so the finished journal vouches for its image and the undo restores it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers import report_rows, wait_for

from batch.record.before_images import WRITTEN_BEFORE, iter_records, undo_path
from batch.record.journal import journal_path, read_journal

ROOT = Path(__file__).resolve().parent.parent


def _start(source: Path, pool: str, emulator: Any, report: Path,
           *extra: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "batch", "run", str(source), "--user-pool-id", pool,
               "--endpoint-url", emulator.endpoint_url, "--report", str(report), "--yes",
               "--quiet", *extra]
    return subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _leaver_rows(report: Path, after: int) -> set[int]:
    """The journaled rows above ``after`` (a --disable-missing run's leavers)."""
    state = read_journal(journal_path(report))
    if state is None:
        return set()
    return {r.row for r in state.records() if r.row > after}


def _pool(make_pool: Any, emulator: Any, names: list[str]) -> str:
    """A pool of ``names``, answers in 50 ms, the sync's categories at 2,000/s."""
    pool: str = make_pool(users=[{"username": u} for u in names])
    emulator.configure(quotas={c: 2000 for c in ("UserUpdate", "UserList", "UserRead",
                                                 "UserPoolRead")}, latency_ms=50)
    return pool


def _killed(source: Path, pool: str, emulator: Any, report: Path, lines: int,
            *flags: str) -> None:
    """Start the sync; SIGKILL it once ``lines`` leaver rows are journaled."""
    proc = _start(source, pool, emulator, report, *flags)
    assert wait_for(lambda: len(_leaver_rows(report, 20)) >= lines, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def _disabled(client: Any, pool: str) -> set[str]:
    pages = client.get_paginator("list_users").paginate(UserPoolId=pool)
    return {u["Username"] for page in pages for u in page["Users"] if not u["Enabled"]}


def test_a_killed_disable_missing_sync_with_undo_resumes_its_leavers_in_doubt_and_undoes_all(
    emulator: Any, make_pool: Any, tmp_path: Path, cognito_client: Any
) -> None:
    # GIVEN 120 users; an input of 20 of them (rows 1..20) setting a tier: 100 leavers,
    # disabled 8 at a time with 50 ms answers, before-images on
    names = [f"u{n:03d}" for n in range(120)]
    kept, leavers = names[:20], set(names[20:])
    pool = _pool(make_pool, emulator, names)
    source = tmp_path / "all.csv"
    source.write_text("username,tier,enabled\n" + "".join(f"{u},t1,true\n" for u in kept))
    report = tmp_path / "out.csv"
    flags = ("--disable-missing", "--max-disable", "90%", "--undo", "--workers", "8",
             "--rate", "500")
    # WHEN it is killed once some leavers are journaled, so others are in flight
    _killed(source, pool, emulator, report, 10, *flags)
    lined = _leaver_rows(report, 20)
    in_doubt = sorted((r.row, r.username) for r in iter_records(undo_path(report))
                      if r.row > 20 and r.row not in lined)
    assert len(lined) < len(leavers), "the run ended before the kill"
    assert in_doubt, "no leaver was in flight at the kill"
    # ... every other one of the leavers in flight had its disable land (the answer lost
    # with the process), and the run is resumed to its end
    landed = {name for _, name in in_doubt[::2]}
    for name in landed:
        cognito_client.admin_disable_user(UserPoolId=pool, Username=name)
    emulator.configure(latency_ms=0)
    again = _start(source, pool, emulator, report, *flags)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err.decode()
    # THEN every leaver is disabled and reported once, under the row its image names
    assert _disabled(cognito_client, pool) == leavers
    rows = report_rows(report)
    reported = {v["username"]: (r, v) for r, v in rows.items() if r > 20}
    assert set(reported) == leavers
    assert {v["status"] for _, v in reported.values()} == {"updated"}
    by_image = {r.username: r.row for r in iter_records(undo_path(report)) if r.row > 20}
    assert by_image == {name: row for name, (row, _) in reported.items()}
    # ... one whose disable landed is ``updated`` by the earlier attempt, with no call now
    earlier = {n for n, (_, v) in reported.items() if v["error_message"] == WRITTEN_BEFORE}
    assert landed <= earlier
    assert all(reported[n][1]["attempts"] == "0" for n in earlier)
    assert {r for r, _ in in_doubt} <= {row for row, _ in reported.values()}
    # WHEN the run is undone
    undo = subprocess.run(
        [sys.executable, "-m", "batch", "undo", str(report), "--endpoint-url",
         emulator.endpoint_url, "--yes", "--quiet"], cwd=ROOT, capture_output=True, timeout=120)
    # THEN every user is back as it was: enabled, with no tier
    assert undo.returncode == 0, undo.stderr.decode()
    assert _disabled(cognito_client, pool) == set()
    for name in kept:
        assert "custom:tier" not in emulator.get_user_attributes(pool, name), name


def test_a_leaver_that_failed_after_its_disable_landed_is_undone_after_the_resume(
    emulator: Any, make_pool: Any, tmp_path: Path, cognito_client: Any
) -> None:
    # GIVEN 60 users, an input of 20: 40 leavers, whose AdminDisableUser calls are refused
    names = [f"u{n:03d}" for n in range(60)]
    leavers = set(names[20:])
    pool = _pool(make_pool, emulator, names)
    emulator.inject("AdminDisableUser", after=0, code="InvalidParameterException")
    source = tmp_path / "all.csv"
    source.write_text("username,enabled\n" + "".join(f"{u},true\n" for u in names[:20]))
    report = tmp_path / "out.csv"
    flags = ("--disable-missing", "--max-disable", "90%", "--undo", "--workers", "2",
             "--rate", "500")
    # WHEN it is killed once a few leavers are journaled failed
    _killed(source, pool, emulator, report, 5, *flags)
    state = read_journal(journal_path(report))
    assert state is not None
    failed = {r.username for r in state.records() if r.row > 20 and r.status.value == "failed"}
    assert failed and len(failed) < len(leavers), "the run ended before the kill"
    # ... their disables had landed after all (an answer lost), and the run is resumed
    emulator.reset()
    emulator.configure(latency_ms=0)
    for name in failed:
        cognito_client.admin_disable_user(UserPoolId=pool, Username=name)
    again = _start(source, pool, emulator, report, *flags)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err.decode()
    # THEN each is ``updated`` by the earlier attempt (before: ``unchanged``, so never undone)
    rows = {v["username"]: v for r, v in report_rows(report).items() if r > 20}
    assert set(rows) == leavers
    assert {n for n, v in rows.items() if v["error_message"] == WRITTEN_BEFORE} >= failed
    assert {v["status"] for v in rows.values()} == {"updated"}
    # WHEN the run is undone THEN every leaver is enabled again
    undo = subprocess.run(
        [sys.executable, "-m", "batch", "undo", str(report), "--endpoint-url",
         emulator.endpoint_url, "--yes", "--quiet"], cwd=ROOT, capture_output=True, timeout=120)
    assert undo.returncode == 0, undo.stderr.decode()
    assert _disabled(cognito_client, pool) == set()
