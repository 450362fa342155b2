"""Fail before the first write: schema, values, verification messages, dry run, confirmation,
malformed input. End to end: the CLI (in-process) against the emulator over real HTTP.

Rules (docs/job-files.md: "Checks before the first write", "Input"; docs/reliability.md:
"Exit codes") and their tests;

1. Schema check before any write
   - A column mapping to no writable attribute stops the job with exit 2 before any update
     call, one stderr line naming the file and column; an unknown name gets the closest valid
     one suggested (departmnt -> custom:department); immutable (employee_id), `sub`,
     developer-only without `dev:` likewise.
     -> test_unwritable_column_stops_before_any_write[unknown|immutable|sub|developer-only]
   - A `sub` column is refused as never writable, without a misleading suggestion.
     -> test_sub_column_is_refused_as_never_writable
2. Bad values
   - A bad value makes its row `invalid` (InvalidValue) with the column named and costs no
     call: String max length, Number (whole, min, max), email, E.164 phone, birthdate (format,
     real date), updated_at, *_verified, custom Boolean, over 2,048 UTF-8 bytes (3,000 ASCII
     characters; 1,100 two-byte characters). Usernames empty, 129 characters, with a space:
     `invalid` (InvalidUsername).
     -> test_bad_values_and_usernames_are_invalid_rows_without_a_call
   - The report never copies an attribute value, error messages included.
     -> test_invalid_value_messages_never_copy_the_value
3. The pre-flight check agrees with the emulator
   - Whatever the planner calls invalid, the emulator refuses (InvalidParameterException;
     usernames: refused).
     -> test_every_value_the_planner_refuses_the_emulator_refuses_too
   - With --no-schema-check no bad row is `updated`: the pool-independent rules still make it
     `invalid`, or the emulator refuses it (`failed`, InvalidParameterException).
     -> test_without_schema_check_the_emulator_refuses_each_bad_row
   - Valid edge values (max lengths, min/max numbers, +14325551212, 2000-02-29, exactly 2,048
     bytes) pass both the planner and the emulator.
     -> test_valid_edge_values_pass_both_checks
   - What the emulator refuses, the planner refuses: '+5', Unicode digits, updated_at -5.
     -> test_planner_refuses_what_the_emulator_refuses[...]
   - What the emulator accepts, the planner accepts: year-withheld birthdate 0000-03-15.
     -> test_year_withheld_birthdate_is_judged_alike
4. Verification messages
   - Changing emails in an auto-verifying pool sends messages; the dry-run plan on stderr
     announces as many as the emulator then counts.
     -> test_verification_messages_are_planned_and_counted
   - --mark-verified: no message planned or sent; the email applies, email_verified "true".
     -> test_mark_verified_sends_no_message
   - Verification before update: without --mark-verified the new email is pending (and
     planned so), with it the email applies.
     -> test_verification_before_update_holds_the_value_unless_marked_verified[...]
   - With --skip-unchanged the plan counts only the messages that will be sent.
     -> test_dry_run_message_count_with_skip_unchanged
5. --dry-run
   - No write call; the report holds each row's planned status.
     -> test_dry_run_writes_the_plan_and_no_update
   - On the demo data the dry-run report agrees row by row (status, and error_code of invalid
     rows) with the real run, except user9999: planned `updated`, ends `failed`.
     -> test_dry_run_agrees_with_the_real_run_on_the_demo_data
6. Confirmation
   - A write to a real (non-loopback) pool asks first; --yes / confirm=false, a loopback
     endpoint and --dry-run do not.
     -> test_needs_confirmation[...]
   - With no terminal the question refuses with a BatchError naming --yes, reading nothing.
     -> test_ask_refuses_without_a_terminal
   - On a terminal only y / yes proceeds.
     -> test_ask_takes_the_answer_from_a_terminal[...]
   - A refused or declined confirmation writes nothing; the plan shown counts rows, writes
     and messages.
     -> test_confirmation_refused_writes_nothing[no-terminal|declined]
7. Malformed input
   - Each input of the corpus ends with the documented exit code (2 unreadable, 1 some rows
     invalid, 0 all good), never a traceback; exit 2 is one stderr line naming the file (and
     row / column) and nothing reached the pool. Corpus: empty file, header only (exit 0,
     header-only report), no key column, duplicate headers, non-UTF-8 bytes, ragged rows
     (MalformedRow, the rest updated), a 3,000-character value, Parquet with a list, a struct
     or a binary column, Parquet named .csv, CSV named .parquet, a good Parquet file, a UTF-8
     BOM, `;` with --delimiter ';', quoted commas / quotes / newlines and a blank line (data
     row numbers stay right).
     -> test_malformed_input_corpus[...]
   - A non-UTF-8 byte is reported at its data row and column.
     -> test_non_utf8_error_names_its_row_and_column
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import FAST, report_rows

from batch import cli
from batch.cli import main
from batch.cognito import CognitoGateway, ConnectionSettings
from batch.commands.demo import seed_rows
from batch.commands.run import Job, PlanSummary, needs_confirmation
from batch.config import build_config
from batch.emulator import DEFAULT_CUSTOM_SCHEMA
from batch.errors import BatchError, RowError, UsageError
from batch.plan.mapping import attribute_name
from batch.plan.schema import PoolSchema, check_username

ROOT = Path(__file__).resolve().parent.parent


# -- helpers ---------------------------------------------------------------------------------


def write_csv(
    path: Path, header: list[str], rows: list[list[str]], *, delimiter: str = ","
) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def calls(emulator: Any, operation: str = "AdminUpdateUserAttributes") -> int:
    ops: dict[str, dict[str, int]] = emulator.stats()["operations"]
    return ops.get(operation, {}).get("calls", 0)


def run_cli(source: Path, pool: str, emulator: Any, report: Path, *extra: str) -> int:
    return main(["run", str(source), "--user-pool-id", pool, "--endpoint-url",
                 emulator.endpoint_url, "--report", str(report), "--rate", "500", "--yes",
                 "--quiet", *extra])


def error_line(err: str) -> str:
    """The single error line on stderr (and no traceback)."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert lines[0].startswith("cognito-batch: error: ")
    return lines[0]


