"""Write only what changed: --skip-unchanged, the two read paths, --key email, --empty delete.

End to end against the emulator over real HTTP: the CLI in-process, or
``batch.commands.run.Job`` with
the real ``CognitoGateway`` behind a delegating wrapper where a test must act mid-run.

Rules (docs/job-files.md: "Keys and delta sync", "Mapping columns to attributes") and their tests;

1. --skip-unchanged
   - Only rows that differ cost a call (5 of 50): those `updated`, the other 45 `unchanged`;
     the new values are stored.
     -> test_skip_unchanged_writes_only_changed_rows
   - Only differing attributes are sent: an unchanged column of a changed row is not re-sent
     (a change made to it after the read survives).
     -> test_unchanged_attributes_of_a_changed_row_are_not_resent
   - Numbers compare by value (07 = 7), booleans case-insensitively (TRUE = true).
     -> test_same_value_written_differently_is_unchanged[...]
   - ...for Number / Boolean attributes only: a String's '007' is not '7', 'TRUE' not 'true'.
     -> test_string_attributes_compare_exactly[...]
2. The two read paths
   - Snapshot (input large relative to the pool): ListUsers pages, no AdminGetUser; summary
     lookup "snapshot", read_calls = pages.
     -> test_snapshot_path_pages_the_pool
   - Live (3 rows, 300 users): one AdminGetUser per row (and one before the first write, the
     permission check), no ListUsers; summary lookup "live".
     -> test_live_path_reads_each_row
   - ...and the summary's read_calls counts those reads.
     -> test_live_path_counts_its_reads
3. --key email (snapshot and live)
   - A row resolves to its username (report: username and key); no match -> `invalid`
     UserNotFound; an email two users share -> `invalid` AmbiguousKey.
     -> test_key_email_resolves_in_both_modes[snapshot|live]
4. A user deleted between the snapshot and the write
   - That row `failed` (UserNotFoundException), the rest updated, every row reported once.
     -> test_user_deleted_after_the_snapshot_fails_its_row
5. Empty cells
   - Default `leave` keeps the attribute; `--empty delete` deletes it with
     AdminDeleteUserAttributes; with --skip-unchanged no call for an attribute the user lacks.
     -> test_empty_cells[leave|delete|delete-skip-unchanged]
6. Bounded memory
   - The snapshot pages the whole pool but keeps only the input's users (20 of 200).
     -> test_snapshot_keeps_only_the_input_users
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import FAST, report_rows, write_csv

from batch.cli import main
from batch.cognito import CognitoGateway, ConnectionSettings
from batch.commands.run import Job
from batch.config import build_config
from batch.inputs.scan import scan_column
from batch.pace.pacer import Pacer, event_waiter
from batch.pace.retrying import Retrier, RetryPolicy
from batch.plan.lookup import PacedCall, PoolSnapshot

# -- helpers ---------------------------------------------------------------------------------


def summary_of(report: Path) -> dict[str, Any]:
    return dict(json.loads(Path(f"{report}.summary.json").read_text()))


def calls(emulator: Any, operation: str = "AdminUpdateUserAttributes") -> int:
    ops: dict[str, dict[str, int]] = emulator.stats()["operations"]
    return ops.get(operation, {}).get("calls", 0)


def run_cli(source: Path, pool: str, emulator: Any, report: Path, *extra: str) -> int:
    return main(["run", str(source), "--user-pool-id", pool, "--endpoint-url",
                 emulator.endpoint_url, "--report", str(report), "--rate", "500", "--yes",
                 "--quiet", *extra])


def name(i: int) -> str:
    return f"u{i:03d}"


def pool_users(n: int) -> list[dict[str, str]]:
    """Known attributes: tier silver, a department, a level, a manager flag."""
    return [{"username": name(i), "custom:tier": "silver", "custom:department": f"dept-{i % 5}",
             "custom:level": str(i % 10 + 1), "custom:is_manager": "true" if i % 2 else "false"}
            for i in range(1, n + 1)]


def same_input(n: int, changed: dict[int, str] | None = None) -> list[list[str]]:
    """The pool's own values (levels zero-padded: '07' for 7), tier changed for `changed`."""
    changed = changed or {}
    return [[name(i), changed.get(i, "silver"), f"dept-{i % 5}", f"{i % 10 + 1:02d}",
             "true" if i % 2 else "false"] for i in range(1, n + 1)]


