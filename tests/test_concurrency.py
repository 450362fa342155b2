"""The concurrency climber against simulated systems, driven by a manual clock (no sleeps).

A system is a function from the limit (calls in flight) to completed calls per second:
- CPU-bound: this process and the server share two cores; past 2 in flight nothing is gained;
- latency-bound: a remote service at 100 ms a call, so throughput grows with the limit;
- rate-bound: the pacer's rate caps throughput whatever the limit.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from batch.engine.concurrency import ConcurrencyClimber


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drive(
    climber: ConcurrencyClimber,
    clock: ManualClock,
    system: Callable[[int], float],
    seconds: float,
    *,
    rate: float = 100_000.0,
    wanted: int = 2_000,
) -> list[tuple[float, int]]:
    """Complete calls at the system's throughput for the climber's limit; (seconds, limit).
    Each call's latency is what Little's law says it is: calls in flight over throughput."""
    spent: list[tuple[float, int]] = []
    end = clock.now + seconds
    while clock.now < end:
        throughput = system(climber.limit)
        clock.now += 1.0 / throughput
        spent.append((1.0 / throughput, climber.limit))
        climber.on_call(rate, wanted, climber.limit / throughput)
    return spent


def share(spent: list[tuple[float, int]], test: Callable[[int], bool]) -> float:
    total = sum(s for s, _ in spent)
    return sum(s for s, limit in spent if test(limit)) / total


def cpu_bound(limit: int) -> float:
    return 250.0 if limit == 1 else 360.0


def gil_bound(limit: int) -> float:
    """One thread is as fast as any number: each extra one only adds contention."""
    return 360.0 if limit == 1 else 350.0 - 5.0 * limit


def latency_bound(limit: int) -> float:
    return 10.0 * limit


@pytest.mark.parametrize(
    ("system", "settles_on", "at_least", "never_above"),
    [
        # gains nothing past 2 in flight, and 1 is slower: keeps 2, probes aside
        (cpu_bound, 2, 0.7, 4),
        # one thread is the fastest: keeps 1, probing 2 now and then
        (gil_bound, 1, 0.8, 2),
        # throughput grows with calls in flight: keeps the maximum (probes down are taken back)
        (latency_bound, 8, 0.8, 8),
    ],
)
def test_settles_on_the_fewest_calls_that_deliver_the_throughput(
    system: Callable[[int], float], settles_on: int, at_least: float, never_above: int
) -> None:
    # GIVEN a climber allowed 8 on the system
    clock = ManualClock()
    climber = ConcurrencyClimber(8, clock=clock)

    # WHEN it runs for a while
    drive(climber, clock, system, 10.0)
    later = drive(climber, clock, system, 60.0)

    # THEN it ends on the expected limit, spends most of the time there, and never strays far
    assert climber.limit == settles_on
    assert share(later, lambda limit: limit == settles_on) > at_least
    assert share(later, lambda limit: limit > never_above) == 0.0
    assert climber.low == 1 and climber.high == 8  # it tried one, and started at the top


def test_a_binding_rate_leaves_the_window_to_littles_law() -> None:
    # GIVEN a rate of 25/s that binds from 3 in flight on, and Little's law asking for 7
    clock = ManualClock()
    climber = ConcurrencyClimber(8, clock=clock)

    def rate_bound(limit: int) -> float:
        return min(25.0, 10.0 * limit)

    # WHEN it runs
    spent = drive(climber, clock, rate_bound, 60.0, rate=25.0, wanted=7)

    # THEN it never went below Little's window: a quota-bound job is never held back
    assert min(limit for _, limit in spent) >= 7
    assert climber.low >= 7


def test_while_littles_law_fits_under_the_maximum_it_never_acts() -> None:
    # GIVEN --rate auto in slow start: the rate doubles every second, so calls complete well
    # under it, while Little's law asks for 4 of the 8 allowed (50/s at 20 ms)
    clock = ManualClock()
    climber = ConcurrencyClimber(8, clock=clock)
    rates = iter([10.0 * 2**i for i in range(6)] + [60.0] * 60)
    spent: list[tuple[float, int]] = []

    # WHEN a minute passes, throughput at half the rate
    for rate in rates:
        spent += drive(climber, clock, lambda limit, r=rate: r / 2, 1.0, rate=rate, wanted=4)

    # THEN the window was never cut below what Little's law asks for
    assert min(limit for _, limit in spent) >= 4
    assert climber.low == 8


def test_it_climbs_back_when_more_calls_in_flight_pay_again() -> None:
    # GIVEN a climber that settled low on a CPU-bound system
    clock = ManualClock()
    climber = ConcurrencyClimber(8, clock=clock)
    drive(climber, clock, cpu_bound, 10.0)
    settled = drive(climber, clock, cpu_bound, 20.0)
    assert share(settled, lambda limit: limit == 2) > 0.7

    # WHEN the system turns latency-bound (say the server slowed down)
    spent = drive(climber, clock, latency_bound, 30.0)

    # THEN its probes up pay, and it climbs back to the maximum and stays
    assert climber.limit == 8
    tail = spent[len(spent) // 2 :]
    assert share(tail, lambda limit: limit == 8) > 0.8


def test_epochs_need_time_and_calls_before_any_step_and_slow_calls_a_bounded_time() -> None:
    # GIVEN three climbers with 1 s / 20-call epochs, at most 2 s
    slow_clock, fast_clock, lone_clock = ManualClock(), ManualClock(), ManualClock()
    slow = ConcurrencyClimber(8, clock=slow_clock)
    fast = ConcurrencyClimber(8, clock=fast_clock)
    lone = ConcurrencyClimber(8, clock=lone_clock)

    # WHEN one sees 19 calls over 1.9 s, another 100 calls in 0.9 s, the last its first call
    # after 10 s
    for _ in range(19):
        slow_clock.now += 1.9 / 19
        slow.on_call(100_000.0, 2_000)
    for _ in range(100):
        fast_clock.now += 0.9 / 100
        fast.on_call(100_000.0, 2_000)
    lone_clock.now += 10.0
    lone.on_call(100_000.0, 2_000)

    # THEN none closed an epoch: no limit has moved
    assert slow.limit == fast.limit == lone.limit == 8

    # AND one more call each closes the epoch (past 2 s, 20 calls are not awaited: at one slow
    # call in flight they would take 20 s), and the first probe (straight to one) starts
    slow_clock.now += 0.2
    slow.on_call(100_000.0, 2_000)
    fast_clock.now += 0.2
    fast.on_call(100_000.0, 2_000)
    lone_clock.now += 2.1  # the first answer started its epoch: the 10 s before it do not count
    lone.on_call(100_000.0, 2_000)
    assert slow.limit == fast.limit == lone.limit == 1


def slow_answers(limit: int) -> float:
    """Every call answered in 1 s (a Lambda trigger), under a rate of 150/s: throughput is
    the window over 1 s."""
    return float(min(150, limit))


def test_slow_answers_at_a_raised_quota_never_collapse_the_window() -> None:
    # GIVEN 150/s asked for, every call answered in 1 s, and Little's window (305) over the
    # bound (64, --workers 64): calls complete under 0.9 of the rate, as at a CPU limit
    clock = ManualClock()
    climber = ConcurrencyClimber(64, clock=clock)

    # WHEN a minute passes
    spent = drive(climber, clock, slow_answers, 60.0, rate=150.0, wanted=305)

    # THEN one experiment at fewer calls (a few seconds: one call in flight answered no
    # faster) showed slow answers, not a queue, and the window stayed at the bound
    assert climber.limit == 64 and climber.slow == pytest.approx(1.0)
    assert sum(s for s, limit in spent if limit < 64) <= 3.0
    assert share(spent, lambda limit: limit == 64) > 0.9


def test_slow_answers_that_turn_into_a_queue_are_climbed_again() -> None:
    # GIVEN a climber that found 100 ms answers slow, not queued
    clock = ManualClock()
    climber = ConcurrencyClimber(256, clock=clock)
    drive(climber, clock, latency_bound, 20.0)
    assert climber.limit == 256 and climber.slow == pytest.approx(0.1)

    # WHEN the calls then queue on a CPU (360/s whatever the window, 0.7 s a call at 256)
    drive(climber, clock, cpu_bound, 30.0)

    # THEN it acts on the CPU limit again: a few calls in flight deliver as much
    assert climber.limit <= 4


def test_the_cpu_limit_is_still_found_where_little_asks_for_hundreds() -> None:
    # GIVEN the client's CPU as the limit (360 calls/s from 2 in flight on) and a window of
    # 512 allowed, Little's law asking for more (each queued call is slow)
    clock = ManualClock()
    climber = ConcurrencyClimber(512, clock=clock)

    # WHEN it runs
    drive(climber, clock, cpu_bound, 10.0)
    later = drive(climber, clock, cpu_bound, 60.0)

    # THEN it keeps two in flight, as at a bound of 8: a step down there answered faster
    assert climber.limit == 2 and climber.slow == 0.0
    assert share(later, lambda limit: limit == 2) > 0.7


def test_the_summary_range_is_the_window_used_from_the_first_call_not_the_bound() -> None:
    # GIVEN a bound of 512 calls in flight and a rate that Little's law fills with 7
    clock = ManualClock()
    climber = ConcurrencyClimber(512, clock=clock)
    # WHEN calls complete, the window never above 7 (then 5 for a while)
    for wanted in [7] * 30 + [5] * 30 + [7] * 30:
        clock.now += 0.05
        climber.on_call(100.0, wanted, 0.05)
    # THEN the summary's range holds the final window and is the range actually used
    assert climber.summary(7) == {"final": 7, "low": 5, "high": 7}
    # AND a run that made no call reports its final window alone
    assert ConcurrencyClimber(512, clock=clock).summary(3) == {"final": 3, "low": 3, "high": 3}


def test_the_wait_before_the_first_answer_is_no_epoch() -> None:
    # GIVEN 150/s at 1 s an answer with a read before each write (issue 22 (b)): the first
    # answers come 2 s after the start, while the window opened to Little's bound and beyond
    clock = ManualClock()
    climber = ConcurrencyClimber(512, clock=clock)
    clock.now += 2.0
    # WHEN the first answers come, then a second of them at the rate
    for _ in range(150):
        climber.on_call(150.0, 600)
        clock.now += 1.0 / 150
    # THEN no epoch judged the 2 s before them as a throughput of 1/s: the window stays
    assert climber.limit == 512 and climber.low == 512


def test_a_window_held_by_reads_not_calls_is_never_cut() -> None:
    # GIVEN 150/s asked for, rows that spend ~1.5 s in their reads (paced at 100/s) before a
    # 1 s write: Little's window (600) past the bound (512), 100 calls/s delivered, ~100 calls
    # in flight: the window is not full of calls, so no CPU queue to cut (issue 22 (b): it
    # jumped to one call in flight, and a second at one cost ~300 rows)
    clock = ManualClock()
    climber = ConcurrencyClimber(512, clock=clock)
    # WHEN a minute of such calls completes
    for _ in range(6000):
        climber.on_call(150.0, 600, 1.0)
        clock.now += 1.0 / 100
    # THEN the window never moved
    assert climber.limit == 512 and climber.low == 512
