"""Undo: before-images recorded before each write, and ``undo REPORT`` putting them back.

End to end against the emulator over real HTTP (the CLI in-process, a real subprocess for the
crash), plus unit tests of the store and of the restore planning.

1. A run changes some attributes, adds new ones and deletes one on a subset of the users, some
   rows fail; ``undo`` leaves every user's whole attribute map as before the run, touches no
   other user, in both read paths (live and snapshot).
   -> test_undo_restores_every_attribute_map[live|snapshot]
2. A user changed again since the run is ``skipped`` ``Conflict``; ``--force`` restores it.
   -> test_conflict_is_skipped_unless_forced
3. Email restored with its ``email_verified`` flag as it was (true, false, absent), and no
   verification message sent by the undo.
   -> test_verified_flags_restored_without_messages[plain|mark-verified]
4. A crash after the before-image, before or after the write is sent: the resumed run keeps
   the first image, and undo still restores the originals.
   -> test_crash_between_before_image_and_write_still_undoes[before|after]
5. Undo is resumable: an undo stopped by a fatal error finishes when rerun.
   -> test_undo_resumes_after_a_stop
6. ``--no-undo`` records nothing, and undo then says so (exit 2); ``--dry-run`` writes nothing.
   -> test_no_undo_records_nothing, test_undo_dry_run_writes_nothing
7. Units: the store keeps the first image of a row across a resume, fsyncs are shared; the
   planner's rules; the two-call split for a flag that was false.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from helpers import FAST, report_rows, write_csv

from batch.cli import main
from batch.errors import UsageError
from batch.models import RowResult, Status, UserUpdate
from batch.record import before_images
from batch.record.before_images import (
    UndoLog,
    UndoRecord,
    before_image,
    iter_records,
    undo_path,
)
from batch.record.restore import message_split, plan_restore

ROOT = Path(__file__).resolve().parent.parent


def run_args(source: Path, pool: str, emulator: Any, report: Path, *extra: str) -> list[str]:
    # --undo: against the project's emulator before-images are off unless asked for.
    undo_flag = [] if "--no-undo" in extra else ["--undo"]
    return ["run", *undo_flag, str(source), "--user-pool-id", pool,
            "--endpoint-url", emulator.endpoint_url, "--report", str(report),
            "--rate", "500", "--yes", "--quiet", *extra]


def undo(report: Path, emulator: Any, *extra: str) -> int:
    return main(["undo", str(report), "--endpoint-url", emulator.endpoint_url, "--yes",
                 "--quiet", "--rate", "500", *extra])


def maps(emulator: Any, pool: str, names: list[str]) -> dict[str, dict[str, str]]:
    return {n: emulator.get_user_attributes(pool, n) for n in names}


def ops(emulator: Any, operation: str, outcome: str = "accepted") -> int:
    return int(emulator.stats()["operations"].get(operation, {}).get(outcome, 0))


def name(i: int) -> str:
    return f"u{i:03d}"


def users(n: int) -> list[dict[str, str]]:
    return [{"username": name(i), "custom:tier": "silver", "custom:department": f"dept-{i % 5}",
             "custom:level": str(i % 10 + 1), "given_name": f"Given{i}"}
            for i in range(1, n + 1)]


@pytest.fixture
def fast(emulator: Any) -> Any:
    emulator.configure(quotas=FAST)
    return emulator


# -- 1. the whole attribute map comes back ---------------------------------------------------


@pytest.mark.parametrize("path", ["live", "snapshot"])
def test_undo_restores_every_attribute_map(
    fast: Any, make_pool: Any, tmp_path: Path, path: str
) -> None:
    # GIVEN 40 users, and an input for 24 of them plus 4 who do not exist: tier changed on the
    # even ones, a start_date added (absent before) on every third, one department deleted
    pool = make_pool(users=users(40))
    names = [name(i) for i in range(1, 41)]
    before = maps(fast, pool, names)
    rows = []
    for i in range(1, 25):
        tier = "gold" if i % 2 == 0 else "silver"
        start = "2026-01-01" if i % 3 == 0 else ""
        department = "" if i == 7 else f"dept-{i % 5}"
        rows.append([name(i), tier, department, start])
    rows[10:10] = [[f"ghost{i}", "gold", "x", ""] for i in range(4)]  # fail: no such user
    source = write_csv(tmp_path / "in.csv", ["username", "tier", "department", "start_date"],
                       rows)
    report = tmp_path / "out.csv"
    # Live: reads keep ahead of writes (rate <= get_rate); snapshot: --skip-unchanged, by cost.
    extra = ["--empty", "delete"] + (["--skip-unchanged"] if path == "snapshot" else
                                     ["--rate", "100"])

    # WHEN it runs (some rows fail), THEN the pool changed as asked
    assert main(run_args(source, pool, fast, report, *extra)) == 1
    summary = json.loads(Path(f"{report}.summary.json").read_text())
    assert summary["lookup"] == path
    assert summary["counts"]["failed"] == 4
    assert fast.get_user_attributes(pool, name(2))["custom:tier"] == "gold"
    assert fast.get_user_attributes(pool, name(3))["custom:start_date"] == "2026-01-01"
    assert "custom:department" not in fast.get_user_attributes(pool, name(7))
    assert os.stat(undo_path(report)).st_mode & 0o777 == 0o600

    # WHEN it is undone
    fast.reset()
    code = undo(report, fast)

    # THEN every user's whole attribute map is as it was, and only changed users cost a call
    assert code == 0
    assert maps(fast, pool, names) == before
    restored = report_rows(tmp_path / "out.undo.csv")
    changed = {name(i) for i in range(1, 25) if i % 2 == 0 or i % 3 == 0 or i == 7}
    assert {r["username"] for r in restored.values() if r["status"] == "updated"} == changed
    assert all(r["status"] in ("updated", "unchanged") for r in restored.values())
    writes = ops(fast, "AdminUpdateUserAttributes") + ops(fast, "AdminDeleteUserAttributes")
    assert 0 < writes <= 2 * len(changed)
    assert ops(fast, "AdminUpdateUserAttributes") <= len(changed)


# -- 2. conflicts ----------------------------------------------------------------------------


def test_conflict_is_skipped_unless_forced(
    fast: Any, make_pool: Any, tmp_path: Path, cognito_client: Any
) -> None:
    # GIVEN a run that moved five users to gold, and one of them moved on to platinum since
    pool = make_pool(users=users(5))
    source = write_csv(tmp_path / "in.csv", ["username", "tier"],
                       [[name(i), "gold"] for i in range(1, 6)])
    report = tmp_path / "out.csv"
    assert main(run_args(source, pool, fast, report)) == 0
    cognito_client.admin_update_user_attributes(
        UserPoolId=pool, Username=name(2),
        UserAttributes=[{"Name": "custom:tier", "Value": "platinum"}])

    # WHEN it is undone
    code = undo(report, fast)

    # THEN the four are back to silver, the one changed since is skipped as a Conflict
    rows = report_rows(tmp_path / "out.undo.csv")
    assert code == 1
    assert rows[2]["status"] == "skipped" and rows[2]["error_code"] == "Conflict"
    assert "custom:tier" in rows[2]["error_message"] and "platinum" not in rows[2]["error_message"]
    assert fast.get_user_attributes(pool, name(2))["custom:tier"] == "platinum"
    assert {fast.get_user_attributes(pool, name(i))["custom:tier"] for i in (1, 3, 4, 5)} == {
        "silver"
    }

    # WHEN it is undone again with --force, THEN that one is restored too
    assert undo(report, fast, "--force") == 0
    assert fast.get_user_attributes(pool, name(2))["custom:tier"] == "silver"
    rows = report_rows(tmp_path / "out.undo.csv")
    assert rows[2]["status"] == "updated"
    assert {rows[i]["status"] for i in (1, 3, 4, 5)} == {"unchanged"}


# -- 3. verified flags, no messages ----------------------------------------------------------


@pytest.mark.parametrize("mark", ["plain", "mark-verified"])
def test_verified_flags_restored_without_messages(
    fast: Any, make_pool: Any, tmp_path: Path, mark: str
) -> None:
    # GIVEN a pool that verifies email, users whose flag is true, false and absent
    people = [
        {"username": "t", "email": "t@example.com", "email_verified": "true"},
        {"username": "f", "email": "f@example.com", "email_verified": "false"},
        {"username": "a", "email": "a@example.com"},
        {"username": "n"},  # no email at all: the run adds one
    ]
    pool = make_pool(users=people, auto_verified=["email"])
    before = maps(fast, pool, ["t", "f", "a", "n"])
    source = write_csv(tmp_path / "in.csv", ["username", "email"],
                       [[p["username"], f"new-{p['username']}@example.com"] for p in people])
    report = tmp_path / "out.csv"
    extra = ["--mark-verified"] if mark == "mark-verified" else []
    assert main(run_args(source, pool, fast, report, *extra)) == 0
    assert fast.get_user_attributes(pool, "t")["email"] == "new-t@example.com"
    assert fast.stats()["messages"]["email"] == (4 if mark == "plain" else 0)
    assert {before[n].get("email_verified") for n in before} == {"true", "false", None}

    # WHEN it is undone
    fast.reset()
    code = undo(report, fast)

    # THEN every map is as before (flags included) and the undo sent no verification message
    assert code == 0
    assert maps(fast, pool, ["t", "f", "a", "n"]) == before
    stats = fast.stats()
    assert stats["messages"] == {"email": 0, "sms": 0}
    assert stats["pending_verification"] == 0


# -- 4. a crash between the before-image and the write ---------------------------------------

CRASHING = """
import os, sys
from batch import cognito
real = cognito.CognitoGateway.update_user_attributes
def crashing(self, pool, username, attributes, **kwargs):
    if username == os.environ["CRASH_USER"]:
        if os.environ["CRASH_WHEN"] == "after":
            real(self, pool, username, attributes, **kwargs)
        os._exit(137)  # like kill -9: no flush, no journal line for this row
    return real(self, pool, username, attributes, **kwargs)
