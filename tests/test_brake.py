"""The brake (``--max-failures``): a file that fails everywhere stops early, one with a few
deleted users runs to the end.

1. Every row failing (a file keyed for another pool): stops within 200 calls, exit 2, every
   row reported, the rest ``skipped`` with the reason.
   -> test_every_row_failing_stops_early
2. 5 % failing (deleted users): runs to the end, exit 1.
   -> test_five_percent_failing_runs_to_the_end
3. Only row failures count: throttles given up on and retried faults never do.
   -> test_only_row_failures_count
4. The limits: auto, N, P% (judged on at least 100 rows), none; bad values are exit 2.
   -> test_limits[...], test_bad_limit_is_a_usage_error, test_job_file_sets_the_limit
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

import pytest
from helpers import report_rows

from batch.cli import main
from batch.config import build_config
from batch.engine.brake import Brake, FailureLimit
from batch.errors import UsageError
from batch.models import RowResult, Status

FAST = {"UserUpdate": 2000, "UserRead": 2000, "UserList": 2000, "UserPoolRead": 2000}


def write_input(path: Path, usernames: list[str]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["username", "tier"])
        writer.writerows([u, "gold"] for u in usernames)
    return path


def run(source: Path, pool: str, emulator: Any, report: Path, *extra: str) -> int:
    return main(["run", str(source), "--user-pool-id", pool, "--endpoint-url",
                 emulator.endpoint_url, "--report", str(report), "--rate", "1000", "--yes",
                 "--quiet", "--no-undo", *extra])


def update_calls(emulator: Any) -> int:
    ops = emulator.stats()["operations"]
    return int(ops.get("AdminUpdateUserAttributes", {}).get("calls", 0))


def failed(code: str = "UserNotFoundException") -> RowResult:
    return RowResult(1, "u", Status.FAILED, error_code=code)


UPDATED = RowResult(1, "u", Status.UPDATED)


# -- 1, 2: end to end ------------------------------------------------------------------------


def test_every_row_failing_stops_early(emulator: Any, make_pool: Any, tmp_path: Path) -> None:
    # GIVEN a pool of UUID-named users and a file of 1,000 employee IDs (none of them users)
    pool = make_pool(users=[{"username": f"3f2a-{i}"} for i in range(5)])
    emulator.configure(quotas=FAST)
    source = write_input(tmp_path / "in.csv", [f"E{i:05d}" for i in range(1000)])
    report = tmp_path / "out.csv"

    # WHEN it runs with the default brake
    code = run(source, pool, emulator, report)

    # THEN it stops within 200 calls with exit 2, and every row is reported exactly once
    rows = list(report_rows(report).values())
    assert code == 2
    assert update_calls(emulator) <= 200
    assert sorted(int(r["row"]) for r in rows) == list(range(1, 1001))
    statuses = {r["status"] for r in rows}
    assert statuses == {"failed", "skipped"}
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert len(skipped) >= 800
    assert all("--max-failures" in r["error_message"] for r in skipped)
    summary = json.loads(Path(f"{report}.summary.json").read_text())
    assert summary["max_failures"]["tripped"] is True
    assert "--max-failures" in summary["stopped"]


def test_five_percent_failing_runs_to_the_end(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN 400 users, and a file of them where 5 % (20, scattered) were deleted since
    names = [f"u{i:04d}" for i in range(400)]
    gone = set(random.Random(7).sample(names, 20))
    pool = make_pool(users=[{"username": n} for n in names if n not in gone])
    emulator.configure(quotas=FAST)
    source = write_input(tmp_path / "in.csv", names)
    report = tmp_path / "out.csv"

    # WHEN it runs with the default brake
    code = run(source, pool, emulator, report)

    # THEN it runs to the end: 380 updated, 20 failed, exit 1
    rows = list(report_rows(report).values())
    assert code == 1
    assert sum(r["status"] == "updated" for r in rows) == 380
    assert {r["username"] for r in rows if r["status"] == "failed"} == gone
    assert update_calls(emulator) == 400


# -- 3, 4: the rules -------------------------------------------------------------------------


def test_every_row_failing_trips_at_the_51st_failure() -> None:
    # GIVEN the default brake, WHEN every row fails, THEN it trips exactly once, at row 51
    brake = Brake(FailureLimit.parse(None))
    trips = [n for n in range(1, 1001) if brake.add(failed())]
    assert trips == [51]
    assert "51 of 51 rows failed" in brake.reason


def test_five_percent_never_trips_the_default() -> None:
    # GIVEN the default brake, WHEN 100,000 rows fail at a random 5 %, THEN it never trips
    brake = Brake(FailureLimit.parse("auto"))
    rng = random.Random(1)
    assert not any(brake.add(failed() if rng.random() < 0.05 else UPDATED)
                   for _ in range(100_000))
    assert brake.failures > 4000


def test_only_row_failures_count() -> None:
    # GIVEN a brake that allows no failure at all
    brake = Brake(FailureLimit.parse("0"))

    # WHEN rows give up on throttles or faults, are invalid or skipped, THEN nothing trips
    for result in (failed("TooManyRequestsException"), failed("InternalErrorException"),
                   failed("UnexpectedLambdaException"),
                   RowResult(1, "u", Status.INVALID, error_code="InvalidValue"),
                   RowResult(1, "u", Status.SKIPPED, error_code="Stopped"), UPDATED):
        assert not brake.add(result)
    assert brake.failures == 0

    # ... and one AliasExists does
    assert brake.add(failed("AliasExistsException"))


@pytest.mark.parametrize(
    ("spec", "failures_then_ok", "trips_at"),
    [
        ("3", (10, 0), 4),  # more than 3 failures
        ("0", (1, 0), 1),
        ("10%", (20, 0), 11),  # judged on at least 100 rows: 10 of 100
        ("none", (5000, 0), None),
        ("auto", (60, 0), 51),
    ],
)
def test_limits(spec: str, failures_then_ok: tuple[int, int], trips_at: int | None) -> None:
    # GIVEN a brake with the limit, WHEN rows fail (after some good rows), THEN it trips at
    # the expected failure, or never
    brake = Brake(FailureLimit.parse(spec))
    fails, ok = failures_then_ok
    for _ in range(ok):
        assert not brake.add(UPDATED)
    tripped = [n for n in range(1, fails + 1) if brake.add(failed())]
    assert tripped == ([] if trips_at is None else [trips_at])


def test_percentage_after_good_rows_scales_with_them() -> None:
    # GIVEN 10% and 900 good rows, WHEN rows then fail, THEN it trips once failures > 10 %
    brake = Brake(FailureLimit.parse("10%"))
    for _ in range(900):
        brake.add(UPDATED)
    n = next(n for n in range(1, 500) if brake.add(failed()))
    assert n == 101  # 101 > 0.1 * 1001


@pytest.mark.parametrize("spec", ["ten", "-1", "150%", "5 rows", ""])
def test_bad_limit_is_a_usage_error(spec: str) -> None:
    with pytest.raises(UsageError, match="max-failures"):
        FailureLimit.parse(spec)


def test_job_file_sets_the_limit(tmp_path: Path) -> None:
    # GIVEN a job file with max_failures (a number in TOML), THEN it is the limit
    job = tmp_path / "j.toml"
    job.write_text('input = "in.csv"\nuser_pool_id = "us-east-1_x"\nmax_failures = 7\n')
    config = build_config(str(job), {})
    assert FailureLimit.parse(config.max_failures) == FailureLimit(7, None)
    # ... and a bad one stops the job before it starts
    job.write_text('input = "in.csv"\nuser_pool_id = "us-east-1_x"\nmax_failures = "lots"\n')
    with pytest.raises(UsageError):
        build_config(str(job), {})
