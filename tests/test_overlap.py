"""Reads that never hold the writes below the quota (issue 22 item 3): the plan weighs the
read quotas against the write ceiling, and the snapshot fills while rows are written."""

from __future__ import annotations

import threading
from typing import Any

from batch.plan.overlap import Overlapped, plan_reads


def test_the_plan_weighs_reads_against_the_write_ceiling() -> None:
    common: dict[str, Any] = {"key": "username", "list_rate": 25.0, "get_rate": 100.0}
    # before-images at the default quota: per-row reads keep up (no wait up front)
    assert plan_reads(input_rows=6000, pool_users=6000, writes=45.0, every_row=True,
                      **common) == "live"
    # a raised quota (150/s): per-row reads at 100/s would cap the writes -> overlapped
    assert plan_reads(input_rows=6000, pool_users=6000, writes=135.0, every_row=True,
                      **common) == "overlap"
    assert plan_reads(input_rows=6000, pool_users=None, writes=150.0, every_row=True,
                      **common) == "overlap"
    # --skip-unchanged: the diff needs every row's read; the cheaper way, as before
    assert plan_reads(input_rows=600, pool_users=60_000, writes=150.0, every_row=False,
                      **common) == "live"
    # a pool far bigger than the input: paging it outlasts the writes -> live
    assert plan_reads(input_rows=1000, pool_users=10_000_000, writes=150.0, every_row=True,
                      **common) == "live"
    # --skip-unchanged under the reads' pace: the cheaper read, as before
    assert plan_reads(input_rows=6000, pool_users=6000, writes=45.0, every_row=False,
                      **common) == "snapshot"


class _Lookup:
    def __init__(self, users: dict[str, dict[str, str]]) -> None:
        self.users, self.reads, self.closed = users, 0, False

    def find(self, key: str) -> list[dict[str, str]]:
        self.reads += 1
        return [self.users[key]] if key in self.users else []

    def close(self) -> None:
        self.closed = True


def test_rows_are_read_live_until_the_snapshot_is_filled_then_from_it() -> None:
    # GIVEN a snapshot whose fill waits for a signal, and a live lookup
    snapshot, live = _Lookup({}), _Lookup({"a": {"username": "a"}, "b": {"username": "b"}})
    release, cancel = threading.Event(), threading.Event()

    def fill() -> None:
        snapshot.users["a"] = {"username": "a", "from": "snapshot"}
        release.wait(10)
        snapshot.users["b"] = {"username": "b", "from": "snapshot"}

    lookup = Overlapped(snapshot, live, fill, cancel)  # type: ignore[arg-type]
    # WHEN rows are looked up while it fills: a paged user from it, others live
    assert lookup.find("a") == [{"username": "a", "from": "snapshot"}]
    assert lookup.find("b") == [{"username": "b"}]
    assert live.reads == 1
    # ... and once it is complete, every row from it (no live read, an absent user: none)
    release.set()
    assert lookup.done.wait(10)
    assert lookup.find("b") == [{"username": "b", "from": "snapshot"}]
    assert lookup.find("zz") == [] and live.reads == 1
    lookup.close()
    assert cancel.is_set() and snapshot.closed and live.closed


def test_a_fill_that_fails_leaves_the_live_reads() -> None:
    snapshot, live = _Lookup({}), _Lookup({"a": {"username": "a"}})

    def fill() -> None:
        raise RuntimeError("ListUsers refused")

    lookup = Overlapped(snapshot, live, fill, threading.Event())  # type: ignore[arg-type]
    lookup._thread.join(10)  # noqa: SLF001 - the fill has ended
    assert lookup.find("a") == [{"username": "a"}] and snapshot.reads == 0
    lookup.close()