cognito.CognitoGateway.update_user_attributes = crashing
from batch.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("when", ["before", "after"])
def test_crash_between_before_image_and_write_still_undoes(
    fast: Any, make_pool: Any, tmp_path: Path, when: str
) -> None:
    # GIVEN 12 users and a run that dies at the 6th user's write, before or after sending it
    pool = make_pool(users=users(12))
    names = [name(i) for i in range(1, 13)]
    before = maps(fast, pool, names)
    source = write_csv(tmp_path / "in.csv", ["username", "tier", "start_date"],
                       [[n, "gold", "2026-02-02"] for n in names])
    report = tmp_path / "out.csv"
    script = tmp_path / "crash.py"
    script.write_text(CRASHING)
    env = {**os.environ, "CRASH_USER": name(6), "CRASH_WHEN": when}
    args = run_args(source, pool, fast, report)
    crashed = subprocess.run([sys.executable, str(script), *args], cwd=ROOT, env=env,
                             capture_output=True, timeout=120)
    assert crashed.returncode == 137
    assert any(r.username == name(6) for r in iter_records(undo_path(report)))
    assert (fast.get_user_attributes(pool, name(6)).get("custom:tier") == "gold") == (
        when == "after"
    )

    # WHEN the same command is run again (it resumes), THEN every user is written
    assert main(args) == 0
    images = [r for r in iter_records(undo_path(report)) if r.username == name(6)]
    assert len(images) == 1 and images[0].before["custom:tier"] == "silver"

    # WHEN it is undone, THEN the pool is as it was before the first attempt
    assert undo(report, fast) == 0
    assert maps(fast, pool, names) == before