def seeded(n: int, **attributes: str) -> list[dict[str, str]]:
    return [{"username": f"u{i:03d}", **attributes} for i in range(1, n + 1)]


def gateway(emulator: Any) -> CognitoGateway:
    return CognitoGateway(ConnectionSettings(endpoint_url=emulator.endpoint_url,
                                             region="us-east-1"))


@pytest.fixture
def fast(emulator: Any) -> Any:
    emulator.configure(quotas=FAST)
    return emulator


DEV_ONLY = {"Name": "secret", "AttributeDataType": "String", "DeveloperOnlyAttribute": True,
            "Mutable": True}


@pytest.fixture(scope="module")
def shared_pool(emulator: Any) -> str:
    """One pool (u001..u020) for the tests that need no particular pool state: creating a pool
    costs moto ~0.3 s. Tests on it write distinctive values, and never assume a user's state."""
    schema = [*DEFAULT_CUSTOM_SCHEMA, DEV_ONLY]
    pool = str(emulator.create_pool("validation-shared", custom_attributes=schema))
    emulator.seed_users(pool, seeded(20))
    return pool


# -- 1. schema check before any write ----------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "fragments"),
    [
        ("departmnt", ("'departmnt'", "not in the pool's schema", "'custom:department'")),
        ("employee_id", ("'employee_id'", "'custom:employee_id'", "immutable")),
        ("sub", ("'sub'",)),
        ("secret", ("'secret'", "'dev:custom:secret'")),
    ],
    ids=["unknown", "immutable", "sub", "developer-only"],
)
def test_unwritable_column_stops_before_any_write(
    fast: Any, shared_pool: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    column: str, fragments: tuple[str, ...],
) -> None:
    # GIVEN a pool with the default schema (plus a developer-only attribute) and 3 good rows
    # whose one extra column writes no writable attribute
    pool = shared_pool
    source = write_csv(tmp_path / "in.csv", ["username", "tier", column],
                       [[f"u{i:03d}", "unwritten", "x"] for i in range(1, 4)])
    report = tmp_path / "out.csv"

    # WHEN it runs
    code = run_cli(source, pool, fast, report)

    # THEN exit 2, one line naming the file and column (and the fix), and no write at all
    line = error_line(capsys.readouterr().err)
    assert code == 2
    assert "in.csv" in line
    for fragment in fragments:
        assert fragment in line
    assert calls(fast) == 0
    assert not report.exists()
    assert fast.get_user_attributes(pool, "u001").get("custom:tier") != "unwritten"


