"""End to end: the CLI against the emulator over real HTTP (no boto3 mocks)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import report_rows

from batch.cli import main

ROOT = Path(__file__).resolve().parent.parent


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def users(n: int, *, prefix: str = "u") -> list[dict[str, str]]:
    return [{"username": f"{prefix}{i:05d}"} for i in range(1, n + 1)]


def updates(n: int, *, prefix: str = "u", tier: str = "gold") -> list[dict[str, str]]:
    return [
        {"username": f"{prefix}{i:05d}", "tier": tier, "department": f"dept-{i % 7}"}
        for i in range(1, n + 1)
    ]


def run_cli(*args: str) -> int:
    return main(["run", *args, "--quiet", "--yes"])


def update_stats(emulator: Any) -> dict[str, int]:
    ops: dict[str, dict[str, int]] = emulator.stats()["operations"]
    return ops.get("AdminUpdateUserAttributes", {})


def test_sample_data_end_to_end(emulator: Any, make_pool: Any, tmp_path: Path) -> None:
    # GIVEN the demo pool seeded from the sample data
    from batch.commands.demo import seed_rows

    pool = make_pool(users=seed_rows(ROOT / "sample_data" / "seed_users.csv"),
                     auto_verified=["email"])
    emulator.configure(quotas={"UserUpdate": 1000})
    report = tmp_path / "demo.csv"
    # WHEN the demo job runs through the CLI
    code = main(["run", "--job", str(ROOT / "jobs" / "demo.toml"), "--user-pool-id", pool,
                 "--endpoint-url", emulator.endpoint_url, "--report", str(report),
                 "--rate", "400", "--quiet"])
    # THEN every input row has exactly one result, bad rows are reported, good rows applied
    rows = list(report_rows(report).values())
    assert code == 1
    assert sorted(int(r["row"]) for r in rows) == list(range(1, 307))
    by_status: dict[str, int] = {}
    for r in rows:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    assert by_status == {"updated": 299, "invalid": 6, "failed": 1}
    failed = [r for r in rows if r["status"] == "failed"]
    assert failed[0]["username"] == "user9999"
    assert failed[0]["error_code"] == "UserNotFoundException"
    with open(ROOT / "sample_data" / "users.csv", encoding="utf-8") as handle:
        first = next(csv.DictReader(handle))
    stored = emulator.get_user_attributes(pool, first["username"])
    assert stored["custom:department"] == first["department"]
    assert stored["custom:tier"] == first["tier"]
    summary = json.loads((tmp_path / "demo.csv.summary.json").read_text())
    assert summary["counts"]["updated"] == 299
    assert summary["calls"] == update_stats(emulator)["calls"]


def test_throttling_at_a_low_quota_ends_with_every_row_updated(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN a quota of 10 updates/s the job cannot read, and a client told to send 40/s
    pool = make_pool(users=users(40))
    emulator.configure(quotas={"UserUpdate": 10}, burst_seconds=0.2, provisioned_limit="unknown")
    source = write_csv(tmp_path / "in.csv", updates(40))
    report = tmp_path / "out.csv"
    # WHEN it runs
    code = run_cli(str(source), "--user-pool-id", pool, "--endpoint-url", emulator.endpoint_url,
                   "--report", str(report), "--rate", "40", "--max-attempts", "20")
    # THEN the server throttled, the client retried, and every row ended updated
    stats = update_stats(emulator)
    assert stats["throttled"] > 0
    rows = list(report_rows(report).values())
    assert code == 0
    assert len(rows) == 40 and {r["status"] for r in rows} == {"updated"}
    assert sum(int(r["attempts"]) for r in rows) == stats["calls"]
    summary = json.loads((tmp_path / "out.csv.summary.json").read_text())
    assert summary["throttles"] == stats["throttled"]


def test_injected_faults_and_drops_are_retried(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN 10 % HTTP 500s and 5 % dropped connections
    pool = make_pool(users=users(80))
    emulator.configure(fault_rate=0.10, drop_rate=0.05, seed=7, quotas={"UserUpdate": 1000})
    source = write_csv(tmp_path / "in.csv", updates(80))
    report = tmp_path / "out.csv"
    # WHEN it runs
    code = run_cli(str(source), "--user-pool-id", pool, "--endpoint-url", emulator.endpoint_url,
                   "--report", str(report), "--rate", "400", "--max-attempts", "10")
    # THEN every row is updated exactly once in the report, and the values are stored
    stats = update_stats(emulator)
    assert stats["faults"] > 0 and stats["dropped"] > 0
    rows = list(report_rows(report).values())
    assert code == 0
    assert sorted(int(r["row"]) for r in rows) == list(range(1, 81))
    assert {r["status"] for r in rows} == {"updated"}
    assert any(int(r["attempts"]) > 1 for r in rows)
    assert emulator.get_user_attributes(pool, "u00080")["custom:tier"] == "gold"


def test_fatal_error_mid_run_stops_and_reports_every_row(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN credentials that stop working after 30 updates
    pool = make_pool(users=users(200))
    emulator.configure(quotas={"UserUpdate": 1000}, latency_ms=5)
    emulator.inject("AdminUpdateUserAttributes", after=30, code="NotAuthorizedException",
                    message="The security token included in the request is expired")
    source = write_csv(tmp_path / "in.csv", updates(200))
    report = tmp_path / "out.csv"
    # WHEN it runs
    code = run_cli(str(source), "--user-pool-id", pool, "--endpoint-url", emulator.endpoint_url,
                   "--report", str(report), "--rate", "200", "--workers", "8")
    # THEN exit 2, every row is in the report once, the rest skipped with the reason
    rows = list(report_rows(report).values())
    assert code == 2
    assert sorted(int(r["row"]) for r in rows) == list(range(1, 201))
    statuses = [r["status"] for r in rows]
    assert statuses.count("updated") == 30
    assert statuses.count("failed") >= 1
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert len(skipped) >= 150
    assert all("NotAuthorizedException" in r["error_message"] for r in skipped)
    # no call was started after the stop beyond those already in flight
    assert update_stats(emulator)["calls"] <= 30 + 8


def test_done_when_quota_50_with_1pc_faults_1000_rows(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN a quota of 50/s and 1 % injected HTTP 500s
    pool = make_pool(users=users(1000))
    emulator.configure(quotas={"UserUpdate": 50}, fault_rate=0.01, seed=3)
    source = write_csv(tmp_path / "in.csv", updates(1000))
    report = tmp_path / "out.csv"
    # WHEN 1,000 rows run at 50/s
    code = run_cli(str(source), "--user-pool-id", pool, "--endpoint-url", emulator.endpoint_url,
                   "--report", str(report), "--rate", "50")
    # THEN every row is updated, the report holds exactly 1,000 rows, none twice
    rows = list(report_rows(report).values())
    assert code == 0
    assert len(rows) == 1000
    assert sorted(int(r["row"]) for r in rows) == list(range(1, 1001))
    assert {r["status"] for r in rows} == {"updated"}


def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a file that is not UTF-8
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"username,tier\nu1,gold\nu2,\xff\xfe\n")
    # WHEN it runs
    code = run_cli(str(bad), "--user-pool-id", "us-east-1_x",
                   "--endpoint-url", "http://127.0.0.1:9")
    # THEN one line names the file and row, exit 2, no traceback
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert "bad.csv" in err and "not UTF-8" in err