HEADER = ["username", "tier", "department", "level", "is_manager"]


@pytest.fixture
def fast(emulator: Any) -> Any:
    emulator.configure(quotas=FAST)
    return emulator


class Gateway:
    """The real gateway, delegated to; runs `before_first_update` once before any update."""

    def __init__(self, inner: CognitoGateway, before_first_update: Callable[[], None]) -> None:
        self.inner = inner
        self.before = before_first_update
        self.fired = False
        self.lock = threading.Lock()
        self.sent: dict[str, list[str]] = {}

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    def update_user_attributes(
        self, user_pool_id: str, username: str, attributes: Any, **kwargs: Any
    ) -> None:
        # Every update waits for the hook: no write can overtake it.
        with self.lock:
            if not self.fired:
                self.fired = True
                self.before()
            self.sent[username] = [n for n, _ in attributes]
        self.inner.update_user_attributes(user_pool_id, username, attributes, **kwargs)


def job_config(source: Path, pool: str, emulator: Any, report: Path, **settings: Any) -> Any:
    return build_config(None, {"input": str(source), "user_pool_id": pool, "report": str(report),
                               "endpoint_url": emulator.endpoint_url, "rate": "500",
                               "quiet": True, "confirm": False, **settings})


def real_gateway(emulator: Any) -> CognitoGateway:
    return CognitoGateway(ConnectionSettings(endpoint_url=emulator.endpoint_url,
                                             region="us-east-1"))


# -- 1. --skip-unchanged ---------------------------------------------------------------------


def test_skip_unchanged_writes_only_changed_rows(fast: Any, make_pool: Any, tmp_path: Path) -> None:
    # GIVEN 50 users, and an input of the same 50 where 5 have a new tier
    pool = make_pool(users=pool_users(50))
    changed = {5: "gold", 15: "gold", 25: "platinum", 35: "gold", 45: "bronze"}
    source = write_csv(tmp_path / "in.csv", HEADER, same_input(50, changed))
    report = tmp_path / "out.csv"

    # WHEN it runs with --skip-unchanged
    code = run_cli(source, pool, fast, report, "--skip-unchanged")

    # THEN exactly 5 calls, those rows updated, the other 45 unchanged
    rows = report_rows(report)
    assert code == 0
    assert calls(fast) == 5
    assert {n for n, r in rows.items() if r["status"] == "updated"} == set(changed)
    assert sum(r["status"] == "unchanged" for r in rows.values()) == 45
    assert all(rows[n]["attempts"] == "1" for n in changed)
    # AND the changed users hold the new values, the others their old ones
    for i, tier in changed.items():
        assert fast.get_user_attributes(pool, name(i))["custom:tier"] == tier
    assert fast.get_user_attributes(pool, name(4))["custom:level"] == "5"
    summary = summary_of(report)
    assert summary["counts"]["updated"] == 5 and summary["counts"]["unchanged"] == 45


def test_unchanged_attributes_of_a_changed_row_are_not_resent(
    fast: Any, make_pool: Any, tmp_path: Path, cognito_client: Any
) -> None:
    # GIVEN 20 users and an input changing only the tier of 3 of them (department as stored)
    pool = make_pool(users=pool_users(20))
    changed = {2: "gold", 9: "gold", 17: "gold"}
    source = write_csv(tmp_path / "in.csv", HEADER, same_input(20, changed))
    report = tmp_path / "out.csv"

    # ... and, after the users are read but before the first write, their departments move
    def move_departments() -> None:
        for i in changed:
            cognito_client.admin_update_user_attributes(
                UserPoolId=pool, Username=name(i),
                UserAttributes=[{"Name": "custom:department", "Value": "moved"}])

    gateway = Gateway(real_gateway(fast), move_departments)
    config = job_config(source, pool, fast, report, skip_unchanged=True)

    # WHEN it runs
    result = Job(config, gateway=gateway, stream=io.StringIO()).run()  # type: ignore[arg-type]

    # THEN only the tier was sent, so the department moved meanwhile is still "moved"
    assert result.exit_code == 0
    assert gateway.sent == {name(i): ["custom:tier"] for i in changed}
    for i in changed:
        stored = fast.get_user_attributes(pool, name(i))
        assert (stored["custom:tier"], stored["custom:department"]) == ("gold", "moved")


