"""The whole nightly sync end to end (issue 21), over real HTTP against the emulator: joiners,
movers, leavers, group changes and an alias conflict in one file; its dry run; its undo; an
unknown group and a truncated input stopping the job before any write."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from helpers import report_rows, write_csv

from batch.cli import main
from batch.emulator import DEFAULT_CUSTOM_SCHEMA
from batch.models import RowResult, Status
from batch.record.journal import encode, journal_path, read_journal
from batch.record.layout import undo_report_path

#: Every category a sync calls, high enough that a test's calls never wait.
QUOTAS = {"UserUpdate": 1000, "UserList": 1000, "UserRead": 1000, "UserPoolRead": 1000,
          "UserCreation": 1000, "UserResourceRead": 1000, "UserPoolResourceRead": 1000}
WRITES = ("AdminUpdateUserAttributes", "AdminDeleteUserAttributes", "AdminCreateUser",
          "AdminDisableUser", "AdminEnableUser", "AdminAddUserToGroup",
          "AdminRemoveUserFromGroup", "AdminDeleteUser")
HEADER = ["username", "email", "department", "enabled", "groups"]
FILE = [
    ["alice", "alice@x.io", "eng", "true", "staff"],  # as the pool has it (admins unmanaged)
    ["bob", "bob@x.io", "eng", "true", "staff"],  # mover: sales -> eng, sales -> staff
    ["carol", "carol@x.io", "eng", "false", ""],  # leaver: disabled, out of staff
    ["dave", "dave@x.io", "ops", "true", "staff"],  # returning: enabled, ops, into staff
    ["frank", "frank@x.io", "eng", "true", "staff;sales"],  # joiner
    ["gina", "ALICE@x.io", "eng", "true", "staff"],  # joiner asking for alice's email
    ["erin", "erin@x.io", "hr", "", ""],  # unchanged, in no managed group
]


def pool_state(client: Any, pool: str) -> dict[str, tuple[dict[str, str], bool, list[str]]]:
    """Every user: (email and department, enabled, every group), from the emulator."""
    out = {}
    for user in client.list_users(UserPoolId=pool)["Users"]:
        name = user["Username"]
        attrs = {a["Name"]: a["Value"] for a in user["Attributes"]
                 if a["Name"] in ("email", "custom:department")}
        groups = client.admin_list_groups_for_user(UserPoolId=pool, Username=name)["Groups"]
        out[name] = (attrs, user["Enabled"], sorted(g["GroupName"] for g in groups))
    return out


def writes(emulator: Any) -> int:
    operations = emulator.stats()["operations"]
    return sum(int(operations.get(op, {}).get("accepted", 0)) for op in WRITES)


@pytest.fixture
def pool(clean_emulator: Any, cognito_client: Any) -> str:
    clean_emulator.configure(quotas=QUOTAS)
    schema = [{**e, "Name": str(e["Name"])} for e in DEFAULT_CUSTOM_SCHEMA]
    pool_id = str(cognito_client.create_user_pool(
        PoolName="sync", AliasAttributes=["email"], Schema=schema)["UserPool"]["Id"])
    clean_emulator.seed_users(pool_id, [
        {"username": n, "email": f"{n}@x.io", "custom:department": d}
        for n, d in (("alice", "eng"), ("bob", "sales"), ("carol", "eng"), ("dave", "eng"),
                     ("erin", "hr"))])
    for group in ("staff", "sales", "admins"):
        cognito_client.create_group(UserPoolId=pool_id, GroupName=group)
    for user, group in (("alice", "staff"), ("alice", "admins"), ("bob", "sales"),
                        ("carol", "staff")):
        cognito_client.admin_add_user_to_group(UserPoolId=pool_id, Username=user,
                                               GroupName=group)
    cognito_client.admin_disable_user(UserPoolId=pool_id, Username="dave")
    clean_emulator.reset()
    return pool_id


def run(source: Path, pool: str, emulator: Any, report: Path, *extra: str) -> int:
    return main(["run", str(source), "--user-pool-id", pool, "--endpoint-url",
                 emulator.endpoint_url, "--report", str(report), "--yes", "--quiet",
                 "--create-missing", *extra])


def test_a_sync_makes_the_pool_match_the_file_and_undo_puts_it_back(
    clean_emulator: Any, cognito_client: Any, pool: str, tmp_path: Path
) -> None:
    # GIVEN a seeded pool and a sync file with joiners, movers, leavers, groups, a conflict
    before = pool_state(cognito_client, pool)
    source = write_csv(tmp_path / "sync.csv", HEADER, FILE)
    report = tmp_path / "out" / "report.csv"

    # WHEN the file is run (with before-images, for the undo below)
    code = run(source, pool, clean_emulator, report, "--undo")

    # THEN every row has its outcome and the pool is exactly the file's desired state
    statuses = {int(r): (v["status"], v["error_code"]) for r, v in report_rows(report).items()}
    assert statuses == {
        1: ("unchanged", ""), 2: ("updated", ""), 3: ("updated", ""), 4: ("updated", ""),
        5: ("created", ""), 6: ("invalid", "AliasConflict"), 7: ("unchanged", ""),
    }
    assert "alice" in report_rows(report)[6]["error_message"]
    assert "ALICE@x.io" not in report_rows(report)[6]["error_message"]
    assert code == 1  # one invalid row (EXIT_ROWS)
    assert pool_state(cognito_client, pool) == {
        "alice": ({"email": "alice@x.io", "custom:department": "eng"}, True,
                  ["admins", "staff"]),
        "bob": ({"email": "bob@x.io", "custom:department": "eng"}, True, ["staff"]),
        "carol": ({"email": "carol@x.io", "custom:department": "eng"}, False, []),
        "dave": ({"email": "dave@x.io", "custom:department": "ops"}, True, ["staff"]),
        "erin": ({"email": "erin@x.io", "custom:department": "hr"}, True, []),
        "frank": ({"email": "frank@x.io", "custom:department": "eng"}, True,
                  ["sales", "staff"]),
    }
    # enabled and groups are never attributes
    frank = cognito_client.admin_get_user(UserPoolId=pool, Username="frank")
    assert not {a["Name"] for a in frank["UserAttributes"]} & {"custom:enabled", "custom:groups"}
    # no invitation without --invite
    assert not clean_emulator.stats().get("messages", {}).get("email")

    # WHEN the run is undone
    assert main(["undo", str(report), "--endpoint-url", clean_emulator.endpoint_url, "--yes",
                 "--quiet"]) == 0
    # THEN the pool is back exactly: the joiner deleted, the rest restored
    assert pool_state(cognito_client, pool) == before


def test_the_dry_run_reports_every_planned_change_and_writes_nothing(
    clean_emulator: Any, cognito_client: Any, pool: str, tmp_path: Path
) -> None:
    before = pool_state(cognito_client, pool)
    source = write_csv(tmp_path / "sync.csv", HEADER, FILE)
    report = tmp_path / "dry" / "plan.csv"
    run(source, pool, clean_emulator, report, "--dry-run")
    assert writes(clean_emulator) == 0
    assert pool_state(cognito_client, pool) == before
    rows = report_rows(report)
    assert {r: v["status"] for r, v in rows.items()} == {
        1: "unchanged", 2: "updated", 3: "updated", 4: "updated", 5: "created", 6: "invalid",
        7: "unchanged"}
    assert rows[2]["error_message"] == ("dry run: not applied: update custom:department; "
                                        "remove from sales; add to staff")
    assert rows[3]["error_message"] == "dry run: not applied: disable; remove from staff"
    assert rows[4]["error_message"] == ("dry run: not applied: update custom:department; "
                                        "add to staff; enable")
    assert rows[5]["error_message"] == ("dry run: not applied: create; add to sales; "
                                        "add to staff")


def test_an_unknown_group_stops_the_job_before_any_write(
    clean_emulator: Any, cognito_client: Any, pool: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = pool_state(cognito_client, pool)
    rows = [*FILE[:5], ["hal", "hal@x.io", "eng", "true", "staff;ghosts;Admins2"]]
    source = write_csv(tmp_path / "sync.csv", HEADER, rows)
    code = run(source, pool, clean_emulator, tmp_path / "r" / "report.csv")
    assert code == 2
    err = capsys.readouterr().err
    assert "'Admins2', 'ghosts'" in err and "nothing was written" in err
    assert writes(clean_emulator) == 0
    assert pool_state(cognito_client, pool) == before


def test_disable_missing_refuses_a_truncated_input(
    clean_emulator: Any, cognito_client: Any, make_pool: Any, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a pool of 20 users and an input of 2 of them (10 %)
    clean_emulator.configure(quotas=QUOTAS)
    pool = make_pool(users=[{"username": f"u{n:02d}"} for n in range(20)])
    source = write_csv(tmp_path / "few.csv", ["username", "enabled"],
                       [["u00", "true"], ["u01", "true"]])
    clean_emulator.reset()
    # WHEN it is run with --disable-missing (default --max-disable 10%: 2 users)
    code = main(["run", str(source), "--user-pool-id", pool, "--endpoint-url",
                 clean_emulator.endpoint_url, "--report", str(tmp_path / "r" / "report.csv"),
                 "--yes", "--quiet", "--disable-missing"])
    # THEN it refuses in one line, and nothing is written
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "would disable 18 of the pool's 20 users" in err[0]
    assert writes(clean_emulator) == 0


def test_disable_missing_disables_the_absent_users_after_the_input(
    clean_emulator: Any, make_pool: Any, cognito_client: Any, tmp_path: Path
) -> None:
    clean_emulator.configure(quotas=QUOTAS)
    pool = make_pool(users=[{"username": f"u{n:02d}"} for n in range(20)])
    cognito_client.admin_disable_user(UserPoolId=pool, Username="u19")  # already disabled
    source = write_csv(tmp_path / "all.csv", ["username", "enabled"],
                       [[f"u{n:02d}", "true"] for n in range(18)])
    report = tmp_path / "r" / "report.csv"
    code = main(["run", str(source), "--user-pool-id", pool, "--endpoint-url",
                 clean_emulator.endpoint_url, "--report", str(report), "--yes", "--quiet",
                 "--disable-missing", "--undo", "--create-missing"])
    assert code == 0
    # a leaver is not in the snapshot of the input's users: never taken for a joiner
    assert "AdminCreateUser" not in clean_emulator.stats()["operations"]
    rows = report_rows(report)
    # u18 absent and enabled: disabled, as row 19 (after the input's 18); u19 needs nothing
    assert {r: (v["username"], v["status"]) for r, v in rows.items() if r > 18} == {
        19: ("u18", "updated")}
    enabled = {u["Username"]: u["Enabled"] for u in
               cognito_client.list_users(UserPoolId=pool)["Users"]}
    assert [n for n, e in sorted(enabled.items()) if not e] == ["u18", "u19"]
    # ... and its undo enables the leaver again (and only it)
    assert main(["undo", str(report), "--endpoint-url", clean_emulator.endpoint_url, "--yes",
                 "--quiet"]) == 0
    enabled = {u["Username"]: u["Enabled"] for u in
               cognito_client.list_users(UserPoolId=pool)["Users"]}
    assert [n for n, e in sorted(enabled.items()) if not e] == ["u19"]


def test_an_export_with_sync_columns_round_trips_the_whole_state(
    clean_emulator: Any, cognito_client: Any, pool: str, tmp_path: Path
) -> None:
    # GIVEN the pool exported with its enabled state and groups (issue 21 item 6)
    out = tmp_path / "users.csv"
    assert main(["export", str(out), "--user-pool-id", pool, "--endpoint-url",
                 clean_emulator.endpoint_url, "--quiet", "--sync-columns",
                 "--attributes", "email,custom:department"]) == 0
    rows = {r["username"]: r for r in csv.DictReader(out.open(encoding="utf-8"))}
    assert (rows["alice"]["enabled"], rows["alice"]["groups"]) == ("true", "admins;staff")
    assert (rows["dave"]["enabled"], rows["dave"]["groups"]) == ("false", "")
    before = pool_state(cognito_client, pool)
    clean_emulator.reset()
    # WHEN the unedited export is run back
    assert run(out, pool, clean_emulator, tmp_path / "same.csv") == 0
    # THEN no write at all, and every row unchanged
    assert writes(clean_emulator) == 0
    assert pool_state(cognito_client, pool) == before
    # AND an edit (carol leaves staff, dave is enabled) writes exactly those two changes
    rows["carol"]["groups"], rows["dave"]["enabled"] = "", "true"
    edited = tmp_path / "edited.csv"
    with edited.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows["alice"]))
        writer.writeheader()
        writer.writerows(rows.values())
    clean_emulator.reset()
    assert run(edited, pool, clean_emulator, tmp_path / "edited-report.csv") == 0
    assert writes(clean_emulator) == 2
    after = pool_state(cognito_client, pool)
    assert after["carol"][2] == [] and after["dave"][1] is True


def test_an_incremental_sync_sends_nothing_the_second_night(
    clean_emulator: Any, cognito_client: Any, pool: str, tmp_path: Path
) -> None:
    # GIVEN the sync file run once with --incremental (no state yet: a full run)
    source = tmp_path / "sync.csv"
    with source.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([HEADER, *(r for r in FILE if r[0] != "gina")])
    report = tmp_path / "night.csv"
    assert run(source, pool, clean_emulator, report, "--incremental") == 0
    first = pool_state(cognito_client, pool)
    # WHEN the same file comes the next night, to the same report (its state beside it; the
    # same input's finished run would be taken as done, so --fresh starts the night's run)
    clean_emulator.reset()
    assert run(source, pool, clean_emulator, report, "--incremental", "--fresh") == 0
    # THEN nothing is written and the pool is as the first night left it
    assert writes(clean_emulator) == 0
    assert pool_state(cognito_client, pool) == first


def test_disable_missing_never_disables_a_user_the_input_names_in_another_spelling(
    clean_emulator: Any, make_pool: Any, cognito_client: Any, tmp_path: Path
) -> None:
    # GIVEN a pool of 20 and an input naming 19 of them, two in another case or with spaces
    # (a row that then fails or is invalid still says the user is present)
    clean_emulator.configure(quotas=QUOTAS)
    pool = make_pool(users=[{"username": f"u{n:02d}"} for n in range(20)])
    names = [f"u{n:02d}" for n in range(19)]
    names[3], names[4] = "U03", " u04 "
    source = write_csv(tmp_path / "all.csv", ["username", "enabled"],
                       [[n, "true"] for n in names])
    clean_emulator.reset()
    # WHEN it runs with --disable-missing
    main(["run", str(source), "--user-pool-id", pool, "--endpoint-url",
          clean_emulator.endpoint_url, "--report", str(tmp_path / "report.csv"), "--yes",
          "--quiet", "--disable-missing"])
    # THEN only u19, the one user the input does not name, is disabled
    enabled = {u["Username"]: u["Enabled"] for u in
               cognito_client.list_users(UserPoolId=pool)["Users"]}
    assert [n for n, e in sorted(enabled.items()) if not e] == ["u19"]


def test_undo_deletes_only_created_users_left_as_the_run_made_them(
    clean_emulator: Any, cognito_client: Any, pool: str, tmp_path: Path
) -> None:
    # GIVEN three joiners created by a run (into staff), then changed by hand: one disabled,
    # one added to a group no run manages
    source = write_csv(tmp_path / "joiners.csv", HEADER,
                       [[n, f"{n}@x.io", "eng", "true", "staff"] for n in ("ja", "jb", "jc")])
    report = tmp_path / "joiners-report.csv"
    assert run(source, pool, clean_emulator, report, "--undo") == 0
    cognito_client.admin_disable_user(UserPoolId=pool, Username="ja")
    cognito_client.admin_add_user_to_group(UserPoolId=pool, Username="jb", GroupName="admins")
    # WHEN the run is undone without --force
    main(["undo", str(report), "--endpoint-url", clean_emulator.endpoint_url, "--yes",
          "--quiet"])
    # THEN only the untouched joiner is deleted; the changed ones are Conflicts, kept
    left = {u["Username"] for u in cognito_client.list_users(UserPoolId=pool)["Users"]}
    assert {"ja", "jb"} <= left and "jc" not in left
    undo_rows = {v["username"]: (v["status"], v["error_code"])
                 for v in report_rows(undo_report_path(report)).values()}
    assert undo_rows["ja"] == ("skipped", "Conflict") == undo_rows["jb"]


def test_a_disable_missing_sync_runs_again_and_resumes_on_the_same_report(
    clean_emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN a --disable-missing sync that disabled two leavers (journaled as rows 19 and 20,
    # after the input's 18 rows), on a report the next night's run uses again
    clean_emulator.configure(quotas=QUOTAS)
    pool = make_pool(users=[{"username": f"u{n:02d}"} for n in range(20)])
    source = write_csv(tmp_path / "all.csv", ["username", "enabled"],
                       [[f"u{n:02d}", "true"] for n in range(18)])
    report = tmp_path / "r" / "report.csv"
    args = ["run", str(source), "--user-pool-id", pool, "--endpoint-url",
            clean_emulator.endpoint_url, "--report", str(report), "--yes", "--quiet",
            "--disable-missing", "--max-disable", "50%"]
    assert main(args) == 0
    journal = journal_path(report)
    first = journal.read_bytes()
    # WHEN it runs again: THEN it replaces the finished run (before: "corrupt journal", exit 2)
    assert main(args) == 0
    assert sorted(report_rows(report)) == list(range(1, 19))  # the leavers are disabled
    # WHEN the first run had been killed with one leaver in flight (its line and the run's
    # end never written)
    journal.write_bytes(b"".join(line for line in first.splitlines(keepends=True)
                                 if not line.endswith(b"\tu19\n")
                                 and not line.endswith(b"=complete\n")))
    # THEN the rerun resumes it (before: refused as a corrupt journal), the leaver it
    # finished carried
    assert main(args) == 0
    rows = report_rows(report)
    assert sorted(rows) == list(range(1, 20))
    assert (rows[19]["username"], rows[19]["status"]) == ("u18", "updated")



def _leaver_sync(clean_emulator: Any, make_pool: Any, tmp_path: Path,
                 max_disable: str) -> tuple[str, list[str], Path]:
    """A finished --disable-missing sync: u00..u19, an input of u00..u15, u16..u19 disabled
    as rows 17..20; its journal made that of a run killed among its leavers: the end and
    u19's line dropped (in flight), u19 enabled again (its call never sent)."""
    clean_emulator.configure(quotas=QUOTAS)
    pool = make_pool(users=[{"username": f"u{n:02d}"} for n in range(20)])
    source = write_csv(tmp_path / "all.csv", ["username", "enabled"],
                       [[f"u{n:02d}", "true"] for n in range(16)])
    report = tmp_path / "r" / "report.csv"
    args = ["run", str(source), "--user-pool-id", pool, "--endpoint-url",
            clean_emulator.endpoint_url, "--report", str(report), "--yes", "--quiet",
            "--disable-missing", "--max-disable", max_disable]
    assert main(args) == 0
    rows = report_rows(report)
    assert [rows[r]["username"] for r in range(17, 21)] == ["u16", "u17", "u18", "u19"]
    journal = journal_path(report)
    journal.write_bytes(b"".join(line for line in journal.read_bytes().splitlines(True)
                                 if not line.endswith((b"\tu19\n", b"=complete\n"))))
    clean_emulator.seed_users(pool, [{"username": "a00"}])  # sorts before every other
    return pool, args, report