# -- 5. undo resumes -------------------------------------------------------------------------


def test_undo_resumes_after_a_stop(fast: Any, make_pool: Any, tmp_path: Path) -> None:
    # GIVEN a run over 30 users, and an undo that a fatal error stops after 10 writes
    pool = make_pool(users=users(30))
    names = [name(i) for i in range(1, 31)]
    before = maps(fast, pool, names)
    source = write_csv(tmp_path / "in.csv", ["username", "tier"], [[n, "gold"] for n in names])
    report = tmp_path / "out.csv"
    assert main(run_args(source, pool, fast, report)) == 0
    fast.inject("AdminUpdateUserAttributes", after=10, code="AccessDeniedException")
    assert undo(report, fast) == 2
    stopped = report_rows(tmp_path / "out.undo.csv")
    assert len(stopped) == 30
    assert sum(r["status"] == "updated" for r in stopped.values()) == 10

    # WHEN the undo is run again
    fast.reset()
    code = undo(report, fast)

    # THEN it finishes the other 20 (the 10 done are carried over, not redone)
    assert code == 0
    assert maps(fast, pool, names) == before
    assert ops(fast, "AdminUpdateUserAttributes") == 20
    assert len(report_rows(tmp_path / "out.undo.csv")) == 30


# -- 6. --no-undo, --dry-run -----------------------------------------------------------------


