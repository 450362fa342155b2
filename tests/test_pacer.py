"""The pacer and the per-user gate, on a manual clock."""

from __future__ import annotations

import threading

import pytest
from fakes import ManualClock

from batch.pace.pacer import Pacer, event_waiter
from batch.pace.user_gate import UserGate

# -- Pacer -----------------------------------------------------------------------------------


def test_pacer_hands_out_slots_one_interval_apart() -> None:
    # GIVEN a pacer at 10/s on a frozen clock
    clock = ManualClock()
    pacer = Pacer(10.0, clock=clock)

    # WHEN five callers reserve at the same instant
    waits = [pacer.reserve() for _ in range(5)]

    # THEN each waits one more interval than the one before
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_pacer_slots_for_concurrent_callers_are_distinct_and_spaced() -> None:
    # GIVEN a pacer at 20/s on a frozen clock and 16 threads released together
    clock = ManualClock()
    pacer = Pacer(20.0, clock=clock)
    start = threading.Barrier(16)
    waits: list[float] = []
    lock = threading.Lock()

    def caller() -> None:
        start.wait(timeout=5)
        wait = pacer.reserve()
        with lock:
            waits.append(wait)

    # WHEN they all reserve at once
    threads = [threading.Thread(target=caller) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)

    # THEN they got the 16 consecutive slots, none shared
    assert sorted(waits) == pytest.approx([i / 20.0 for i in range(16)])


def test_pacer_does_not_bank_idle_time_without_burst() -> None:
    # GIVEN a strictly paced pacer that has been idle for a minute
    clock = ManualClock()
    pacer = Pacer(10.0, clock=clock)
    pacer.reserve()
    clock.now += 60.0

    # WHEN three callers arrive together
    waits = [pacer.reserve() for _ in range(3)]

    # THEN only the first goes at once: idle time is not saved up
    assert waits == pytest.approx([0.0, 0.1, 0.2])


def test_pacer_burst_allows_that_many_slots_after_idle_then_paces() -> None:
    # GIVEN a pacer at 10/s with a burst of 3, idle for a while
    clock = ManualClock()
    pacer = Pacer(10.0, burst=3.0, clock=clock)
    clock.now += 10.0

    # WHEN five callers arrive together
    waits = [pacer.reserve() for _ in range(5)]

    # THEN three go at once and the rest are paced
    assert waits == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2])


def test_pacer_set_rate_changes_the_spacing_of_later_slots() -> None:
    # GIVEN a pacer at 10/s with two slots taken
    clock = ManualClock()
    pacer = Pacer(10.0, clock=clock)
    pacer.reserve()
    pacer.reserve()

    # WHEN the rate is cut to 2/s and more callers reserve
    pacer.set_rate(2.0)
    waits = [pacer.reserve() for _ in range(3)]

    # THEN the slots after the next are half a second apart
    assert pacer.rate == pytest.approx(2.0)
    assert waits[2] - waits[1] == pytest.approx(0.5)
    assert waits[1] - waits[0] == pytest.approx(0.5)


def test_pacer_set_rate_spaces_the_very_next_slot_at_the_new_rate() -> None:
    # GIVEN a pacer at 10/s that has just handed out a slot
    clock = ManualClock()
    pacer = Pacer(10.0, clock=clock)
    assert pacer.reserve() == 0.0

    # WHEN a throttle cuts the rate to 2/s
    pacer.set_rate(2.0)

    # THEN the next slot is 1/2 s after the last one, not 1/10 s
    assert pacer.reserve() == pytest.approx(0.5)


def test_pacer_acquire_waits_for_the_slot_and_reports_a_stop() -> None:
    # GIVEN a pacer with its first slot taken
    clock = ManualClock()
    pacer = Pacer(4.0, clock=clock)
    assert pacer.acquire(clock.sleep) is True
    asked: list[float] = []

    def stopping(seconds: float) -> bool:
        asked.append(seconds)
        return True

    # WHEN the next caller's wait is interrupted by a stopping job
    acquired = pacer.acquire(stopping)

    # THEN it was asked to wait one interval and did not get its slot
    assert asked == pytest.approx([0.25])
    assert acquired is False


def test_pacer_a_cut_moves_the_slots_callers_are_already_waiting_for() -> None:
    # GIVEN a pacer at 40/s and a caller waiting for the third slot (0.05 s away)
    clock = ManualClock()
    pacer = Pacer(40.0, clock=clock)
    assert pacer.acquire(clock.sleep) and pacer.acquire(clock.sleep)
    cut = False

    def sleep(seconds: float) -> bool:
        nonlocal cut
        if not cut:  # a throttle comes back while it sleeps: the rate is cut to 10/s
            cut = True
            clock.now += 0.001
            pacer.set_rate(10.0)
            clock.now += seconds - 0.001
            return False
        return clock.sleep(seconds)

    start = clock.now  # the second call left now
    # WHEN it wakes at its old slot
    assert pacer.acquire(sleep) is True
    # THEN it has slept on to the new one: 1/10 s after the last call left, not 1/40 s
    assert clock.now - start == pytest.approx(0.1)


