"""Lookups fail like writes (issue 20 item 9). End to end against the emulator, which refuses
or throttles a named operation (``inject``).

1. Under a policy without AdminGetUser, a run with before-images stops before its first
   write, in one line naming the permission; the same for ListUsers when the pool is paged.
   -> test_a_refused_admin_get_user_stops_before_any_write,
      test_a_refused_list_users_stops_naming_it
2. A read that gave up on throttles is ``failed`` with Cognito's code, which the brake does
   not count (``--max-failures 0`` would stop at the first row failure).
   -> test_a_throttled_read_is_not_a_row_failure
3. A read cancelled by a stop is ``skipped`` (Stopped), never ``failed,Cancelled``.
   -> test_a_cancelled_read_is_skipped
4. SIGTERM or SIGINT while the pool is read (before the first write) exits 143/130, not 2,
   so a scheduler retries the job (issue 20 item 10).
   -> test_a_signal_while_the_pool_is_read_exits_with_the_signals_code[SIGTERM|SIGINT]
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from helpers import FAST, write_csv

from batch.cli import main
from batch.models import RowResult, Status, UserUpdate
from batch.pace.retrying import Cancelled
from batch.plan.lookup import Resolver


def setup(emulator: Any, make_pool: Any, tmp_path: Path, n: int = 6) -> tuple[str, Path]:
    emulator.configure(quotas=FAST)
    pool = make_pool(users=[{"username": f"u{i:03d}", "custom:tier": "a"}
                            for i in range(1, n + 1)])
    source = write_csv(tmp_path / "in.csv", ["username", "tier"],
                       [[f"u{i:03d}", "b"] for i in range(1, n + 1)])
    return pool, source


def run(source: Path, pool: str, emulator: Any, report: Path, *extra: str) -> int:
    return main(["run", str(source), "--user-pool-id", pool, "--endpoint-url",
                 emulator.endpoint_url, "--report", str(report), "--yes", "--quiet",
                 *extra])


def accepted(emulator: Any, operation: str = "AdminUpdateUserAttributes") -> int:
    return int(emulator.stats()["operations"].get(operation, {}).get("accepted", 0))


def test_a_refused_admin_get_user_stops_before_any_write(
    emulator: Any, make_pool: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN before-images (read one user at a time) and AdminGetUser denied
    pool, source = setup(emulator, make_pool, tmp_path)
    emulator.inject("AdminGetUser", code="AccessDeniedException", message="not allowed")
    # WHEN it runs
    code = run(source, pool, emulator, tmp_path / "out.csv", "--undo", "--rate", "10")
    # THEN exit 2, one line naming the permission and the way out, and no write
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "cognito-idp:AdminGetUser" in err[0] and "--no-undo" in err[0]
    assert accepted(emulator) == 0


def test_a_refused_list_users_stops_naming_it(
    emulator: Any, make_pool: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN --skip-unchanged over most of the pool (a snapshot: ListUsers) and ListUsers denied
    pool, source = setup(emulator, make_pool, tmp_path)
    emulator.inject("ListUsers", code="AccessDeniedException", message="not allowed")
    # WHEN it runs, THEN exit 2 naming cognito-idp:ListUsers, no write
    code = run(source, pool, emulator, tmp_path / "out.csv", "--skip-unchanged", "--rate", "500")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cognito-idp:ListUsers" in err[0], err
    assert accepted(emulator) == 0


def test_a_throttled_read_is_not_a_row_failure(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN every AdminGetUser throttled, two attempts a call, and a brake at the first failure
    pool, source = setup(emulator, make_pool, tmp_path, n=4)
    emulator.inject("AdminGetUser", code="TooManyRequestsException", message="slow down")
    report = tmp_path / "out.csv"
    # WHEN it runs
    code = run(source, pool, emulator, report, "--undo", "--rate", "10", "--max-attempts", "2",
               "--max-failures", "0")
    # THEN each row failed with Cognito's throttle code, and the brake never tripped (exit 1)
    with open(report, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["status"], r["error_code"]) for r in rows} == {
        ("failed", "TooManyRequestsException")}
    assert len(rows) == 4 and code == 1
    assert accepted(emulator) == 0


class Stopping:
    reads = 0

    def find(self, key: str) -> list[dict[str, str]]:
        raise Cancelled("interrupted by SIGTERM")

    def close(self) -> None:
        pass


def test_a_cancelled_read_is_skipped() -> None:
    # GIVEN a lookup whose read is cancelled (the job is stopping)
    resolver = Resolver(Stopping(), "username", skip_unchanged=True, mark_verified=False)
    # WHEN a row is resolved, THEN it is skipped, Stopped, with the reason
    result = resolver(UserUpdate(7, "u007", (("custom:tier", "b"),), ()))
    assert result == RowResult(7, "u007", Status.SKIPPED, error_code="Stopped",
                               error_message="interrupted by SIGTERM")


@pytest.mark.parametrize(("signum", "expected"), [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_while_the_pool_is_read_exits_with_the_signals_code(
    emulator: Any, make_pool: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], signum: str, expected: int,
) -> None:
    # GIVEN --skip-unchanged over a pool of several pages (a ListUsers snapshot), and the
    # signal arriving as the first page is read
    import os
    import signal

    from batch.cognito import CognitoGateway

    pool, source = setup(emulator, make_pool, tmp_path, n=150)
    real = CognitoGateway.list_users_page

    def page(self: CognitoGateway, *args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(CognitoGateway, "list_users_page", real)
        os.kill(os.getpid(), getattr(signal, signum))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(CognitoGateway, "list_users_page", page)
    # WHEN it runs
    code = run(source, pool, emulator, tmp_path / "out.csv", "--skip-unchanged", "--rate",
               "500")
    # THEN it exits with the signal's code, says nothing was written, and wrote nothing
    assert code == expected, capsys.readouterr().err
    assert "nothing was written" in capsys.readouterr().err
    assert accepted(emulator) == 0
    assert not (tmp_path / "out.csv.journal").exists()


def test_a_paced_read_after_a_stop_is_never_sent_even_with_no_wait() -> None:
    # GIVEN a read pacer with room to spare (no slot ever waits) and a stopped job
    import threading

    from batch.pace.pacer import Pacer, event_waiter
    from batch.pace.retrying import Cancelled, Retrier, RetryPolicy
    from batch.plan.lookup import PacedCall

    stop = threading.Event()
    wait = event_waiter(stop)
    paced = PacedCall(Pacer(1_000_000.0), Retrier(RetryPolicy(max_attempts=1), wait=wait), wait)
    sent: list[int] = []
    assert paced(lambda: sent.append(1) or 1) == 1
    stop.set()
    # WHEN another read is asked for THEN it is cancelled, not sent
    with pytest.raises(Cancelled):
        paced(lambda: sent.append(2) or 2)
    assert sent == [1]


def test_a_refused_admin_get_user_does_not_stop_a_run_that_pages_the_pool(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN --skip-unchanged over most of the pool (a snapshot: ListUsers only) and AdminGetUser
    # denied: the read check asked at the start (before-images alone) must not reach a diff
    # that pages the pool
    pool, source = setup(emulator, make_pool, tmp_path)
    emulator.inject("AdminGetUser", code="AccessDeniedException", message="not allowed")
    # WHEN it runs THEN it writes every row (exit 0)
    code = run(source, pool, emulator, tmp_path / "out.csv", "--skip-unchanged", "--rate", "500")
    assert code == 0 and accepted(emulator) == 6
