"""The report's contract as a property (issue 20, item 16): whatever the input (valid rows,
invalid rows, duplicated users, users the pool lacks), the faults (5xx, dropped connections),
the workers (2 or more), before-images on or off, and where the run stops (a signal, a fatal
error, the pool deleted, the brake, or not at all), the report holds exactly one row per input
row, each naming the input's user; a row is ``failed`` or ``updated`` only if a call was made
for it, and a valid row never sent is ``skipped``.

The job runs in-process against the emulator over real HTTP. The gateway is the real one with
a spy that notes each row it sends (each row's ``custom:department`` is unique) and, at the
K-th update, stops the runner as SIGTERM does or deletes the pool.
"""

from __future__ import annotations

import io
import itertools
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import FAST, report_rows, write_csv
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from batch.cognito import CognitoGateway, ConnectionSettings
from batch.commands.run import Job
from batch.config import build_config

#: none; a signal during the K-th update; NotAuthorized after K accepted updates; the pool
#: deleted during the K-th update (its lookups and writes then fail as the issue saw).
STOPS = ("none", "signal", "fatal", "pool_deleted")
MOSTLY_VALID = ("valid",) * 5 + ("missing", "invalid", "duplicate")
HEADER = ["username", "custom:department", "custom:level"]
_names = itertools.count(1)


@dataclass(frozen=True)
class Scenario:
    kinds: tuple[str, ...]
    workers: int
    fault_rate: float
    drop_rate: float
    stop: str
    stop_at: float  # where the stop comes, as a share of the rows
    seed: int
    rate: str = "1000"  # at 40/s rows wait in the pacer when the stop comes
    before_images: bool = False  # on: each row is read (AdminGetUser) before its write


scenarios = st.builds(
    Scenario,
    kinds=st.lists(st.sampled_from(MOSTLY_VALID), min_size=1, max_size=40).map(tuple),
    workers=st.integers(2, 8),
    fault_rate=st.sampled_from([0.0, 0.1, 0.3]),
    drop_rate=st.sampled_from([0.0, 0.1]),
    stop=st.sampled_from(STOPS),
    stop_at=st.floats(0.0, 0.9),
    seed=st.integers(0, 2**16),
    rate=st.sampled_from(["1000", "40"]),
    before_images=st.booleans(),
)


class SpyGateway(CognitoGateway):
    """The real gateway; notes the row of every update it sends, and once, at the K-th
    update, runs ``at_stop``."""

    def __init__(self, settings: ConnectionSettings) -> None:
        super().__init__(settings)
        self.sent: set[str] = set()  # departments, one per row; and users read (AdminGetUser)
        self.calls = 0
        self.stop_at = 0
        self.at_stop: Callable[[], None] | None = None
        self._lock = threading.Lock()

    def update_user_attributes(
        self,
        user_pool_id: str,
        username: str,
        attributes: Sequence[tuple[str, str]],
        *,
        client_metadata: Mapping[str, str] | None = None,
    ) -> None:
        with self._lock:
            self.sent.update(v for n, v in attributes if n == "custom:department")
            self.calls += 1
            stop = None
            if self.at_stop is not None and self.calls >= self.stop_at:
                stop, self.at_stop = self.at_stop, None
        if stop is not None:
            stop()
        super().update_user_attributes(user_pool_id, username, attributes,
                                       client_metadata=client_metadata)


    def get_user(self, user_pool_id: str, username: str) -> dict[str, str]:
        with self._lock:
            self.sent.add(f"read:{username}")
        return super().get_user(user_pool_id, username)


def input_rows(kinds: Sequence[str]) -> list[list[str]]:
    """One input row per kind; the department names the row (``d<row>``), so a call is
    traced back to its row."""
    rows: list[list[str]] = []
    for number, kind in enumerate(kinds, start=1):
        username = {"valid": f"u{number:03d}", "invalid": f"u{number:03d}",
                    "missing": f"nobody{number:03d}",
                    "duplicate": rows[-1][0] if rows else f"u{number:03d}"}[kind]
        level = "99" if kind == "invalid" else "5"  # custom:level is 1..10
        rows.append([username, f"d{number}", level])
    return rows


Violation = tuple[str, int, dict[str, str]]


def violations(rows: list[list[str]], report: dict[int, dict[str, str]], sent: set[str]
               ) -> list[Violation]:
    """Every breach of the contract: (what, row, its report row). ``report_rows`` has already
    refused a row reported twice."""
    found = [("a report row for no input row", n, report[n])
             for n in sorted(set(report) - set(range(1, len(rows) + 1)))]
    for number, (username, department, _) in enumerate(rows, start=1):
        got = report.get(number)
        if got is None:
            found.append(("no report row", number, {}))
            continue
        called = department in sent or f"read:{username}" in sent  # a read is a call too
        if got["username"] != username:
            found.append(("not the input's username", number, got))
        if got["status"] in ("failed", "updated") and not called:
            found.append((f"{got['status']} without a call", number, got))
        if not called and got["status"] not in ("skipped", "invalid"):
            found.append(("never sent but not skipped", number, got))
    return found