@pytest.mark.parametrize(
    ("column", "stored", "written", "flags"),
    [("level", "7", "07", ()), ("is_manager", "true", "TRUE", ("--no-schema-check",)),
     ("is_manager", "false", "False", ("--no-schema-check",))],
    ids=["number-07", "boolean-TRUE", "boolean-False"],
)
def test_same_value_written_differently_is_unchanged(
    fast: Any, make_pool: Any, tmp_path: Path, column: str, stored: str, written: str,
    flags: tuple[str, ...],
) -> None:
    # GIVEN a user holding `stored`, and an input writing the same value as `written`
    # (an upper-case boolean passes only without the schema check, which wants true/false)
    pool = make_pool(users=[{"username": "u001", f"custom:{column}": stored}])
    source = write_csv(tmp_path / "in.csv", ["username", column], [["u001", written]])
    report = tmp_path / "out.csv"

    # WHEN it runs with --skip-unchanged
    code = run_cli(source, pool, fast, report, "--skip-unchanged", *flags)

    # THEN the row is unchanged and costs no write
    assert code == 0
    assert report_rows(report)[1]["status"] == "unchanged"
    assert calls(fast) == 0


@pytest.mark.parametrize(("stored", "written"),
                         [("7", "007"), ("true", "TRUE"), ("1000", "1_000")],
                         ids=["leading-zero", "case", "underscore"])
def test_string_attributes_compare_exactly(
    fast: Any, make_pool: Any, tmp_path: Path, stored: str, written: str
) -> None:
    # GIVEN a String attribute holding `stored`, and an input with a different string
    pool = make_pool(users=[{"username": "u001", "custom:department": stored}])
    source = write_csv(tmp_path / "in.csv", ["username", "department"], [["u001", written]])
    report = tmp_path / "out.csv"

    # WHEN it runs with --skip-unchanged
    run_cli(source, pool, fast, report, "--skip-unchanged")

    # THEN the new string is written
    assert report_rows(report)[1]["status"] == "updated"
    assert fast.get_user_attributes(pool, "u001")["custom:department"] == written


# -- 2. the two read paths -------------------------------------------------------------------


def test_snapshot_path_pages_the_pool(fast: Any, make_pool: Any, tmp_path: Path) -> None:
    # GIVEN 130 users and an input of the same 130 (the input is the whole pool)
    pool = make_pool(users=pool_users(130))
    source = write_csv(tmp_path / "in.csv", HEADER, same_input(130, {64: "gold"}))
    report = tmp_path / "out.csv"

    # WHEN it runs with --skip-unchanged
    code = run_cli(source, pool, fast, report, "--skip-unchanged")

    # THEN the pool was paged (3 ListUsers pages of 60), no user read one by one
    summary = summary_of(report)
    assert code == 0
    assert summary["lookup"] == "snapshot"
    assert calls(fast, "ListUsers") == 3
    assert summary["read_calls"] == 3
    assert calls(fast, "AdminGetUser") == 0
    # AND only the changed user was written
    assert calls(fast) == 1 and summary["counts"]["unchanged"] == 129


def live_run(fast: Any, make_pool: Any, tmp_path: Path) -> tuple[int, Path, str]:
    pool = make_pool(users=pool_users(300))
    rows = same_input(300, {7: "gold"})
    source = write_csv(tmp_path / "in.csv", HEADER, [rows[6], rows[99], rows[249]])
    report = tmp_path / "out.csv"
    return run_cli(source, pool, fast, report, "--skip-unchanged"), report, pool


