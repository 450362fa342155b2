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
    """Complete calls at the system's throughput for the climber's limit; (seconds, limit)."""
    spent: list[tuple[float, int]] = []
    end = clock.now + seconds
    while clock.now < end:
        step = 1.0 / system(climber.limit)
        clock.now += step
        spent.append((step, climber.limit))
        climber.on_call(rate, wanted)
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


def test_epochs_need_time_and_calls_before_any_step() -> None:
    # GIVEN two climbers with 0.5 s / 20-call epochs
    slow_clock, fast_clock = ManualClock(), ManualClock()
    slow = ConcurrencyClimber(8, clock=slow_clock)
    fast = ConcurrencyClimber(8, clock=fast_clock)

    # WHEN one sees 19 calls over 10 seconds, the other 100 calls in 0.9 s
    for _ in range(19):
        slow_clock.now += 10 / 19
        slow.on_call(100_000.0, 2_000)
    for _ in range(100):
        fast_clock.now += 0.9 / 100
        fast.on_call(100_000.0, 2_000)

    # THEN neither closed an epoch: neither limit has moved
    assert slow.limit == fast.limit == 8

    # AND one more call each closes the epoch, and the first probe (straight to one) starts
    slow_clock.now += 0.01
    slow.on_call(100_000.0, 2_000)
    fast_clock.now += 0.2
    fast.on_call(100_000.0, 2_000)
    assert slow.limit == fast.limit == 1
