"""``export``: the pool's users in ``run``'s input format, and the round trip back through run.

End to end against the emulator over real HTTP.

1. Export, then ``run --skip-unchanged`` of the export: 0 writes, every row unchanged; values
   with commas, quotes, newlines and a leading ``=`` survive as they are.
   -> test_unedited_export_writes_nothing
2. Export, edit two cells, run: exactly those two writes.
   -> test_two_edited_cells_write_exactly_those
3. Only what run can write: no ``sub``, no immutable attribute, no ``*_verified`` flag; custom
   names without their prefix (run adds it back); ``--attributes`` and ``--filter``; a bad
   attribute is exit 2.
   -> test_columns_are_what_run_can_write, test_attributes_and_filter, test_unwritable_attribute
4. Parquet and JSONL outputs hold the same users (Parquet round-trips through run too).
   -> test_parquet_and_jsonl
5. Resumable: an export stopped after two pages continues from its checkpoint and ends with the
   same file as an uninterrupted one; a token Cognito refuses says to start over.
   -> test_export_resumes_from_its_checkpoint, test_refused_token_says_start_over
6. Never through a link: a symlink or hard link planted at ``OUT.partial`` is refused on resume
   (its target keeps every byte; the error names no journal) and replaced on a fresh start.
   -> test_a_resume_never_writes_through_a_link_at_the_partial_file,
      test_a_fresh_export_replaces_a_link_at_the_partial_file
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import FAST, report_rows

from batch.cli import main
from batch.cognito import CognitoGateway, ConnectionSettings
from batch.commands.export import Exporter, ExportSettings
from batch.errors import FatalError


def people(n: int) -> list[dict[str, str]]:
    out = []
    for i in range(1, n + 1):
        user = {"username": f"u{i:03d}", "custom:tier": ["silver", "gold", ""][i % 3],
                "custom:department": f"dept, {i % 4}", "custom:level": str(i % 10 + 1),
                "custom:employee_id": f"E{i}", "given_name": f'Ann "{i}"\nSmith'}
        if i % 2:
            user["email"] = f"u{i}@example.com"
        if i == 5:
            user["family_name"] = "=SUM(A1)"
        out.append(user)
    return out


def export(out: Path, pool: str, emulator: Any, *extra: str) -> int:
    return main(["export", str(out), "--user-pool-id", pool, "--endpoint-url",
                 emulator.endpoint_url, "--rate", "1000", "--quiet", *extra])


def run(source: Path, pool: str, emulator: Any, report: Path, *extra: str) -> int:
    return main(["run", str(source), "--user-pool-id", pool, "--endpoint-url",
                 emulator.endpoint_url, "--report", str(report), "--rate", "1000", "--yes",
                 "--quiet", "--skip-unchanged", *extra])


def update_calls(emulator: Any) -> int:
    ops = emulator.stats()["operations"]
    return int(ops.get("AdminUpdateUserAttributes", {}).get("calls", 0))


def list_calls(emulator: Any) -> int:
    return int(emulator.stats()["operations"].get("ListUsers", {}).get("calls", 0))


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def fast(emulator: Any) -> Any:
    emulator.configure(quotas=FAST)
    return emulator


def test_unedited_export_writes_nothing(fast: Any, make_pool: Any, tmp_path: Path) -> None:
    # GIVEN a pool of 130 users (three ListUsers pages) and its export
    pool = make_pool(users=people(130))
    out = tmp_path / "users.csv"
    assert export(out, pool, fast) == 0
    assert out.stat().st_mode & 0o777 == 0o600
    fast.reset()

    # WHEN the export is run back with --skip-unchanged
    report = tmp_path / "report.csv"
    code = run(out, pool, fast, report)

    # THEN nothing is written: every one of the 130 rows is unchanged
    rows = list(report_rows(report).values())
    assert code == 0
    assert update_calls(fast) == 0
    assert len(rows) == 130 and {r["status"] for r in rows} == {"unchanged"}
    # AND the odd values came through exactly
    exported = {r["username"]: r for r in read_csv(out)}
    assert exported["u005"]["family_name"] == "=SUM(A1)"
    assert exported["u007"]["given_name"] == 'Ann "7"\nSmith'
    assert exported["u002"]["tier"] == ""  # absent: an empty cell, which run leaves alone


def test_two_edited_cells_write_exactly_those(
    fast: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN an export of 70 users with two cells edited
    pool = make_pool(users=people(70))
    out = tmp_path / "users.csv"
    assert export(out, pool, fast) == 0
    rows = read_csv(out)
    by_name = {r["username"]: r for r in rows}
    by_name["u010"]["tier"] = "platinum"
    by_name["u041"]["department"] = "moved"
    edited = tmp_path / "edited.csv"
    with open(edited, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    fast.reset()

    # WHEN the edited file is run with --skip-unchanged
    report = tmp_path / "report.csv"
    code = run(edited, pool, fast, report)

    # THEN exactly the two edits are written
    assert code == 0
    assert update_calls(fast) == 2
    assert fast.get_user_attributes(pool, "u010")["custom:tier"] == "platinum"
    assert fast.get_user_attributes(pool, "u041")["custom:department"] == "moved"
    updated = {r["username"] for r in report_rows(report).values() if r["status"] == "updated"}
    assert updated == {"u010", "u041"}


def test_columns_are_what_run_can_write(fast: Any, make_pool: Any, tmp_path: Path) -> None:
    # GIVEN a pool with an immutable custom attribute (employee_id)
    pool = make_pool(users=people(3))
    out = tmp_path / "users.csv"

    # WHEN exported
    assert export(out, pool, fast) == 0

    # THEN the columns are username first, then writable attributes, custom ones bare
    with open(out, encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle))
    assert header[0] == "username"
    assert {"tier", "department", "level", "is_manager", "email", "given_name"} <= set(header)
    assert not {"sub", "employee_id", "custom:employee_id", "custom:tier"} & set(header)
    assert not {"email_verified", "phone_number_verified"} & set(header)


def test_attributes_and_filter(fast: Any, make_pool: Any, tmp_path: Path) -> None:
    # GIVEN 30 users, WHEN exported with two attributes and a username filter
    pool = make_pool(users=people(30))
    out = tmp_path / "some.csv"
    assert export(out, pool, fast, "--attributes", "tier,email", "--filter",
                  'username ^= "u00"') == 0

    # THEN only those columns, and only the matching users
    rows = read_csv(out)
    assert list(rows[0]) == ["username", "tier", "email"]
    assert sorted(r["username"] for r in rows) == [f"u00{i}" for i in range(1, 10)]
    emails = {r["username"]: r["email"] for r in rows}
    assert (emails["u001"], emails["u002"]) == ("u1@example.com", "")


def test_unwritable_attribute(
    fast: Any, make_pool: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a pool, WHEN sub is asked for, THEN exit 2 with a one-line reason, no file
    pool = make_pool(users=people(2))
    out = tmp_path / "x.csv"
    assert export(out, pool, fast, "--attributes", "tier,sub") == 2
    assert "'sub' is never writable" in capsys.readouterr().err
    assert not out.exists()


def test_parquet_and_jsonl(fast: Any, make_pool: Any, tmp_path: Path) -> None:
    # GIVEN a pool of 80 users exported as CSV, Parquet and JSONL
    import pyarrow.parquet as pq

    pool = make_pool(users=people(80))
    for suffix in ("csv", "parquet", "jsonl"):
        assert export(tmp_path / f"users.{suffix}", pool, fast) == 0
    expected = read_csv(tmp_path / "users.csv")

    # THEN the Parquet file holds the same rows, all strings
    table = pq.read_table(tmp_path / "users.parquet")
    assert table.to_pylist() == expected
    # AND the JSONL file the same users, absent attributes left out
    with open(tmp_path / "users.jsonl", encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle]
    assert lines == [{k: v for k, v in r.items() if v or k == "username"} for r in expected]

    # WHEN the Parquet export is run back, THEN nothing is written
    fast.reset()
    assert run(tmp_path / "users.parquet", pool, fast, tmp_path / "r.csv") == 0
    assert update_calls(fast) == 0


def gateway(emulator: Any) -> CognitoGateway:
    return CognitoGateway(ConnectionSettings(endpoint_url=emulator.endpoint_url,
                                             region="us-east-1"))


def test_export_resumes_from_its_checkpoint(fast: Any, make_pool: Any, tmp_path: Path) -> None:
    # GIVEN 230 users (four pages) and an export that fails after its second page
    pool = make_pool(users=people(230))
    out = tmp_path / "users.csv"
    settings = ExportSettings(user_pool_id=pool, out=out, list_rate=1000, quiet=True,
                              checkpoint_seconds=0)
    fast.inject("ListUsers", after=2, code="AccessDeniedException")
    with pytest.raises(FatalError):
        Exporter(settings, gateway(fast), stream=io.StringIO()).run()
    assert not out.exists()
    assert out.with_name("users.csv.export.json").is_file()
    fast.reset()

    # WHEN the same export is run again
    result = Exporter(settings, gateway(fast), stream=io.StringIO()).run()

    # THEN it resumed (two more pages, not four) and the file is the uninterrupted export's
    assert result.resumed and result.users == 230
    assert list_calls(fast) == 2
    whole = tmp_path / "whole.csv"
    assert export(whole, pool, fast) == 0
    assert out.read_bytes() == whole.read_bytes()
    assert not out.with_name("users.csv.export.json").exists()
    assert not out.with_name("users.csv.partial").exists()


def test_refused_token_says_start_over(
    fast: Any, make_pool: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an unfinished export whose saved token Cognito no longer accepts
    pool = make_pool(users=people(130))
    out = tmp_path / "users.csv"
    settings = ExportSettings(user_pool_id=pool, out=out, list_rate=1000, quiet=True,
                              checkpoint_seconds=0)
    fast.inject("ListUsers", after=1, code="AccessDeniedException")
    with pytest.raises(FatalError):
        Exporter(settings, gateway(fast), stream=io.StringIO()).run()
    fast.reset()
    checkpoint = out.with_name("users.csv.export.json")
    state = json.loads(checkpoint.read_text())
    checkpoint.write_text(json.dumps({**state, "token": "expired-token"}))

    # WHEN it is rerun, THEN exit 2 naming --fresh; with --fresh it completes
    assert export(out, pool, fast) == 2
    assert "--fresh" in capsys.readouterr().err
    assert export(out, pool, fast, "--fresh") == 0
    assert len(read_csv(out)) == 130


def stopped_export(fast: Any, pool: str, out: Path) -> None:
    """An export failed after its second page: a checkpoint and a partial file are left."""
    settings = ExportSettings(user_pool_id=pool, out=out, list_rate=1000, quiet=True,
                              checkpoint_seconds=0)
    fast.inject("ListUsers", after=2, code="AccessDeniedException")
    with pytest.raises(FatalError):
        Exporter(settings, gateway(fast), stream=io.StringIO()).run()
    fast.reset()


@pytest.mark.parametrize("link", ["symlink", "hard link"])
def test_a_resume_never_writes_through_a_link_at_the_partial_file(
    fast: Any, make_pool: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], link: str
) -> None:
    # GIVEN an unfinished export, and its partial file replaced by a link to another file
    pool = make_pool(users=people(230))
    out = tmp_path / "users.csv"
    stopped_export(fast, pool, out)
    partial = out.with_name("users.csv.partial")
    victim = tmp_path / "precious.csv"
    victim.write_bytes(b"x" * 37_000)
    partial.unlink()
    if link == "symlink":
        partial.symlink_to(victim)
    else:
        partial.hardlink_to(victim)
    # WHEN the same export is rerun
    code = export(out, pool, fast)
    # THEN it is refused in one line that names no journal, and the link's target is intact
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "partial" in err[0] and "journal" not in err[0]
    assert victim.read_bytes() == b"x" * 37_000
    assert not out.exists()


def test_a_fresh_export_replaces_a_link_at_the_partial_file(
    fast: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN a hard link to another file where the partial file goes, and no checkpoint
    pool = make_pool(users=people(70))
    out = tmp_path / "users.csv"
    victim = tmp_path / "precious.csv"
    victim.write_bytes(b"y" * 5000)
    out.with_name("users.csv.partial").hardlink_to(victim)
    # WHEN it exports, THEN the export is whole and the other file untouched
    assert export(out, pool, fast) == 0
    assert len(read_csv(out)) == 70
    assert victim.read_bytes() == b"y" * 5000


@pytest.mark.parametrize("edit", ["cut to the header", "negative bytes", "past the file",
                                  "users as text", "fewer users", "no token", "cut mid-line"])
def test_a_damaged_checkpoint_is_refused_naming_it(
    fast: Any, make_pool: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: str
) -> None:
    # GIVEN an unfinished export whose checkpoint was edited (review item 6)
    pool = make_pool(users=people(230))
    out = tmp_path / "users.csv"
    stopped_export(fast, pool, out)
    checkpoint = out.with_name("users.csv.export.json")
    partial = out.with_name("users.csv.partial")
    state = json.loads(checkpoint.read_text())
    header = len(partial.read_bytes().split(b"\n")[0]) + 1
    state.update({
        "cut to the header": {"bytes": header, "users": 0},
        "negative bytes": {"bytes": -7},
        "past the file": {"bytes": partial.stat().st_size + 10},
        "users as text": {"users": "120"},
        "fewer users": {"users": state["users"] - 1},
        "no token": {"token": None},
        "cut mid-line": {"bytes": state["bytes"] - 3},
    }[edit])
    checkpoint.write_text(json.dumps(state))
    # WHEN the export is rerun THEN it is refused in one line naming the checkpoint and --fresh
    code = export(out, pool, fast)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert str(checkpoint) in err[0] and "--fresh" in err[0]
    assert not out.exists()
    # ... and --fresh exports every user
    assert export(out, pool, fast, "--fresh") == 0
    assert len(read_csv(out)) == 230
