"""The snapshot paged in segments side by side (issue 22 items 2-3): at 1 s an answer, pages
read one after another kept 60 users a second, far behind writes at 150/s, and every row the
snapshot had not reached was read on its own at ~100/s, which capped the writes (0.6·Q).
Also: the calls before the first write side by side (quotas, the pool's description, the read
permission check)."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest
from helpers import FAST
from test_delta import calls, pool_users, real_gateway

from batch.commands.reads import side_by_side
from batch.errors import CognitoError
from batch.inputs.sample import KeySample
from batch.inputs.scan import scan_column
from batch.pace.pacer import Pacer, event_waiter
from batch.pace.quota import read_quotas
from batch.pace.retrying import Retrier, RetryPolicy
from batch.plan.lookup import PacedCall, PoolSnapshot
from batch.plan.overlap import Overlapped
from batch.plan.segments import filter_for, prefixes

NAMES = [f"user{i:06d}" for i in range(6000)]


def test_the_sample_spans_the_whole_input_within_its_bound() -> None:
    sample = KeySample(size=100)
    assert list(sample.watch(iter(NAMES))) == NAMES  # the values pass unchanged
    assert 100 <= len(sample.keys) < 200
    assert sample.keys[0] < "user000100" and sample.keys[-1] > "user005800"  # end to end
    assert sample.keys == sorted(sample.keys)  # in input order, evenly strided
    assert list(sample.watch(iter(["x"]))) == ["x"] and "x" not in sample.keys  # 2nd pass


def test_prefixes_are_disjoint_and_cover_the_sample_in_about_equal_groups() -> None:
    found = prefixes(NAMES[::3], 100)
    assert 90 <= len(found) <= 110 and found == sorted(found)
    assert not any(a != b and b.startswith(a) for a in found for b in found)  # disjoint
    per = {p: sum(k.startswith(p) for k in NAMES) for p in found}
    assert sum(per.values()) == len(NAMES)  # every key under exactly one prefix
    assert max(per.values()) <= 100  # about a page or two of the input's keys each
    # too few keys, or one segment asked for: no segments (the pool in one listing)
    assert prefixes(["a"], 10) == [] and prefixes(NAMES, 1) == []
    assert filter_for('a"b\\') == 'username ^= "a\\"b\\\\"'


class _Paged:
    """ListUsers in name order with ``username ^= "p"``; ``barrier``: the calls must meet."""

    def __init__(self, names: list[str], barrier: threading.Barrier | None = None) -> None:
        self.names, self.barrier = sorted(names), barrier
        self.filters: list[str | None] = []
        self.lock = threading.Lock()

    def list_users_page(self, user_pool_id: str, *, pagination_token: str | None = None,
                        filter_expression: str | None = None,
                        limit: int = 60) -> tuple[list[dict[str, str]], str | None]:
        with self.lock:
            self.filters.append(filter_expression)
            first = len(self.filters) <= (self.barrier.parties if self.barrier else 0)
        if first and self.barrier is not None:
            self.barrier.wait()  # broken (timeout) unless the first calls are side by side
        match = re.fullmatch(r'username \^= "(.*)"', filter_expression or 'username ^= ""')
        assert match is not None
        names = [n for n in self.names if n.startswith(match.group(1))]
        start = int(pagination_token or 0)
        more = start + limit < len(names)
        return ([{"username": n} for n in names[start:start + limit]],
                str(start + limit) if more else None)

    def get_user(self, user_pool_id: str, username: str) -> dict[str, str]:
        raise AssertionError("the snapshot reads no user on its own")


def _paced(stop: threading.Event) -> PacedCall:
    return PacedCall(Pacer(10_000), Retrier(RetryPolicy(), wait=event_waiter(stop)),
                     event_waiter(stop))


def test_segments_are_paged_side_by_side_and_keep_every_input_user(tmp_path: Path) -> None:
    # GIVEN 600 users, the input's 300 of them, in six segments; the first four calls must
    # be under way at once
    pool = [f"user{i:04d}" for i in range(600)]
    wanted = pool[::2]
    gateway = _Paged(pool, threading.Barrier(4, timeout=10))
    segments = prefixes(wanted, 4)
    assert segments == [f"user0{i}" for i in range(6)]
    snapshot = PoolSnapshot(tmp_path)
    try:
        # WHEN it fills by segments, four lanes
        snapshot.fill(gateway, "pool", key="username", wanted=scan_column(wanted),
                      attributes=(), paced=_paced(threading.Event()), prefixes=segments,
                      lanes=4)
        # THEN every segment was listed by its filter, every input user kept, no other
        assert set(gateway.filters) == {filter_for(p) for p in segments}
        assert snapshot.reads == len(gateway.filters) == 12  # 100 users each: two pages
        assert snapshot.kept == len(wanted) and snapshot.find("user0001") == []
        assert snapshot.find("user0002") == [{"username": "user0002"}]
        assert not snapshot.covers_all
    finally:
        snapshot.close()


def test_a_segment_that_fails_stops_the_fill_and_is_raised(tmp_path: Path) -> None:
    class Failing(_Paged):
        def list_users_page(self, user_pool_id: str, **kw: Any) -> Any:
            if '"b' in (kw.get("filter_expression") or ""):
                raise CognitoError("InternalErrorException", "boom")
            return super().list_users_page(user_pool_id, **kw)

    snapshot = PoolSnapshot(tmp_path)
    try:
        with pytest.raises(CognitoError):
            snapshot.fill(Failing(["a1", "a2", "b1", "b2"]), "pool", key="username",
                          wanted=scan_column(["a1", "b1"]), attributes=(),
                          paced=_paced(threading.Event()), prefixes=["a", "b"], lanes=2)
    finally:
        snapshot.close()


class _Live:
    def __init__(self, users: dict[str, dict[str, str]]) -> None:
        self.users, self.reads = users, 0

    def find(self, key: str) -> list[dict[str, str]]:
        self.reads += 1
        return [self.users[key]] if key in self.users else []

    def close(self) -> None:
        pass


def test_a_user_a_segmented_snapshot_missed_is_read_on_its_own(tmp_path: Path) -> None:
    # GIVEN a snapshot paged by segments that did not cover "Zed" (another case, unsampled)
    snapshot = PoolSnapshot(tmp_path)
    live = _Live({"Zed": {"username": "Zed"}})
    fill = lambda: snapshot.fill(  # noqa: E731
        _Paged(["a1", "a2", "b1", "Zed"]), "pool", key="username",
        wanted=scan_column(["a1", "b1", "Zed"]), attributes=(),
        paced=_paced(threading.Event()), prefixes=["a", "b"])
    lookup = Overlapped(snapshot, live, fill, threading.Event())  # type: ignore[arg-type]
    assert lookup.done.wait(10)
    # WHEN the complete snapshot does not hold it THEN it is read on its own (before: [],
    # and the row was written with no before-image of a user that exists)
    assert lookup.find("Zed") == [{"username": "Zed"}] and live.reads == 1
    assert lookup.find("a1") == [{"username": "a1"}] and live.reads == 1
    lookup.close()


@pytest.fixture
def fast(emulator: Any) -> Any:
    emulator.configure(quotas=FAST)
    return emulator


def test_segments_over_http(fast: Any, make_pool: Any, tmp_path: Path) -> None:
    # The emulator (moto) answers ``username ^= "p"`` as Cognito does: the filter's syntax.
    pool = make_pool(users=pool_users(200))
    names = [f"u{i:03d}" for i in range(1, 201)]
    segments = prefixes(names, 4)
    snapshot = PoolSnapshot(tmp_path)
    try:
        snapshot.fill(real_gateway(fast), pool, key="username", wanted=scan_column(names),
                      attributes={"custom:tier"}, paced=_paced(threading.Event()),
                      prefixes=segments)
        assert snapshot.kept == 200 and calls(fast, "ListUsers") == snapshot.reads
        assert snapshot.find("u150")[0]["custom:tier"] == "silver"
    finally:
        snapshot.close()


def test_the_quotas_are_read_side_by_side() -> None:
    # Three categories at 1 s an answer: three seconds one after another, one side by side.
    barrier = threading.Barrier(3, timeout=10)

    class Reader:
        def get_provisioned_limit(self, category: str) -> tuple[int, int]:
            barrier.wait()  # broken unless the three are asked at once
            return 150, 25

    quotas = read_quotas(Reader(), ["UserUpdate", "UserRead", "UserList"])
    assert quotas.known and quotas.rates["UserRead"] == 150


def test_side_by_side_runs_at_once_and_raises_the_first_error() -> None:
    barrier = threading.Barrier(2, timeout=10)
    seen: list[str] = []

    def a() -> None:
        barrier.wait()
        raise ValueError("a")

    def b() -> None:
        barrier.wait()
        seen.append("b")
        raise KeyError("b")

    with pytest.raises(ValueError, match="a"):
        side_by_side(a, b)
    assert seen == ["b"]