def _disables(emulator: Any) -> int:
    return int(emulator.stats()["operations"].get("AdminDisableUser", {}).get("accepted", 0))


def test_a_resume_counts_the_leavers_already_disabled_against_max_disable(
    clean_emulator: Any, make_pool: Any, tmp_path: Path, cognito_client: Any
) -> None:
    # GIVEN a sync killed after disabling 3 of its 4 leavers (--max-disable 4), and a user
    # the input lacks created since
    pool, args, report = _leaver_sync(clean_emulator, make_pool, tmp_path, "4")
    cognito_client.admin_enable_user(UserPoolId=pool, Username="u19")
    before = _disables(clean_emulator)
    # WHEN it resumes: THEN it refuses (3 disabled + u19 + a00 = 5 > 4) before any write;
    # before, it counted only the 2 enabled ones and disabled them: 5 in all
    assert main(args) == 2
    assert _disables(clean_emulator) == before


def test_a_resume_leaves_a_finished_leaver_alone_and_settles_one_the_pool_changed(
    clean_emulator: Any, make_pool: Any, tmp_path: Path, cognito_client: Any
) -> None:
    # GIVEN a sync killed among its leavers, whose journal says u17 (row 18) failed, and
    # meanwhile: u16 (row 17, finished) enabled again by someone else, u17 disabled by
    # someone else, u19 enabled (its disable was never sent), a00 created
    pool, args, report = _leaver_sync(clean_emulator, make_pool, tmp_path, "50%")
    journal = journal_path(report)
    with open(journal, "ab") as out:
        out.write(encode(RowResult(18, "u17", Status.FAILED, 1, "Boom", "lost")))
    for name in ("u16", "u19"):
        cognito_client.admin_enable_user(UserPoolId=pool, Username=name)
    state = read_journal(journal)
    assert state is not None
    handed_out = state.handed_out
    before = _disables(clean_emulator)
    # WHEN it resumes
    assert main(args) == 0
    # THEN only a00 and u19 are disabled (before: u16 was disabled again as row 18, and a00
    # never, its row 17 taken as done), each row once naming its own user
    assert _disables(clean_emulator) - before == 2
    enabled = {u["Username"]: u["Enabled"] for u in
               cognito_client.list_users(UserPoolId=pool)["Users"]}
    assert enabled["u16"] and not any(enabled[n] for n in ("u17", "u18", "u19", "a00"))
    rows = report_rows(report)
    leavers = {r: (v["username"], v["status"]) for r, v in rows.items() if r > 16}
    assert leavers == {17: ("u16", "updated"), 18: ("u17", "unchanged"),
                       19: ("u18", "updated"), handed_out + 1: ("a00", "updated"),
                       handed_out + 2: ("u19", "updated")}
