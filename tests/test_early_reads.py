"""The first rows' users read beside the start's calls (``commands.reads.ReadCheck``): their
answers are the lookup's, once, and the permission check still stops the run."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from batch.commands.reads import EARLY_READS, ReadCheck, _live
from batch.config import JobConfig
from batch.errors import FatalError, RowError
from batch.pace.pacer import event_waiter
from batch.pace.retrying import Cancelled, Retrier, RetryPolicy
from batch.plan.lookup import PROBE_USERNAME


class FakeReads:
    """AdminGetUser answered from a dict; ``refuse`` turns every read into AccessDenied."""

    def __init__(self, users: dict[str, dict[str, str]], refuse: bool = False) -> None:
        self.users, self.refuse = users, refuse
        self.asked: list[str] = []
        self.lock = threading.Lock()

    def get_user(self, pool: str, key: str) -> dict[str, str]:
        with self.lock:
            self.asked.append(key)
        if self.refuse:
            raise FatalError("AccessDeniedException", "not allowed")
        if key not in self.users:

            raise RowError("UserNotFoundException", "no such user")
        return self.users[key]

    def list_users_page(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no paging here")


@dataclass
class FakeJob:
    gateway: FakeReads
    config: JobConfig = field(default_factory=lambda: JobConfig(get_rate=10_000.0))
    needs_lookup: bool = False
    records_undo: bool = True
    read_check: ReadCheck = field(default_factory=ReadCheck)


def _users(n: int) -> dict[str, dict[str, str]]:
    return {f"u{i}": {"Username": f"u{i}", "email": f"u{i}@example.com"} for i in range(n)}


def _lookup(job: FakeJob):  # the lookup ``open_reads`` makes for a live run
    wait = event_waiter(threading.Event())
    return _live(job, Retrier(RetryPolicy(max_attempts=1), wait=wait), wait,  # type: ignore[arg-type]
                 check=False, early=job.read_check)


def test_first_rows_read_at_the_start_are_not_read_again() -> None:
    job = FakeJob(FakeReads(_users(5)))
    job.read_check.run(job, threading.Event(), ["u0", "u1", "nobody", "u0"])  # type: ignore[arg-type]
    assert job.read_check.passed()
    live = _lookup(job)
    assert live.find("u0") == [_users(5)["u0"]]
    assert live.find("nobody") == []
    assert live.find("u1") == [_users(5)["u1"]]
    # answered from the start's reads, not read again
    assert sorted(job.gateway.asked) == sorted([PROBE_USERNAME, "u0", "u1", "nobody"])
    assert live.find("u0") == [_users(5)["u0"]]  # once: a second row with the key reads again
    assert job.gateway.asked[-1] == "u0"
    assert live.reads == 4  # u0, u1, nobody at the start, u0 again (the check: ``passed``)


def test_at_most_a_second_of_reads_at_the_start() -> None:
    job = FakeJob(FakeReads(_users(EARLY_READS + 50)))
    job.read_check.run(job, threading.Event(), [f"u{i}" for i in range(EARLY_READS + 50)])  # type: ignore[arg-type]
    for answer in job.read_check.early.values():
        answer.result()
    assert len(job.gateway.asked) == EARLY_READS + 1


def test_a_refused_read_is_still_held_for_the_lookup() -> None:
    job = FakeJob(FakeReads(_users(3), refuse=True))
    job.read_check.run(job, threading.Event(), ["u0", "u1"])  # type: ignore[arg-type]
    with pytest.raises(FatalError):
        job.read_check.passed()
    live = _lookup(job)
    with pytest.raises(FatalError):  # a refused early read is read again, as any row
        live.find("u0")


def test_a_stop_during_the_start_reads_ends_them_unread() -> None:
    stop = threading.Event()
    stop.set()
    job = FakeJob(FakeReads(_users(3)))
    job.read_check.run(job, stop, ["u0", "u1"])  # type: ignore[arg-type]
    for answer in job.read_check.early.values():
        with pytest.raises(Cancelled):
            answer.result()
    assert job.gateway.asked == []


def test_the_check_times_one_answer() -> None:
    job = FakeJob(FakeReads(_users(1)))
    job.read_check.run(job, threading.Event(), [])  # type: ignore[arg-type]
    assert job.read_check.passed() and job.read_check.latency >= 0.0
    assert job.gateway.asked == [PROBE_USERNAME]


def test_no_reads_at_the_start_without_before_images() -> None:
    job = FakeJob(FakeReads(_users(3)), records_undo=False)
    job.read_check.run(job, threading.Event(), ["u0"])  # type: ignore[arg-type]
    assert job.gateway.asked == []