def test_pacer_a_partly_sent_group_keeps_its_instant_through_a_change() -> None:
    # GIVEN groups of 4 at 40/s, two of the current group's slots taken
    clock = ManualClock()
    pacer = Pacer(40.0, group=4, clock=clock)
    pacer.reserve(), pacer.reserve()
    # WHEN the rate changes, then the group's other two callers and the next group come
    pacer.set_rate(20.0)
    waits = [pacer.reserve() for _ in range(6)]
    # THEN the two go now with their group; the next group comes 4 new intervals later
    assert waits == pytest.approx([0.0, 0.0] + [0.2] * 4)


def test_pacer_acquire_does_not_wait_when_the_slot_is_now() -> None:
    # GIVEN a fresh pacer
    clock = ManualClock()
    pacer = Pacer(4.0, clock=clock)

    # WHEN one caller acquires
    ok = pacer.acquire(clock.sleep)

    # THEN it never slept
    assert ok is True
    assert clock.sleeps == []


@pytest.mark.parametrize("rate", [0.0, -1.0])
def test_pacer_rejects_a_rate_that_is_not_positive(rate: float) -> None:
    with pytest.raises(ValueError):
        Pacer(rate)


def test_event_waiter_returns_at_once_when_stopped() -> None:
    # GIVEN a stop event already set
    stop = threading.Event()
    stop.set()

    # WHEN a long wait is asked for, THEN it reports the stop (without waiting an hour)
    assert event_waiter(stop)(3600.0) is True
    # AND a zero or negative wait on an unset event is not a stop
    assert event_waiter(threading.Event())(-1.0) is False


def test_pacer_groups_share_an_instant_and_keep_the_rate() -> None:
    # GIVEN a pacer at 40/s sending in groups of 4, on a frozen clock
    pacer = Pacer(40.0, group=4, clock=ManualClock())
    # WHEN eight callers reserve at once
    waits = [pacer.reserve() for _ in range(8)]
    # THEN four leave now and four one group (4 intervals = 0.1 s) later: still 40/s
    assert waits == pytest.approx([0.0] * 4 + [0.1] * 4)


# -- UserGate --------------------------------------------------------------------------------


def test_user_gate_spaces_writes_to_one_user() -> None:
    # GIVEN a gate allowing 4 writes per second per user, on a manual clock
    clock = ManualClock()
    gate = UserGate(per_user_rate=4.0, clock=clock)
    entered: list[float] = []

    # WHEN one user is written five times in a row, each write instant
    for _ in range(5):
        assert gate.enter("alice", clock.sleep) is True
        entered.append(clock())
        gate.leave("alice")

    # THEN consecutive writes are at least 1/4 s apart
    gaps = [b - a for a, b in zip(entered, entered[1:], strict=False)]
    assert all(gap >= 0.25 - 1e-9 for gap in gaps)
    assert len(gaps) == 4


def test_user_gate_lets_different_users_through_at_once() -> None:
    # GIVEN a gate with one user inside
    clock = ManualClock()
    gate = UserGate(per_user_rate=1.0, clock=clock)
    assert gate.enter("alice", clock.sleep)

    # WHEN other users arrive
    entered = [gate.enter(u, clock.sleep) for u in ("bob", "carol")]

    # THEN they enter without waiting
    assert entered == [True, True]
    assert clock.sleeps == []


def test_user_gate_serialises_one_user_across_threads() -> None:
    # GIVEN alice is being written by the main thread
    clock = ManualClock()
    gate = UserGate(per_user_rate=10.0, clock=clock)
    assert gate.enter("alice", clock.sleep)
    waiting = threading.Event()
    go = threading.Event()
    entered_at: list[float] = []

    def waiter(seconds: float) -> bool:
        waiting.set()
        go.wait(timeout=5)  # holds the second writer until the test lets it go
        clock.sleep(seconds)
        return False

    def second_writer() -> None:
        if gate.enter("alice", waiter):
            entered_at.append(clock())
            gate.leave("alice")

    # WHEN a second write to alice starts
    thread = threading.Thread(target=second_writer)
    thread.start()
    assert waiting.wait(timeout=5)

    # THEN it is held while the first is in progress
    assert entered_at == []

    # WHEN the first write finishes
    left_at = clock()
    gate.leave("alice")
    go.set()
    thread.join(timeout=5)

    # THEN the second enters, at least one interval after the first left
    assert len(entered_at) == 1
    assert entered_at[0] - left_at >= gate.interval - 1e-9


def test_user_gate_gives_up_when_the_job_stops() -> None:
    # GIVEN alice was just written
    clock = ManualClock()
    gate = UserGate(per_user_rate=1.0, clock=clock)
    assert gate.enter("alice", clock.sleep)
    gate.leave("alice")

    # WHEN the next write's wait is interrupted
    entered = gate.enter("alice", lambda seconds: True)

    # THEN it does not enter, and alice is not left marked busy
    assert entered is False
    clock.now += 1.0
    assert gate.enter("alice", lambda seconds: True) is True


def test_user_gate_forgets_old_users() -> None:
    # GIVEN more than 4096 users written long ago
    clock = ManualClock()
    gate = UserGate(per_user_rate=10.0, clock=clock)
    for i in range(4097):
        gate.enter(f"u{i}", clock.sleep)
        gate.leave(f"u{i}")
    clock.now += 1.0

    # WHEN one more user is written
    gate.enter("late", clock.sleep)
    gate.leave("late")

    # THEN only users within the interval are still tracked
    assert gate.tracked == 1
