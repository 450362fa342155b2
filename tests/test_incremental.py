"""``--incremental``: only what changed since the last finished run is sent (issue 22 item 1).

End to end against the emulator over HTTP (the CLI as a subprocess where it is killed), and the
state module's diff, new state and leavers on their own.
"""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from helpers import report_rows, wait_for
from test_crash import journal_lines, start, updates_accepted

from batch.inputs.scan import key_hash, scan_column
from batch.models import UserUpdate
from batch.plan.in_doubt import HELD
from batch.record.layout import RunFiles
from batch.record.state import (
    desired_hash,
    diff,
    leavers_from_state,
    open_spill,
    read_state_info,
    write_state,
)


def write_input(path: Path, n: int, changed: frozenset[int] = frozenset(), tag: str = "a") -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["username", "tier", "department"])
        for i in range(1, n + 1):
            tier = f"{tag}{i % 13}" if i in changed else f"t{i % 13}"
            writer.writerow([f"k{i:05d}", tier, f"d{i % 17}"])
    return path


def run(source: Path, pool: str, emulator: Any, report: Path, *extra: str) -> dict[str, Any]:
    proc = start(source, pool, emulator, report, "--rate", "1000", "--incremental", *extra)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    summary: dict[str, Any] = json.loads(RunFiles(report).summary.read_text())
    return summary


def finished_journal(report: Path) -> bool:
    """The journal there is a finished run's (the last line: ``=complete``)."""
    return RunFiles(report).journal.read_bytes().endswith(b"=complete\n")


def state_of(report: Path) -> dict[str, int]:
    table = pq.read_table(RunFiles(report).state)
    return dict(zip(table.column("key").to_pylist(), table.column("state").to_pylist(),
                    strict=True))