def test_live_path_reads_each_row(fast: Any, make_pool: Any, tmp_path: Path) -> None:
    # GIVEN 300 users and an input of 3 (of which u007 changes)
    # WHEN it runs with --skip-unchanged
    code, report, pool = live_run(fast, make_pool, tmp_path)

    # THEN each row's user was read on its own (AdminGetUser), the pool never paged
    summary = summary_of(report)
    assert code == 0
    assert summary["lookup"] == "live"
    assert calls(fast, "AdminGetUser") == 3 + 1  # + the permission check before any write
    assert calls(fast, "ListUsers") == 0
    # AND only the changed row was written
    rows = report_rows(report)
    assert [rows[n]["status"] for n in (1, 2, 3)] == ["updated", "unchanged", "unchanged"]
    assert calls(fast) == 1
    assert fast.get_user_attributes(pool, "u007")["custom:tier"] == "gold"


def test_live_path_counts_its_reads(fast: Any, make_pool: Any, tmp_path: Path) -> None:
    # GIVEN / WHEN the live run of 3 rows
    code, report, _ = live_run(fast, make_pool, tmp_path)

    # THEN the summary counts the 3 reads it made, and the permission check
    assert code == 0
    assert summary_of(report)["read_calls"] == calls(fast, "AdminGetUser") == 3 + 1


# -- 3. --key email --------------------------------------------------------------------------


def email_pool(n: int) -> list[dict[str, str]]:
    users = [{"username": name(i), "email": f"e{i}@example.com"} for i in range(1, n + 1)]
    users[0]["email"] = users[1]["email"] = "shared@example.com"
    return users


@pytest.mark.parametrize(("pool_size", "mode"), [(10, "snapshot"), (300, "live")])
def test_key_email_resolves_in_both_modes(
    fast: Any, make_pool: Any, tmp_path: Path, pool_size: int, mode: str
) -> None:
    # GIVEN a pool where u001 and u002 share an email; rows keyed by email: one user's, no
    # one's, the shared one
    pool = make_pool(users=email_pool(pool_size))
    source = write_csv(tmp_path / "in.csv", ["email", "tier"],
                       [["e7@example.com", "gold"], ["nobody@example.com", "gold"],
                        ["shared@example.com", "gold"]])
    report = tmp_path / "out.csv"

    # WHEN it runs with --key email
    code = run_cli(source, pool, fast, report, "--key", "email")

    # THEN the row resolves to its username, the others are invalid with the reason
    rows = report_rows(report)
    assert code == 1
    assert summary_of(report)["lookup"] == mode
    got = {n: (r["username"], r["key"], r["status"], r["error_code"]) for n, r in rows.items()}
    assert got == {
        1: ("u007", "e7@example.com", "updated", ""),
        2: ("", "nobody@example.com", "invalid", "UserNotFound"),
        3: ("", "shared@example.com", "invalid", "AmbiguousKey"),
    }
    # AND only the resolved user was written
    assert calls(fast) == 1
    assert fast.get_user_attributes(pool, "u007")["custom:tier"] == "gold"
    assert "custom:tier" not in fast.get_user_attributes(pool, "u001")
    reads = calls(fast, "ListUsers")
    # a filtered ListUsers per row (and the permission check), or one page
    assert reads == (3 + 1 if mode == "live" else 1)


# -- 4. a user deleted between the snapshot and the write ------------------------------------


def test_user_deleted_after_the_snapshot_fails_its_row(
    fast: Any, make_pool: Any, tmp_path: Path, cognito_client: Any
) -> None:
    # GIVEN 20 users, all getting a new tier, read by a snapshot first
    pool = make_pool(users=pool_users(20))
    source = write_csv(
        tmp_path / "in.csv", HEADER, same_input(20, dict.fromkeys(range(1, 21), "gold"))
    )
    report = tmp_path / "out.csv"

    # ... and u015 deleted once the snapshot is read, before the first write
    def delete_u015() -> None:
        cognito_client.admin_delete_user(UserPoolId=pool, Username="u015")

    gateway = Gateway(real_gateway(fast), delete_u015)
    config = job_config(source, pool, fast, report, skip_unchanged=True)

    # WHEN it runs
    result = Job(config, gateway=gateway, stream=io.StringIO()).run()  # type: ignore[arg-type]

    # THEN that row failed (Cognito no longer knows the user), the rest updated, each once
    rows = report_rows(report)
    assert result.summary["lookup"] == "snapshot"
    assert result.exit_code == 1
    assert sorted(rows) == list(range(1, 21))
    assert (rows[15]["status"], rows[15]["error_code"]) == ("failed", "UserNotFoundException")
    assert {r["status"] for n, r in rows.items() if n != 15} == {"updated"}
    assert calls(fast) == 20