def test_no_undo_records_nothing(
    fast: Any, make_pool: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a run with --no-undo
    pool = make_pool(users=users(3))
    source = write_csv(tmp_path / "in.csv", ["username", "tier"], [[name(1), "gold"]])
    report = tmp_path / "out.csv"
    assert main(run_args(source, pool, fast, report, "--no-undo")) == 0
    fast.reset()

    # WHEN it is undone, THEN no file was recorded and undo stops with exit 2, no read made
    assert not undo_path(report).exists()
    assert undo(report, fast) == 2
    assert "no before-images" in capsys.readouterr().err
    assert ops(fast, "AdminGetUser") == 0


def test_undo_dry_run_writes_nothing(fast: Any, make_pool: Any, tmp_path: Path) -> None:
    # GIVEN a run that changed 4 users
    pool = make_pool(users=users(4))
    source = write_csv(tmp_path / "in.csv", ["username", "tier"],
                       [[name(i), "gold"] for i in range(1, 5)])
    report = tmp_path / "out.csv"
    assert main(run_args(source, pool, fast, report)) == 0
    fast.reset()

    # WHEN undo runs with --dry-run, THEN it plans 4 restores and writes nothing
    assert undo(report, fast, "--dry-run") == 0
    assert ops(fast, "AdminUpdateUserAttributes", "calls") == 0
    rows = report_rows(tmp_path / "out.undo.csv")
    assert [r["status"] for r in rows.values()] == ["updated"] * 4
    assert fast.get_user_attributes(pool, name(1))["custom:tier"] == "gold"


# -- 7. units --------------------------------------------------------------------------------


def test_store_keeps_the_first_image_across_a_resume(tmp_path: Path) -> None:
    # GIVEN an unfinished run's store holding row 1
    path = tmp_path / "r.csv.undo.jsonl"
    header = {"pool": "p", "input_sha256": "x", "settings": "s"}
    log = UndoLog(path, header)
    log.record(UndoRecord(1, "a", {"t": "old"}, {"t": "new"}))
    log.close()

    # WHEN the same run resumes, THEN it knows row 1, and a new store for other settings does not
    resumed = UndoLog(path, header)
    assert resumed.resumed and resumed.has(1) and not resumed.has(2)
    resumed.record(UndoRecord(2, "b", {"t": None}, {"t": "new"}))
    resumed.complete()
    resumed.close()
    assert [(r.row, r.before["t"]) for r in iter_records(path)] == [(1, "old"), (2, None)]
    # ... a finished run's file is started afresh by the next run
    fresh = UndoLog(path, header)
    assert not fresh.resumed and not fresh.has(1)
    fresh.close()
    assert list(iter_records(path)) == []


class _Counted:
    """The store's file, counting the lines written to it and saying when ``expected`` are."""

    def __init__(self, handle: Any, expected: int) -> None:
        self._handle, self._expected, self.lines = handle, expected, 0
        self.all_written = threading.Event()

    def write(self, text: str) -> int:
        written = int(self._handle.write(text))
        self.lines += 1
        if self.lines == self._expected:
            self.all_written.set()
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def test_store_shares_fsyncs_between_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a store whose first fsync does not finish until 8 workers have each written an
    # image (so all 8 are in flight at once, whatever the scheduling)
    log = UndoLog(tmp_path / "u.jsonl", {"pool": "p"})
    counted = _Counted(log._handle, 8)  # noqa: SLF001 - the store's file, to see it fill
    log._handle = counted  # noqa: SLF001
    real = before_images._datasync  # noqa: SLF001

    def held_datasync(fd: int) -> None:
        # a store that fsyncs under its lock never lets the others write: fail, do not hang
        counted.all_written.wait(timeout=5)
        real(fd)

    monkeypatch.setattr(before_images, "_datasync", held_datasync)

    # WHEN the 8 workers each record one image
    threads = [
        threading.Thread(target=log.record, args=(UndoRecord(t, "u", {"a": "1"}, {"a": "2"}),))
        for t in range(1, 9)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()

    # THEN every image is in the file, and the 8 shared their fsyncs: the first one ran for
    # the image(s) written when it began, one more covered all those that came while it ran
    assert counted.all_written.is_set()
    assert sorted(r.row for r in iter_records(tmp_path / "u.jsonl")) == list(range(1, 9))
    assert 1 <= log.fsyncs <= 2, f"{log.fsyncs} fsyncs for 8 images in flight together"


def test_before_image_records_previous_values_and_flags() -> None:
    # GIVEN a user and the final update for its row
    current = {"username": "a", "custom:tier": "silver", "email_verified": "true"}
    update = UserUpdate(3, "a", (("custom:tier", "gold"), ("custom:new", "x")), ("given_name",))

    # WHEN its image is taken, THEN previous values, absences and both flags are in it
    image = before_image(update, current)
    assert image.wrote == {"custom:tier": "gold", "custom:new": "x", "given_name": None}
    assert image.before == {"custom:tier": "silver", "custom:new": None, "given_name": None,
                            "email_verified": "true", "phone_number_verified": None}


RECORD = UndoRecord(5, "a", {"custom:tier": "silver", "custom:new": None, "custom:gone": "x",
                             "email_verified": None, "phone_number_verified": None},
                    {"custom:tier": "gold", "custom:new": "n", "custom:gone": None})


@pytest.mark.parametrize(
    ("current", "force", "expected"),
    [
        # applied as written: everything goes back
        ({"custom:tier": "gold", "custom:new": "n"}, False,
         ((("custom:tier", "silver"), ("custom:gone", "x")), ("custom:new",))),
        # never applied (the row failed): nothing to do
        ({"custom:tier": "silver", "custom:gone": "x"}, False, Status.UNCHANGED),
        # changed again since the run: a conflict, unless forced
        ({"custom:tier": "platinum", "custom:new": "n"}, False, Status.SKIPPED),
        ({"custom:tier": "platinum", "custom:new": "n"}, True,
         ((("custom:tier", "silver"), ("custom:gone", "x")), ("custom:new",))),
    ],
)
def test_plan_restore(current: dict[str, str], force: bool, expected: Any) -> None:
    # WHEN the restore of RECORD is planned against the user's attributes now
    plan = plan_restore(RECORD, current, force=force)

    # THEN it is the expected write or result
    if isinstance(expected, Status):
        assert isinstance(plan, RowResult) and plan.status == expected
    else:
        assert isinstance(plan, UserUpdate)
        assert (plan.attributes, plan.deletes) == expected


def test_plan_restore_email_sets_flag_true_then_puts_it_back() -> None:
    # GIVEN a run that changed an email whose flag was false, in a pool that verifies email
    record = UndoRecord(1, "a", {"email": "old@x.io", "email_verified": "false",
                                 "phone_number_verified": None},
                        {"email": "new@x.io"})
    current = {"email": "new@x.io", "email_verified": "false"}

    # WHEN planned, THEN the email goes back with its flag, and the flag false in a second call
    plan = plan_restore(record, current, verified_by_message=frozenset({"email"}))
    assert isinstance(plan, UserUpdate)
    first, late = message_split(plan.attributes, frozenset({"email"}))
    assert first == [("email", "old@x.io"), ("email_verified", "true")]
    assert late == [("email_verified", "false")]
    # ... and in a pool that sends no message, one call with the flag as it was
    plain = plan_restore(record, current)
    assert isinstance(plain, UserUpdate)
    assert message_split(plain.attributes, frozenset()) == ([("email", "old@x.io")], [])


def test_time_in_resolve_counts_in_the_window() -> None:
    # GIVEN a runner whose resolve step (a read, a before-image's fsync) takes 0.2 s a row on
    # a manual clock, and calls that take none
    from fakes import FakeCognito, ManualClock

    from batch.engine.runner import Runner, RunnerSettings
    from batch.pace.controllers import FixedRate

    clock = ManualClock()
    fake = FakeCognito({f"u{i}": {} for i in range(30)})

    def slow(update: UserUpdate) -> UserUpdate:
        clock.sleep(0.2)
        return update

    # one worker: each row's 0.2 s on the shared manual clock is then that row's alone
    runner = Runner(fake, RunnerSettings(user_pool_id="p", workers=1),  # type: ignore[arg-type]
                    controller=FixedRate(50), on_result=lambda r: None, resolve=slow,
                    clock=clock)

    # WHEN 30 rows are applied
    runner.run(UserUpdate(i + 1, f"u{i}", (("given_name", "x"),)) for i in range(30))

    # THEN Little's law counts the 0.2 s a row holds its slot: ceil(50/s x 0.2 s x 1.5) + 1 + 1
    assert runner.stats.resolve == pytest.approx(0.2, rel=0.01)
    assert runner.wanted() == 17


def test_undo_of_a_real_pool_asks_first(tmp_path: Path) -> None:
    # GIVEN the before-images of a run on a real pool (no endpoint) and on the emulator, whose
    # journal records the pool the run wrote to, and whose undo file names another
    from batch.commands.run import needs_confirmation
    from batch.commands.undo import undo_config
    from batch.record.journal import Journal, JournalHeader, journal_path

    def is_emulator(url: str) -> bool:
        return url == "http://127.0.0.1:4566"  # what answers /_emulator/identity here

    for endpoint, asks in (("", True), ("http://127.0.0.1:4566", False)):
        report = tmp_path / f"r{int(asks)}.csv"
        Journal(journal_path(report),
                JournalHeader("x", "s", "us-east-1_AbC123", "eu-west-1")).close()
        log = UndoLog(undo_path(report), {"pool": "us-east-1_Other", "region": "us-west-2",
                                          "endpoint_url": endpoint})
        log.close()

        # WHEN its undo is configured (the endpoint given again: never taken from the file),
        # THEN the pool is the journal's, never the undo file's, and a real pool asks unless
        # --yes, the emulator never
        config, header = undo_config(str(report), {"endpoint_url": endpoint or None})
        assert (config.user_pool_id, config.region) == ("us-east-1_AbC123", "eu-west-1")
        assert needs_confirmation(config, is_emulator=is_emulator) is asks
        unasked = undo_config(str(report), {"confirm": False, "endpoint_url": endpoint or None})
        assert needs_confirmation(unasked[0], is_emulator=is_emulator) is False
        # ... and --user-pool-id naming another pool than the run's is refused
        with pytest.raises(UsageError, match="wrote to us-east-1_AbC123"):
            undo_config(str(report), {"user_pool_id": "us-east-1_Other",
                                      "endpoint_url": endpoint or None})
        if endpoint:  # THEN without it again, the undo refuses rather than guess
            with pytest.raises(UsageError, match="endpoint-url"):
                undo_config(str(report), {})
        assert config.report_path() == tmp_path / f"r{int(asks)}.undo.csv"


def test_before_images_default_on_for_a_real_pool_off_for_the_emulator(
    emulator: Any, tmp_path: Path
) -> None:
    # GIVEN the same settings, once aimed at an endpoint identifying as the emulator and once
    # at one that does not (a real pool, or a tunnel to one)
    from batch.commands.run import Job
    from batch.config import build_config

    source = tmp_path / "in.csv"
    source.write_text("username,tier\nann,gold\n")

    def records(endpoint: str, **extra: Any) -> bool:
        config = build_config(None, {"input": str(source), "user_pool_id": "us-east-1_X",
                                     "endpoint_url": endpoint, **extra})
        job = Job.__new__(Job)  # only the decision is wanted: no pool is read
        job.config = config
        return bool(job.records_undo)

    # WHEN / THEN the default follows the endpoint, and an explicit setting wins
    assert records(emulator.endpoint_url) is False
    assert records("http://127.0.0.1:9") is True  # nothing answers there: not our emulator
    assert records(emulator.endpoint_url, undo=True) is True
    assert records("http://127.0.0.1:9", undo=False) is False


def test_fresh_never_discards_an_unfinished_runs_before_images(
    fast: Any, make_pool: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a run with before-images stopped by a fatal error after 4 writes
    pool = make_pool(users=users(10))
    names = [name(i) for i in range(1, 11)]
    before = maps(fast, pool, names)
    source = write_csv(tmp_path / "in.csv", ["username", "tier"], [[n, "gold"] for n in names])
    report = tmp_path / "out.csv"
    fast.inject("AdminUpdateUserAttributes", after=4, code="AccessDeniedException")
    assert main(run_args(source, pool, fast, report, "--workers", "2")) == 2
    kept = {p: p.read_bytes() for p in (undo_path(report), Path(f"{report}.journal"))}
    fast.reset()
    capsys.readouterr()

    # WHEN it is run again with --fresh
    code = main(run_args(source, pool, fast, report, "--fresh"))

    # THEN refused (exit 2) naming the before-images and the ways out; nothing written, the
    # images and the journal that vouches for them as they were
    assert code == 2
    err = capsys.readouterr().err
    assert "before-images" in err and "cognito-batch undo" in err
    assert ops(fast, "AdminUpdateUserAttributes", "calls") == 0
    assert {p: p.read_bytes() for p in kept} == kept
    # ... and the stopped run can still be undone
    assert undo(report, fast) == 0
    assert maps(fast, pool, names) == before


def test_undo_names_every_updated_row_it_has_no_image_for(
    fast: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN a run whose first attempt recorded no before-images (stopped after 4 writes) and
    # whose resume did: 4 users updated with no image
    pool = make_pool(users=users(10))
    names = [name(i) for i in range(1, 11)]
    source = write_csv(tmp_path / "in.csv", ["username", "tier"], [[n, "gold"] for n in names])
    report = tmp_path / "out.csv"
    fast.inject("AdminUpdateUserAttributes", after=4, code="AccessDeniedException")
    assert main(run_args(source, pool, fast, report, "--no-undo")) == 2
    unimaged = {r["username"] for r in report_rows(report).values() if r["status"] == "updated"}
    assert len(unimaged) == 4  # which 4 is the workers' order
    fast.reset()
    assert main(run_args(source, pool, fast, report)) == 0

    # WHEN it is undone
    code = undo(report, fast)

    # THEN the 6 with an image are restored, and each of the 4 without is named in the undo's
    # report (skipped, NoBeforeImage), so the exit code says not everything came back
    assert code == 1
    rows = report_rows(tmp_path / "out.undo.csv")
    missing = {r["username"] for r in rows.values() if r["error_code"] == "NoBeforeImage"}
    assert missing == unimaged
    assert {r["status"] for r in rows.values() if r["username"] not in missing} == {"updated"}
    assert {fast.get_user_attributes(pool, n)["custom:tier"] for n in set(names) - unimaged} == {
        "silver"}


def test_undo_onto_another_runs_report_is_refused(
    fast: Any, make_pool: Any, tmp_path: Path, capsys: Any
) -> None:
    # GIVEN two finished runs (review item 4): out.csv and other.csv, each with its journal
    pool = make_pool(users=users(6))
    first = write_csv(tmp_path / "in.csv", ["username", "tier"], [[name(1), "gold"]])
    second = write_csv(tmp_path / "in2.csv", ["username", "tier"], [[name(2), "gold"]])
    report, other = tmp_path / "out.csv", tmp_path / "other.csv"
    assert main(run_args(first, pool, fast, report)) == 0
    assert main(run_args(second, pool, fast, other)) == 0
    kept = {p: p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("other.csv")}
    capsys.readouterr()
    # WHEN the first is undone with the other's report as its --report
    code = undo(report, fast, "--report", str(other))
    # THEN it is refused in one line, the other run's records intact
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "another run's record" in err[0], err
    assert {p: p.read_bytes() for p in kept} == kept
    # ... while an undo resuming its own report is not refused
    assert undo(report, fast, "--report", str(tmp_path / "u.csv")) == 0
    assert undo(report, fast, "--report", str(tmp_path / "u.csv")) == 0