def test_second_run_sends_only_the_changed_rows(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN a pool of 300 users, and a first --incremental run (no state yet: a full run)
    n = 300
    pool = make_pool(users=[{"username": f"k{i:05d}"} for i in range(1, n + 1)])
    emulator.configure(quotas={"UserUpdate": 1000}, latency_ms=1)
    report = tmp_path / "out.csv"
    first = run(write_input(tmp_path / "day1.csv", n), pool, emulator, report)
    assert first["counts"]["updated"] == n and first["incremental"]["full_run"]
    assert RunFiles(report).state.is_file()
    # WHEN the next day's input changes 7 rows and the run is --incremental again
    changed = frozenset({3, 50, 51, 120, 200, 299, 300})
    before = updates_accepted(emulator)
    second = run(write_input(tmp_path / "day2.csv", n, changed), pool, emulator, report)
    # THEN exactly the changed rows are written; the rest are reported unchanged, no call
    assert updates_accepted(emulator) - before == len(changed)
    assert second["counts"]["updated"] == len(changed)
    assert second["counts"]["unchanged"] == n - len(changed)
    assert second["read_calls"] == 0
    assert second["incremental"] == {**second["incremental"], "changed": 7, "full_run": False}
    rows = report_rows(report)
    assert {int(r["row"]) for r in rows.values() if r["status"] == "updated"} == changed
    # ... and the pool holds today's values
    assert emulator.get_user_attributes(pool, "k00050")["custom:tier"] == "a11"


def test_a_failed_row_is_sent_again_and_other_settings_mean_a_full_run(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN a first run where user k00004 does not exist (its row fails)
    n = 20
    pool = make_pool(users=[{"username": f"k{i:05d}"} for i in range(1, n + 1) if i != 4])
    emulator.configure(quotas={"UserUpdate": 1000}, latency_ms=1)
    report, source = tmp_path / "out.csv", write_input(tmp_path / "in.csv", n)
    proc = start(source, pool, emulator, report, "--rate", "1000", "--incremental")
    proc.communicate(timeout=60)
    assert state_of(report)["k00004"] == 0  # not applied: the next run sends it
    # WHEN the same input runs again with --incremental
    before = updates_accepted(emulator)
    proc = start(source, pool, emulator, report, "--rate", "1000", "--incremental")
    proc.communicate(timeout=60)
    # THEN only the failed row is tried again
    summary = json.loads(RunFiles(report).summary.read_text())
    assert summary["incremental"]["changed"] == 1
    assert updates_accepted(emulator) == before  # it failed again: no accepted write
    # WHEN a setting that shapes the state changes (another mapping): a full run, said once
    proc = start(source, pool, emulator, report, "--rate", "1000", "--incremental",
                 "--empty", "delete")
    proc.wait(timeout=60)
    summary = json.loads(RunFiles(report).summary.read_text())
    assert summary["incremental"]["full_run"] and summary["incremental"]["changed"] == n


def test_verify_finds_and_fixes_drift(
    emulator: Any, make_pool: Any, cognito_client: Any, tmp_path: Path
) -> None:
    # GIVEN a first run, then every user's tier changed by other means
    n = 40
    pool = make_pool(users=[{"username": f"k{i:05d}"} for i in range(1, n + 1)])
    emulator.configure(quotas={"UserUpdate": 1000}, latency_ms=1)
    report, source = tmp_path / "out.csv", write_input(tmp_path / "in.csv", n)
    run(source, pool, emulator, report)
    for i in range(1, n + 1):  # by other means: a plain call
        cognito_client.admin_update_user_attributes(
            UserPoolId=pool, Username=f"k{i:05d}",
            UserAttributes=[{"Name": "custom:tier", "Value": "drifted"}])
    # WHEN the same input runs with --incremental --verify 5
    summary = run(source, pool, emulator, report, "--verify", "5")
    # THEN 5 users are read, their drift found and fixed; the others are left to the state
    inc = summary["incremental"]
    assert (inc["verified"], inc["drift"], inc["changed"]) == (5, 5, 0)
    assert summary["counts"]["updated"] == 5
    fixed = [i for i in range(1, n + 1)
             if emulator.get_user_attributes(pool, f"k{i:05d}")["custom:tier"] != "drifted"]
    assert len(fixed) == 5


def test_kill_9_during_an_incremental_run_then_resume(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN a finished first run, and a second day where 600 of 1,000 rows changed
    n = 1000
    pool = make_pool(users=[{"username": f"k{i:05d}"} for i in range(1, n + 1)])
    emulator.configure(quotas={"UserUpdate": 1000}, latency_ms=5)
    report = tmp_path / "out.csv"
    run(write_input(tmp_path / "day1.csv", n), pool, emulator, report)
    old_state = RunFiles(report).state.read_bytes()
    changed = frozenset(range(1, n + 1, 5)) | frozenset(range(2, n + 1, 5)) \
        | frozenset(range(3, n + 1, 5))
    day2 = write_input(tmp_path / "day2.csv", n, changed, tag="b")
    before = updates_accepted(emulator)
    # WHEN the incremental run is killed with SIGKILL part way
    proc = start(day2, pool, emulator, report, "--rate", "200", "--incremental", "--workers", "4")
    assert wait_for(lambda: journal_lines(report) >= 300 and not finished_journal(report), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    # THEN the previous state stands
    assert RunFiles(report).state.read_bytes() == old_state
    # WHEN the same command runs again
    summary = run(day2, pool, emulator, report)
    # THEN every row is reported once, each changed row written exactly once (those in flight
    # at the kill were read first: holding their values, not written again), and the new
    # state matches the pool
    rows = report_rows(report)
    assert sorted(int(r["row"]) for r in rows.values()) == list(range(1, n + 1))
    held = {int(r["row"]) for r in rows.values() if r["error_message"] == HELD}
    assert {int(r["row"]) for r in rows.values() if r["status"] == "updated"} | held == changed
    assert updates_accepted(emulator) - before == len(changed)
    assert summary["resumed_rows"] > 0
    state = state_of(report)
    assert len(state) == n and 0 not in state.values()
    for i in (1, 2, 4, 5, 500, 998, 1000):
        tier = emulator.get_user_attributes(pool, f"k{i:05d}")["custom:tier"]
        assert tier == (f"b{i % 13}" if i in changed else f"t{i % 13}")
        update = UserUpdate(i, f"k{i:05d}", (("custom:tier", tier),
                                             ("custom:department", f"d{i % 17}")))
        assert state[f"k{i:05d}"] == desired_hash(update)


# -- the state module on its own ------------------------------------------------------------


def _spill(tmp_path: Path, rows: list[tuple[int, str, int]], total: int) -> Any:
    spill = open_spill(tmp_path, total)
    for row, key, wanted in rows:
        spill.add(row, key_hash(key), wanted, key)
    spill.close()
    return spill


def test_diff_state_and_leavers_in_key_ranges(tmp_path: Path, monkeypatch: Any) -> None:
    # GIVEN ranges of 64 rows (so 3,000 rows span 64 files) and a state of keys 0..2999
    monkeypatch.setattr("batch.record.state.RANGE_ROWS", 64)
    n = 3000
    spill = _spill(tmp_path, [(i + 1, f"u{i}", 1000 + i) for i in range(n)], n)
    assert spill.buckets == 64
    state = tmp_path / "s.parquet"
    write_state(spill, state, settings="x", applied=lambda rows: rows % 2 == 0)
    assert read_state_info(state) is not None and read_state_info(state).rows == n  # type: ignore[union-attr]
    # WHEN today's input drops u0..u9, changes u10..u19 and adds v0
    today = [(i + 1, f"u{i}", 1000 + i + (1 if i < 20 else 0)) for i in range(10, n)]
    today.append((n + 1, "v0", 5))
    spill2 = _spill(tmp_path, today, n + 1)
    found = diff(spill2, state, np.empty(0, np.uint64), n + 1)
    # THEN unchanged: the applied (even rows) among u20.. ; changed: the rest
    expected = {i + 1 for i in range(20, n) if (i + 1) % 2 == 0}
    assert {r for r in range(n + 2) if r in found.unchanged} == expected
    assert found.changed == len(today) - len(expected)
    # ... and the leavers are the keys gone from today's input
    scan = scan_column([k for _, k, _ in today])
    assert sorted(leavers_from_state(state, scan.hashes)) == sorted(f"u{i}" for i in range(10))


def test_after_an_undo_the_next_incremental_run_writes_again(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN an --incremental run with before-images, then its undo
    from batch.cli import main

    n = 20
    pool = make_pool(users=[{"username": f"k{i:05d}", "custom:tier": "old"}
                            for i in range(1, n + 1)])
    emulator.configure(quotas={"UserUpdate": 1000}, latency_ms=1)
    report = tmp_path / "out.csv"
    source = write_input(tmp_path / "day1.csv", n)
    run(source, pool, emulator, report, "--undo")
    assert main(["undo", str(report), "--endpoint-url", emulator.endpoint_url, "--yes",
                 "--quiet"]) == 0
    assert emulator.get_user_attributes(pool, "k00005")["custom:tier"] == "old"
    # WHEN the same input runs --incremental again (a new night: --fresh over the finished run)
    again = run(source, pool, emulator, report, "--fresh")
    # THEN the state no longer vouches for what the undo put back: every row is written
    assert again["counts"]["updated"] == n
    assert emulator.get_user_attributes(pool, "k00005")["custom:tier"] == "t5"