# -- 5. empty cells --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "updates", "deletes", "statuses", "kept"),
    [
        ((), 3, 0, ("updated", "updated", "updated"), True),
        (("--empty", "delete"), 3, 3, ("updated", "updated", "updated"), False),
        (("--empty", "delete", "--skip-unchanged"), 1, 2, ("updated", "updated", "unchanged"),
         False),
    ],
    ids=["leave", "delete", "delete-skip-unchanged"],
)
def test_empty_cells(
    fast: Any, make_pool: Any, tmp_path: Path, flags: tuple[str, ...], updates: int,
    deletes: int, statuses: tuple[str, ...], kept: bool,
) -> None:
    # GIVEN u001 and u002 with a department, u003 without; an input with empty departments
    # (u001 also gets a new tier, the others keep theirs)
    pool = make_pool(users=[
        {"username": "u001", "custom:department": "Sales", "custom:tier": "silver"},
        {"username": "u002", "custom:department": "Sales", "custom:tier": "silver"},
        {"username": "u003", "custom:tier": "silver"},
    ])
    source = write_csv(tmp_path / "in.csv", ["username", "department", "tier"],
                       [["u001", "", "gold"], ["u002", "", "silver"],
                        ["u003", "", "silver"]])
    report = tmp_path / "out.csv"

    # WHEN it runs
    code = run_cli(source, pool, fast, report, *flags)

    # THEN leave keeps the attribute; delete removes it with AdminDeleteUserAttributes, and
    # with --skip-unchanged only where the user has it (u003: no call at all)
    rows = report_rows(report)
    assert tuple(rows[n]["status"] for n in (1, 2, 3)) == statuses
    assert code == 0
    assert calls(fast) == updates
    assert calls(fast, "AdminDeleteUserAttributes") == deletes
    for user in ("u001", "u002"):
        assert ("custom:department" in fast.get_user_attributes(pool, user)) is kept
    assert fast.get_user_attributes(pool, "u001")["custom:tier"] == "gold"
    assert fast.get_user_attributes(pool, "u003")["custom:tier"] == "silver"


# -- 6. bounded memory -----------------------------------------------------------------------


def test_snapshot_keeps_only_the_input_users(fast: Any, make_pool: Any, tmp_path: Path) -> None:
    # GIVEN a pool of 200 users and an input naming 20 of them
    pool = make_pool(users=pool_users(200))
    wanted = scan_column(name(i) for i in range(1, 200, 10))
    stop = threading.Event()
    paced = PacedCall(Pacer(1000), Retrier(RetryPolicy(), wait=event_waiter(stop)),
                   event_waiter(stop))
    snapshot = PoolSnapshot(tmp_path)

    # WHEN the snapshot pages the pool
    try:
        snapshot.fill(real_gateway(fast), pool, key="username", wanted=wanted,
                      attributes={"custom:tier"}, paced=paced)

        # THEN every page was read, but only the 20 input users (and only the attributes the
        # input writes, besides the key and verified flags) were kept
        assert snapshot.reads == 4 == calls(fast, "ListUsers")
        assert snapshot.kept == 20
        found = snapshot.find("u011")
        # the attributes it was asked for, and the user's state (enabled, status, dates)
        assert [{k: v for k, v in u.items() if not k.startswith("@")} for u in found] == [
            {"username": "u011", "custom:tier": "silver"}]
        assert found[0]["@enabled"] == "true"
        assert snapshot.find("u012") == []
        assert snapshot.path.parent == tmp_path
    finally:
        snapshot.close()
    assert not snapshot.path.exists()