def run_scenario(
    emulator: Any, make_pool: Any, cognito_client: Any, scenario: Scenario, folder: Path
) -> tuple[list[list[str]], dict[int, dict[str, str]], set[str]]:
    rows = input_rows(scenario.kinds)
    emulator.configure(defaults=True)
    emulator.reset()
    seeded = sorted({u for u, _, _ in rows if u.startswith("u")})
    pool = make_pool(users=[{"username": u} for u in seeded], name=f"contract-{next(_names)}")
    emulator.configure(quotas=FAST, fault_rate=scenario.fault_rate,
                       drop_rate=scenario.drop_rate, seed=scenario.seed)
    stop_at = int(scenario.stop_at * len(rows))
    if scenario.stop == "fatal":
        emulator.inject("AdminUpdateUserAttributes", after=stop_at,
                        code="NotAuthorizedException", message="token expired")
    source = write_csv(folder / "in.csv", HEADER, rows)
    report = folder / "out.csv"
    config = build_config(None, {
        "input": str(source), "user_pool_id": pool, "endpoint_url": emulator.endpoint_url,
        "report": str(report), "rate": scenario.rate, "workers": scenario.workers,
        "max_attempts": 3, "quiet": True, "confirm": False, "undo": scenario.before_images,
    })
    gateway = SpyGateway(ConnectionSettings(endpoint_url=emulator.endpoint_url,
                                            max_connections=scenario.workers + 4))
    job = Job(config, gateway=gateway, stream=io.StringIO())
    gateway.stop_at = stop_at + 1
    if scenario.stop == "signal":
        gateway.at_stop = lambda: job.runner.stop("interrupted by SIGTERM")  # type: ignore[union-attr]
    elif scenario.stop == "pool_deleted":
        gateway.at_stop = lambda: cognito_client.delete_user_pool(UserPoolId=pool)
    job.run()
    return rows, report_rows(report), gateway.sent


@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(scenario=scenarios)
@example(scenario=Scenario(kinds=("valid",) * 30, workers=4, fault_rate=0.1, drop_rate=0.0,
                           stop="signal", stop_at=0.3, seed=2))
@example(scenario=Scenario(kinds=("valid",) * 25 + ("missing", "invalid", "duplicate") * 2,
                           workers=3, fault_rate=0.0, drop_rate=0.1, stop="fatal",
                           stop_at=0.2, seed=3))
@example(scenario=Scenario(kinds=("valid",) * 40, workers=8, fault_rate=0.0, drop_rate=0.0,
                           stop="pool_deleted", stop_at=0.25, seed=4, rate="40",
                           before_images=True))
def test_every_input_row_has_one_report_row_naming_its_user(
    emulator: Any, make_pool: Any, cognito_client: Any, scenario: Scenario
) -> None:
    # GIVEN an input, faults, workers and a stop point  WHEN the job runs
    with tempfile.TemporaryDirectory() as tmp:
        rows, report, sent = run_scenario(emulator, make_pool, cognito_client, scenario,
                                          Path(tmp))
    # THEN the report keeps the contract
    assert violations(rows, report, sent) == [], scenario


STOPPED = Scenario(kinds=("valid",) * 40, workers=8, fault_rate=0.0, drop_rate=0.0,
                   stop="pool_deleted", stop_at=0.25, seed=1, rate="40", before_images=True)


@pytest.mark.parametrize("stop", ["signal", "fatal", "pool_deleted"])
def test_a_stopped_run_names_the_user_of_every_row(
    emulator: Any, make_pool: Any, cognito_client: Any, tmp_path: Path, stop: str
) -> None:
    # GIVEN a run of 40 users stopped a quarter of the way  WHEN it runs
    scenario = Scenario(**{**STOPPED.__dict__, "stop": stop})
    rows, report, sent = run_scenario(emulator, make_pool, cognito_client, scenario, tmp_path)
    # THEN every report row names its input row's user
    assert [v for v in violations(rows, report, sent) if v[0] == "not the input's username"
            ] == []


def test_a_row_never_sent_is_never_failed(
    emulator: Any, make_pool: Any, cognito_client: Any, tmp_path: Path
) -> None:
    # GIVEN a run with before-images whose pool is deleted a quarter of the way  WHEN it runs
    rows, report, sent = run_scenario(emulator, make_pool, cognito_client, STOPPED, tmp_path)
    # THEN only rows that were sent are failed
    assert [v for v in violations(rows, report, sent) if v[0] == "failed without a call"] == []