def test_sub_column_is_refused_as_never_writable(
    fast: Any, shared_pool: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an input with a `sub` column
    pool = shared_pool
    source = write_csv(tmp_path / "in.csv", ["username", "sub"], [["u001", "x"]])

    # WHEN it runs
    code = run_cli(source, pool, fast, tmp_path / "out.csv")

    # THEN the error says why: sub is never writable (no misleading suggestion)
    line = error_line(capsys.readouterr().err)
    assert code == 2
    assert "never writable" in line and "did you mean" not in line


# -- 2. bad values -> invalid rows, no call --------------------------------------------------

# (column, value): every one is refused by the pre-flight check and by the emulator.
BAD_VALUES: list[tuple[str, str]] = [
    ("department", "d" * 65),  # String max 64
    ("tier", "t" * 17),  # String max 16
    ("level", "3.5"),  # Number: not whole
    ("level", "ten"),
    ("level", "0"),  # Number min 1
    ("level", "987654"),  # Number max 10
    ("email", "not-an-email"),
    ("email", "ada@localhost"),
    ("phone_number", "555-0100"),
    ("phone_number", "4325550199"),  # no '+'
    ("phone_number", "+1 432 555 1212"),
    ("birthdate", "1990-02-30"),  # not a real date
    ("birthdate", "1990/01/02"),  # not YYYY-MM-DD
    ("updated_at", "yesterday"),
    ("email_verified", "yes"),
    ("is_manager", "yes"),  # custom Boolean
    ("given_name", "x" * 3000),  # over 2,048 bytes
    ("nickname", "é" * 1100),  # 1,100 characters, 2,200 bytes
]
BAD_USERNAMES = ["", "x" * 129, "john smith", "ada\u200blovelace"]
BAD_COLUMNS = sorted({c for c, _ in BAD_VALUES})


def bad_rows_file(path: Path) -> tuple[Path, dict[int, str]]:
    """One row per bad value (its own user), the bad usernames, and one good row last.

    Returns the file and row -> the column at fault ("username" for the bad usernames).
    """
    header = ["username", *BAD_COLUMNS]
    rows: list[list[str]] = []
    fault: dict[int, str] = {}
    for i, (column, value) in enumerate(BAD_VALUES, start=1):
        cells = {c: "" for c in BAD_COLUMNS} | {column: value}
        rows.append([f"u{i:03d}", *(cells[c] for c in BAD_COLUMNS)])
        fault[i] = column
    for name in BAD_USERNAMES:
        cells = {c: "" for c in BAD_COLUMNS} | {"department": "Sales"}
        rows.append([name, *(cells[c] for c in BAD_COLUMNS)])
        fault[len(rows)] = "username"
    good = {c: "" for c in BAD_COLUMNS} | {"department": "Sales"}
    rows.append(["u100", *(good[c] for c in BAD_COLUMNS)])
    return write_csv(path, header, rows), fault


def test_bad_values_and_usernames_are_invalid_rows_without_a_call(
    fast: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN a row per bad value or username, and one good row (row 22)
    pool = make_pool(users=[*seeded(len(BAD_VALUES)), {"username": "u100"}])
    source, fault = bad_rows_file(tmp_path / "bad.csv")
    report = tmp_path / "out.csv"

    # WHEN it runs
    code = run_cli(source, pool, fast, report)

    # THEN every bad row is invalid with the column named, only the good row cost a call
    rows = report_rows(report)
    assert code == 1
    assert sorted(rows) == list(range(1, len(fault) + 2))
    for number, column in fault.items():
        row = rows[number]
        assert row["status"] == "invalid", (number, column)
        if column == "username":
            assert row["error_code"] == "InvalidUsername", number
        else:
            assert row["error_code"] == "InvalidValue", (number, column)
            assert f"column '{column}'" in row["error_message"], (number, column)
    good = rows[len(fault) + 1]
    assert (good["username"], good["status"]) == ("u100", "updated")
    assert calls(fast) == 1
    assert fast.get_user_attributes(pool, "u100")["custom:department"] == "Sales"


def test_invalid_value_messages_never_copy_the_value(
    fast: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN the bad rows (each value distinctive enough to spot in a message)
    pool = make_pool(users=seeded(len(BAD_VALUES)))
    source, _ = bad_rows_file(tmp_path / "bad.csv")
    report = tmp_path / "out.csv"

    # WHEN it runs
    run_cli(source, pool, fast, report)

    # THEN no report cell but the key holds an attribute value
    rows = report_rows(report)
    leaks = [(n, value) for n, (_, value) in enumerate(BAD_VALUES, start=1)
             if len(value) > 3 and value in rows[n]["error_message"]]
    assert leaks == []


# -- 3. the pre-flight check agrees with the emulator ----------------------------------------


def test_every_value_the_planner_refuses_the_emulator_refuses_too(
    fast: Any, shared_pool: str
) -> None:
    # GIVEN users, the pool's schema as the planner reads it, and a gateway on the emulator
    pool = shared_pool
    cognito = gateway(fast)
    schema = PoolSchema.from_describe(cognito.describe_user_pool(pool))
    disagreements: list[tuple[str, str, str]] = []

    # WHEN each bad value is both checked by the planner and sent to the emulator directly
    # (each to its own user: the emulator's per-user write limit is 10/s)
    for i, (column, value) in enumerate(BAD_VALUES, start=1):
        attr = attribute_name(column, {})
        planner_says = schema.check_value(attr, value)
        try:
            cognito.update_user_attributes(pool, f"u{i:03d}", [(attr, value)])
            emulator_says = "accepted"
        except RowError as exc:
            emulator_says = exc.code
        if planner_says is None or emulator_says != "InvalidParameterException":
            disagreements.append((attr, value[:20], f"{planner_says} / {emulator_says}"))
    for name in BAD_USERNAMES:
        planner_says = check_username(name)
        try:
            cognito.update_user_attributes(pool, name, [("custom:tier", "gold")])
            emulator_says = "accepted"
        except RowError as exc:
            emulator_says = exc.code
        # The emulator checks Cognito's username pattern and length itself (moto does not).
        if planner_says is None or emulator_says != "InvalidParameterException":
            disagreements.append(("username", name[:20], f"{planner_says} / {emulator_says}"))

    # THEN both refuse every one
    assert disagreements == []
    assert calls(fast) == len(BAD_VALUES) + len(BAD_USERNAMES) - 1  # "" never leaves botocore
    assert fast.stats()["operations"]["AdminUpdateUserAttributes"]["accepted"] == 0
    for i, (column, value) in enumerate(BAD_VALUES, start=1):
        stored = fast.get_user_attributes(pool, f"u{i:03d}")
        assert stored.get(attribute_name(column, {})) != value


def test_without_schema_check_the_emulator_refuses_each_bad_row(
    fast: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN the bad rows and users for all of them
    pool = make_pool(users=[*seeded(len(BAD_VALUES)), {"username": "u100"}])
    source, fault = bad_rows_file(tmp_path / "bad.csv")
    report = tmp_path / "out.csv"

    # WHEN it runs with --no-schema-check
    code = run_cli(source, pool, fast, report, "--no-schema-check")

    # THEN no bad row is updated: the pool-independent rules still make it invalid, or the
    # emulator refused it (InvalidParameterException); the schema-only rules reach the emulator
    rows = report_rows(report)
    assert code == 1
    outcome: dict[str, set[str]] = {}
    for number, column in fault.items():
        row = rows[number]
        assert (row["status"], row["error_code"]) in {
            ("invalid", "InvalidValue"), ("invalid", "InvalidUsername"),
            ("failed", "InvalidParameterException"),
        }, (number, column, row)
        outcome.setdefault(row["status"], set()).add(column)
    assert {"department", "tier", "level", "is_manager"} <= outcome["failed"]
    failed = sum(1 for n in fault if rows[n]["status"] == "failed")
    update = fast.stats()["operations"]["AdminUpdateUserAttributes"]
    assert update["invalid"] == failed
    assert update["accepted"] == 1
    assert rows[len(fault) + 1]["status"] == "updated"


VALID_EDGES: list[tuple[str, str]] = [
    ("department", "d" * 64),
    ("tier", "t" * 16),
    ("level", "1"),
    ("level", "10"),
    ("phone_number", "+14325551212"),
    ("birthdate", "2000-02-29"),
    ("updated_at", "0"),
    ("email", "first.last+tag@mail.example.co.uk"),
    ("email_verified", "false"),
    ("is_manager", "true"),
    ("given_name", "x" * 2048),  # exactly 2,048 bytes
    ("nickname", "é" * 1024),  # 2,048 bytes
    ("family_name", "€" * 682),  # 2,046 bytes
]


def test_valid_edge_values_pass_both_checks(fast: Any, make_pool: Any, tmp_path: Path) -> None:
    # GIVEN a row per valid edge value
    pool = make_pool(users=seeded(len(VALID_EDGES)))
    columns = sorted({c for c, _ in VALID_EDGES})
    rows = [[f"u{i:03d}", *(value if c == column else "" for c in columns)]
            for i, (column, value) in enumerate(VALID_EDGES, start=1)]
    source = write_csv(tmp_path / "edges.csv", ["username", *columns], rows)
    report = tmp_path / "out.csv"

    # WHEN it runs with the schema check on
    code = run_cli(source, pool, fast, report)

    # THEN the planner let every row through and the emulator accepted and stored each value
    result = report_rows(report)
    assert code == 0, result
    assert {r["status"] for r in result.values()} == {"updated"}
    for i, (column, value) in enumerate(VALID_EDGES, start=1):
        assert fast.get_user_attributes(pool, f"u{i:03d}")[attribute_name(column, {})] == value
    assert fast.stats()["operations"]["AdminUpdateUserAttributes"]["accepted"] == len(VALID_EDGES)


@pytest.mark.parametrize(
    ("column", "value"),
    [("level", "+5"), ("level", "\u0665"), ("updated_at", "-5")],
    ids=["plus-sign", "arabic-indic-digit", "negative-updated_at"],
)
def test_planner_refuses_what_the_emulator_refuses(
    fast: Any, shared_pool: str, column: str, value: str
) -> None:
    # GIVEN a value the emulator refuses
    pool = shared_pool
    cognito = gateway(fast)
    attr = attribute_name(column, {})
    with pytest.raises(RowError) as refused:
        cognito.update_user_attributes(pool, "u001", [(attr, value)])
    assert refused.value.code == "InvalidParameterException"

    # WHEN the planner checks it against the pool's schema
    schema = PoolSchema.from_describe(cognito.describe_user_pool(pool))

    # THEN it calls it invalid too
    assert schema.check_value(attr, value) is not None


def test_year_withheld_birthdate_is_judged_alike(fast: Any, shared_pool: str) -> None:
    # GIVEN a birthdate with the year withheld, which the emulator accepts
    pool = shared_pool
    cognito = gateway(fast)
    cognito.update_user_attributes(pool, "u001", [("birthdate", "0000-03-15")])
    assert fast.get_user_attributes(pool, "u001")["birthdate"] == "0000-03-15"

    # WHEN the planner checks it
    schema = PoolSchema.from_describe(cognito.describe_user_pool(pool))

    # THEN it accepts it too
    assert schema.check_value("birthdate", "0000-03-15") is None


# -- 4. verification messages ----------------------------------------------------------------


def planned_messages(err: str) -> int:
    found = re.search(r"^messages:\s+(\d+) email verification", err, re.MULTILINE)
    return int(found.group(1)) if found else 0


def email_change(path: Path, n: int, *, unchanged: int = 0) -> Path:
    """n rows changing u001..'s email, then `unchanged` rows changing only the tier."""
    rows = [[f"u{i:03d}", f"new{i}@example.com", "gold"] for i in range(1, n + 1)]
    rows += [[f"u{i:03d}", "", "gold"] for i in range(n + 1, n + unchanged + 1)]
    return write_csv(path, ["username", "email", "tier"], rows)


def old_emails(n: int) -> list[dict[str, str]]:
    return [{"username": f"u{i:03d}", "email": f"old{i}@example.com"} for i in range(1, n + 1)]


def test_verification_messages_are_planned_and_counted(
    fast: Any, make_pool: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a pool that auto-verifies email, and 6 email changes among 9 rows
    pool = make_pool(users=old_emails(9), auto_verified=["email"])
    source = email_change(tmp_path / "in.csv", 6, unchanged=3)

    # WHEN it runs dry, then for real without --mark-verified
    dry = run_cli(source, pool, fast, tmp_path / "dry.csv", "--dry-run")
    err = capsys.readouterr().err
    code = run_cli(source, pool, fast, tmp_path / "real.csv")

    # THEN the plan announced as many messages as the emulator then counted
    assert (dry, code) == (0, 0)
    assert planned_messages(err) == 6
    assert fast.stats()["messages"] == {"email": 6, "sms": 0}
    summary = json.loads((tmp_path / "dry.csv.summary.json").read_text())
    assert summary["messages"] == {"email": 6}
    # AND the new addresses apply, unverified until the user confirms them
    stored = fast.get_user_attributes(pool, "u001")
    assert (stored["email"], stored.get("email_verified")) == ("new1@example.com", "false")


def test_mark_verified_sends_no_message(
    fast: Any, make_pool: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the same pool and changes
    pool = make_pool(users=old_emails(9), auto_verified=["email"])
    source = email_change(tmp_path / "in.csv", 6, unchanged=3)

    # WHEN it runs dry and for real with --mark-verified
    dry = run_cli(source, pool, fast, tmp_path / "dry.csv", "--dry-run", "--mark-verified")
    err = capsys.readouterr().err
    code = run_cli(source, pool, fast, tmp_path / "real.csv", "--mark-verified")

    # THEN no message is planned or sent, and the new emails apply, verified
    assert (dry, code) == (0, 0)
    assert planned_messages(err) == 0 and "messages:" not in err
    assert fast.stats()["messages"] == {"email": 0, "sms": 0}
    for i in range(1, 7):
        stored = fast.get_user_attributes(pool, f"u{i:03d}")
        assert (stored["email"], stored["email_verified"]) == (f"new{i}@example.com", "true")
    assert "email_verified" not in fast.get_user_attributes(pool, "u007")


@pytest.mark.parametrize("mark_verified", [False, True], ids=["pending", "mark-verified"])
def test_verification_before_update_holds_the_value_unless_marked_verified(
    fast: Any, make_pool: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    mark_verified: bool,
) -> None:
    # GIVEN a pool that requires verification before an email update
    pool = make_pool(users=old_emails(4), auto_verified=["email"],
                     require_verification_before_update=["email"])
    source = email_change(tmp_path / "in.csv", 4)
    flags = ["--mark-verified"] if mark_verified else []

    # WHEN it runs dry, then for real
    run_cli(source, pool, fast, tmp_path / "dry.csv", "--dry-run", *flags)
    err = capsys.readouterr().err
    code = run_cli(source, pool, fast, tmp_path / "real.csv", *flags)

    # THEN the call succeeds either way; without --mark-verified the old email stays (pending),
    # as planned; with it the new one applies at once
    assert code == 0
    dry = json.loads((tmp_path / "dry.csv.summary.json").read_text())
    stats = fast.stats()
    stored = fast.get_user_attributes(pool, "u001")
    if mark_verified:
        assert stored["email"] == "new1@example.com"
        assert dry["pending_verification"] == 0 and "pending:" not in err
        assert stats["pending_verification"] == 0
    else:
        assert stored["email"] == "old1@example.com"
        assert dry["pending_verification"] == 4 and re.search(r"^pending:\s+4 ", err, re.M)
        assert stats["pending_verification"] == 4


def test_dry_run_message_count_with_skip_unchanged(
    fast: Any, make_pool: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN 6 rows of which only 2 change the email (4 hold the current one)
    pool = make_pool(users=old_emails(6), auto_verified=["email"])
    rows = [[f"u{i:03d}", f"new{i}@example.com" if i <= 2 else f"old{i}@example.com"]
            for i in range(1, 7)]
    source = write_csv(tmp_path / "in.csv", ["username", "email"], rows)

    # WHEN it runs dry and for real with --skip-unchanged
    run_cli(source, pool, fast, tmp_path / "dry.csv", "--dry-run", "--skip-unchanged")
    err = capsys.readouterr().err
    code = run_cli(source, pool, fast, tmp_path / "real.csv", "--skip-unchanged")

    # THEN the plan announced the messages that were sent, not more
    assert code == 0
    assert fast.stats()["messages"]["email"] == 2
    assert planned_messages(err) == 2


# -- 5. dry run ------------------------------------------------------------------------------


def test_dry_run_writes_the_plan_and_no_update(fast: Any, make_pool: Any, tmp_path: Path) -> None:
    # GIVEN 3 good rows and 1 bad one
    pool = make_pool(users=seeded(4))
    source = write_csv(tmp_path / "in.csv", ["username", "tier", "level"],
                       [["u001", "gold", "3"], ["u002", "gold", "11"], ["u003", "gold", ""],
                        ["u004", "", "4"]])
    report = tmp_path / "out.csv"

    # WHEN it runs with --dry-run
    code = run_cli(source, pool, fast, report, "--dry-run")

    # THEN no write call, the report holds the planned outcome of each row, nothing changed
    assert calls(fast) == 0 and calls(fast, "AdminDeleteUserAttributes") == 0
    assert code == 1
    rows = report_rows(report)
    assert {n: (r["username"], r["status"], r["error_code"]) for n, r in rows.items()} == {
        1: ("u001", "updated", ""), 2: ("u002", "invalid", "InvalidValue"),
        3: ("u003", "updated", ""), 4: ("u004", "updated", ""),
    }
    assert all(r["attempts"] == "0" for r in rows.values())
    assert "custom:tier" not in fast.get_user_attributes(pool, "u001")
    summary = json.loads((tmp_path / "out.csv.summary.json").read_text())
    assert summary["dry_run"] is True and summary["to_apply"] == 3


def test_dry_run_agrees_with_the_real_run_on_the_demo_data(
    fast: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN the demo pool and job (as `make demo` sets them up)
    pool = make_pool(users=seed_rows(ROOT / "sample_data" / "seed_users.csv"),
                     auto_verified=["email"])
    job = ["--job", str(ROOT / "jobs" / "demo.toml"), "--user-pool-id", pool,
           "--endpoint-url", fast.endpoint_url, "--rate", "500", "--quiet", "--yes"]

    # WHEN it runs dry, then for real
    dry_code = main(["run", *job, "--report", str(tmp_path / "dry.csv"), "--dry-run"])
    assert calls(fast) == 0
    code = main(["run", *job, "--report", str(tmp_path / "real.csv")])

    # THEN both report every row; they agree on each row's status (and the invalid rows' code)
    dry, real = report_rows(tmp_path / "dry.csv"), report_rows(tmp_path / "real.csv")
    assert (dry_code, code) == (1, 1)
    assert sorted(dry) == sorted(real) == list(range(1, 307))

    def outcome(r: dict[str, str]) -> tuple[str, str, str]:
        return r["username"], r["status"], r["error_code"] if r["status"] == "invalid" else ""

    differ = {n: (outcome(dry[n]), outcome(real[n])) for n in dry if outcome(dry[n]) !=
              outcome(real[n])}
    # AND the one exception is the row only Cognito can judge: user9999 does not exist
    assert differ == {18: (("user9999", "updated", ""), ("user9999", "failed", ""))}
    assert real[18]["error_code"] == "UserNotFoundException"
    assert sum(r["status"] == "invalid" for r in dry.values()) == 6


# -- 6. confirmation -------------------------------------------------------------------------


def config_for(**settings: Any) -> Any:
    return build_config(None, {"input": "in.csv", "user_pool_id": "us-east-1_AbC123", **settings})


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, True),
        ({"endpoint_url": "https://cognito-idp.us-east-1.amazonaws.com"}, True),
        ({"endpoint_url": "http://localhost.localdomain:1"}, True),
        ({"endpoint_url": "http://10.0.0.5:9229"}, True),
        ({"confirm": False}, False),
        ({"endpoint_url": "http://127.0.0.1:5000"}, True),
        ({"endpoint_url": "http://localhost:4566"}, True),
        ({"endpoint_url": "http://127.0.0.1:5000", "emulator": True}, False),
        ({"dry_run": True}, False),
    ],
    ids=["real-pool", "aws-endpoint", "not-localhost", "private-ip", "confirm-false",
         "loopback-not-emulator", "localhost-not-emulator", "emulator", "dry-run"],
)
def test_needs_confirmation(settings: dict[str, Any], expected: bool) -> None:
    # GIVEN a job's settings (and whether its endpoint answers as the emulator)
    emulator = settings.pop("emulator", False)
    # WHEN asked / THEN only a write to a real pool asks first: any loopback address may be a
    # tunnel to one, so only an endpoint that identifies as the emulator is not asked about
    answer = needs_confirmation(config_for(**settings), is_emulator=lambda url: emulator)
    assert answer is expected


def plan() -> PlanSummary:
    return PlanSummary(pool_id="us-east-1_AbC123", pool_name="prod", region="us-east-1",
                       endpoint="", rows=10, to_apply=10, messages={"email": 3})


def test_ask_refuses_without_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN stdin that is not a terminal (and would answer "y" if read)
    stdin = io.StringIO("y\n")
    monkeypatch.setattr(sys, "stdin", stdin)

    # WHEN the CLI asks
    with pytest.raises(BatchError) as refused:
        cli._ask(plan())

    # THEN it refuses, naming --yes, after showing the plan; the answer was never read
    assert "--yes" in str(refused.value)
    assert stdin.tell() == 0
    err = capsys.readouterr().err
    assert "us-east-1_AbC123" in err and "3 email verification messages" in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "expected"),
                         [("y\n", True), ("YES\n", True), ("n\n", False), ("\n", False),
                          ("", False)])
def test_ask_takes_the_answer_from_a_terminal(
    monkeypatch: pytest.MonkeyPatch, answer: str, expected: bool
) -> None:
    # GIVEN a terminal that answers / WHEN asked / THEN only y or yes proceeds
    monkeypatch.setattr(sys, "stdin", _Terminal(answer))
    assert cli._ask(plan()) is expected


@pytest.mark.parametrize("who", ["no-terminal", "declined"])
def test_confirmation_refused_writes_nothing(
    fast: Any, make_pool: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, who: str
) -> None:
    # GIVEN a job on the emulator that asks first (as a real pool would), 2 email changes
    pool = make_pool(users=old_emails(3), auto_verified=["email"])
    source = email_change(tmp_path / "in.csv", 2, unchanged=1)
    report = tmp_path / "out.csv"
    config = build_config(None, {"input": str(source), "user_pool_id": pool, "rate": "500",
                                 "endpoint_url": fast.endpoint_url, "report": str(report),
                                 "quiet": True})
    shown: list[PlanSummary] = []

    def decline(summary: PlanSummary) -> bool:
        shown.append(summary)
        return False

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    confirm: Callable[[PlanSummary], bool] = cli._ask if who == "no-terminal" else decline

    # WHEN it runs
    with pytest.raises(BatchError) as stopped:
        Job(config, confirm=confirm, stream=io.StringIO()).run()

    # THEN it stopped before the first write, and nothing was written
    assert calls(fast) == 0
    assert not report.exists()
    assert fast.get_user_attributes(pool, "u001")["email"] == "old1@example.com"
    if who == "declined":
        assert isinstance(stopped.value, UsageError)
        [summary] = shown
        assert (summary.rows, summary.to_apply, summary.messages) == (3, 3, {"email": 2})
    else:
        assert "--yes" in str(stopped.value)


# -- 7. malformed inputs ---------------------------------------------------------------------


def _parquet(table: pa.Table) -> Callable[[Path], bytes]:
    def make(tmp: Path) -> bytes:
        path = tmp / "made.parquet"
        pq.write_table(table, path)
        return path.read_bytes()

    return make


def _text(text: str, *, bom: bool = False) -> Callable[[Path], bytes]:
    return lambda tmp: (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")


QUOTED = ('username,department,tier\n'
          'u001,Sales,gold\n'
          '\n'
          'u002,"Sales, EMEA\nfloor 2, ""north""",gold\n'
          'u003,"R&D",gold\n'
          'u004,Sales,this-tier-is-far-too-long\n'
          'u005,Sales,gold\n')
SEMICOLON = "username;department;tier\nu001;Sales, EMEA;semi-gold\nu002;R&D;semi\n"
NESTED_LIST = pa.table({"username": ["u001"], "tags": pa.array([["a", "b"]])})
NESTED_STRUCT = pa.table(
    {"username": ["u001"], "address": pa.array([{"street": "1 Main St", "zip": "02134"}])}
)
BINARY = pa.table({"username": ["u001"], "photo": pa.array([b"\x89PNG"], type=pa.binary())})
GOOD_PARQUET = pa.table({"username": ["u001", "u002"], "tier": ["pq-gold", "pq-silver"]})


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], bytes]
    exit: int
    errors: tuple[str, ...] = ()  # fragments of the one error line (exit 2)
    rows: dict[int, tuple[str, str, str]] = field(default_factory=dict)  # row -> user, status, code
    stored: dict[str, dict[str, str]] = field(default_factory=dict)
    args: tuple[str, ...] = ()


CORPUS = [
    Case("empty.csv", _text(""), 2, ("empty.csv", "empty")),
    Case("header-only.csv", _text("username,tier\n"), 0),
    Case("no-key.csv", _text("user,tier\nu001,gold\n"), 2, ("no-key.csv", "'username'")),
    Case("dup-header.csv", _text("username,tier,tier\nu001,gold,silver\n"), 2,
         ("dup-header.csv", "duplicate", "columns 2 and 3")),
    Case("not-utf8.csv", lambda tmp: b"username,tier\nu001,gold\nu002,gold\nu003,\xff\xfe\n", 2,
         ("not-utf8.csv", "not UTF-8")),
    Case("ragged.csv",
         _text("username,department,tier\nu001,Sales,gold\nu002,Sales,gold,extra\n"
               "u003,Sales,gold\nu004,Sales\nu005,Sales,gold\n"), 1,
         # a ragged row's fields cannot be matched to columns: no username is guessed
         rows={1: ("u001", "updated", ""), 2: ("", "invalid", "MalformedRow"),
               3: ("u003", "updated", ""), 4: ("", "invalid", "MalformedRow"),
               5: ("u005", "updated", "")}),
    Case("long-value.csv", _text("username,given_name\nu001," + "x" * 3000 + "\nu002,Ada\n"), 1,
         rows={1: ("u001", "invalid", "InvalidValue"), 2: ("u002", "updated", "")}),
    Case("nested-list.parquet", _parquet(NESTED_LIST), 2, ("nested-list.parquet", "'tags'")),
    Case("nested-struct.parquet", _parquet(NESTED_STRUCT), 2,
         ("nested-struct.parquet", "'address'")),
    Case("binary.parquet", _parquet(BINARY), 2, ("binary.parquet", "'photo'")),
    Case("parquet-named.csv", _parquet(GOOD_PARQUET), 2, ("parquet-named.csv", "--format parquet")),
    Case("csv-named.parquet", _text("username,tier\nu001,gold\n"), 2,
         ("csv-named.parquet", "Parquet")),
    Case("good.parquet", _parquet(GOOD_PARQUET), 0,
         rows={1: ("u001", "updated", ""), 2: ("u002", "updated", "")},
         stored={"u002": {"custom:tier": "pq-silver"}}),
    Case("bom.csv", _text("username,tier\nu001,bom-gold\nu002,bom-silver\n", bom=True), 0,
         rows={1: ("u001", "updated", ""), 2: ("u002", "updated", "")},
         stored={"u001": {"custom:tier": "bom-gold"}}),
    Case("semicolon.csv", _text(SEMICOLON), 0, args=("--delimiter", ";"),
         rows={1: ("u001", "updated", ""), 2: ("u002", "updated", "")},
         stored={"u001": {"custom:department": "Sales, EMEA", "custom:tier": "semi-gold"}}),
    Case("quoted.csv", _text(QUOTED), 1,
         rows={1: ("u001", "updated", ""), 2: ("u002", "updated", ""),
               3: ("u003", "updated", ""), 4: ("u004", "invalid", "InvalidValue"),
               5: ("u005", "updated", "")},
         stored={"u002": {"custom:department": 'Sales, EMEA\nfloor 2, "north"'}}),
]


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_malformed_input_corpus(
    fast: Any, shared_pool: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: Case
) -> None:
    # GIVEN a pool whose users exist, and the input file
    pool = shared_pool
    source = tmp_path / case.name
    source.write_bytes(case.make(tmp_path))
    report = tmp_path / "out.csv"

    # WHEN it runs through the CLI
    code = run_cli(source, pool, fast, report, *case.args)

    # THEN the documented exit code, never a traceback
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code == case.exit, err
    if case.exit == 2:
        # one line naming the file (and row / column); the pool was never touched
        line = error_line(err)
        for fragment in case.errors:
            assert fragment in line
        assert fast.stats()["operations"] == {}
        assert not report.exists()
        return
    assert err == ""
    rows = report_rows(report)
    got = {n: (r["username"], r["status"], r["error_code"]) for n, r in rows.items()}
    assert got == case.rows
    if not case.rows:
        assert report.read_text(encoding="utf-8").splitlines()[0].startswith("row,username")
        assert len(report.read_text(encoding="utf-8").splitlines()) == 1
    for user, attributes in case.stored.items():
        stored = fast.get_user_attributes(pool, user)
        assert {k: stored.get(k) for k in attributes} == attributes
    updated = sum(1 for r in rows.values() if r["status"] == "updated")
    assert calls(fast) == updated


def test_non_utf8_error_names_its_row_and_column(
    fast: Any, shared_pool: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a file whose data row 3 holds a byte that is not UTF-8, in its second column
    source = tmp_path / "bad.csv"
    source.write_bytes(b"username,tier\nu001,gold\nu002,gold\nu003,\xff\xfe\nu004,gold\n")

    # WHEN it runs
    code = run_cli(source, shared_pool, fast, tmp_path / "out.csv")

    # THEN the one error line names the file, row 3 and the column (by name or position)
    line = error_line(capsys.readouterr().err)
    assert code == 2
    assert "bad.csv, row 3" in line
    assert "'tier'" in line or "field 2" in line
    assert fast.stats()["operations"] == {}
