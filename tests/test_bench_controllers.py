"""The benchmark-only controllers (bench/controllers.py: AIMD, CUBIC), on a manual clock."""

from __future__ import annotations

import heapq
import importlib.util
import sys
from pathlib import Path

import pytest
from fakes import ManualClock

from batch.pace.pacer import Pacer

_SPEC = importlib.util.spec_from_file_location(
    "bench_controllers", Path(__file__).resolve().parents[1] / "bench" / "controllers.py"
)
assert _SPEC is not None and _SPEC.loader is not None
bench_controllers = importlib.util.module_from_spec(_SPEC)
sys.modules["bench_controllers"] = bench_controllers
_SPEC.loader.exec_module(bench_controllers)
AimdRate = bench_controllers.AimdRate
CubicRate = bench_controllers.CubicRate


# -- AimdRate --------------------------------------------------------------------------------


def test_aimd_slow_start_grows_by_growth_per_second() -> None:
    # GIVEN a controller starting at 10/s, doubling per second in slow start
    clock = ManualClock(0.0)
    aimd = AimdRate(initial=10.0, growth=2.0, clock=clock)

    # WHEN successes arrive one second and then half a second later
    aimd.on_success(0.9, 1.0)
    after_one = aimd.rate
    aimd.on_success(1.4, 1.5)

    # THEN the rate doubled, then grew by sqrt(2)
    assert after_one == pytest.approx(20.0)
    assert aimd.rate == pytest.approx(20.0 * 2**0.5)


def test_aimd_ignores_successes_closer_than_a_tenth_of_a_second() -> None:
    clock = ManualClock(0.0)
    aimd = AimdRate(initial=10.0, clock=clock)
    aimd.on_success(0.0, 0.05)
    assert aimd.rate == 10.0


def test_aimd_never_grows_above_max_rate() -> None:
    clock = ManualClock(0.0)
    aimd = AimdRate(initial=10.0, max_rate=15.0, growth=2.0, clock=clock)
    aimd.on_success(9.0, 10.0)
    assert aimd.rate == 15.0


def _feed_successes(aimd: AimdRate, start: float, count: int, spacing: float) -> float:
    now = start
    for _ in range(count):
        now += spacing
        aimd.on_success(now - 0.01, now)
    return now


def test_aimd_throttle_cuts_to_beta_times_the_accepted_rate_when_lower() -> None:
    # GIVEN a controller at 100/s (slow start, no growth) that saw 8 successes in the last second
    clock = ManualClock(0.0)
    aimd = AimdRate(initial=100.0, growth=1.0, beta=0.9, clock=clock)
    now = _feed_successes(aimd, 0.0, 8, 0.12)

    # WHEN a throttle arrives
    aimd.on_throttle(now - 0.01, now)

    # THEN the rate is beta x the accepted 8/s, not beta x 100
    assert aimd.rate == pytest.approx(0.9 * 8)


def test_aimd_throttle_cuts_to_beta_times_the_rate_when_the_rate_is_lower() -> None:
    # GIVEN a controller at 5/s whose last second saw 9 successes (a burst)
    clock = ManualClock(0.0)
    aimd = AimdRate(initial=5.0, growth=1.0, beta=0.9, clock=clock)
    now = _feed_successes(aimd, 0.0, 9, 0.1)

    # WHEN a throttle arrives
    aimd.on_throttle(now, now)

    # THEN the cut is from the lower figure, the rate
    assert aimd.rate == pytest.approx(0.9 * 5.0)


def test_aimd_throttle_with_nothing_accepted_halves_then_applies_beta() -> None:
    clock = ManualClock(0.0)
    aimd = AimdRate(initial=40.0, beta=0.97, clock=clock)
    aimd.on_throttle(0.0, 0.5)
    assert aimd.rate == pytest.approx(40.0 * 0.5 * 0.97)


def test_aimd_cuts_once_per_round_trip() -> None:
    # GIVEN a controller that has just cut at t=10
    clock = ManualClock(0.0)
    aimd = AimdRate(initial=40.0, beta=0.5, clock=clock)
    aimd.on_throttle(9.9, 10.0)
    after_cut = aimd.rate

    # WHEN a throttle arrives for a call sent before that cut
    aimd.on_throttle(9.95, 10.02)

    # THEN it does not cut again
    assert aimd.rate == after_cut

    # WHEN a throttle arrives for a call sent after the cut
    aimd.on_throttle(10.01, 10.05)

    # THEN it cuts again
    assert aimd.rate == pytest.approx(after_cut * 0.5 * 0.5)


def test_aimd_after_a_cut_grows_additively_not_exponentially() -> None:
    # GIVEN a controller out of slow start at 20/s
    clock = ManualClock(0.0)
    aimd = AimdRate(initial=40.0, beta=1.0, increase=0.02, growth=2.0, clock=clock)
    aimd.on_throttle(0.0, 0.0)  # nothing accepted: 40 * 0.5 * 1.0
    assert aimd.rate == pytest.approx(20.0)

    # WHEN a success comes two seconds later
    aimd.on_success(1.9, 2.0)

    # THEN the rate grew by 2 %/s, not doubled
    assert aimd.rate == pytest.approx(20.0 * (1 + 0.02 * 2.0))


def test_aimd_never_cuts_below_min_rate() -> None:
    clock = ManualClock(0.0)
    aimd = AimdRate(initial=1.0, min_rate=0.5, beta=0.1, clock=clock)
    aimd.on_throttle(0.0, 0.0)
    assert aimd.rate == 0.5


def test_aimd_history_records_cuts_and_extremes() -> None:
    clock = ManualClock(0.0)
    aimd = AimdRate(initial=10.0, growth=2.0, beta=0.5, clock=clock)
    aimd.on_success(0.9, 1.0)
    aimd.on_throttle(1.0, 1.1)
    assert aimd.history.high == pytest.approx(20.0)
    assert aimd.history.low == pytest.approx(aimd.rate)
    assert aimd.history.changes[-1] == (1.1, pytest.approx(aimd.rate))


def _simulate(
    quota: float,
    *,
    seconds: float,
    capacity: float,
    latency: float = 0.05,
    controller: type[AimdRate] | type[CubicRate] = AimdRate,
) -> list[tuple[float, bool]]:
    """A paced client, the controller deciding its rate, against a server token bucket.

    Responses come back ``latency`` after the send and are fed to the controller in arrival
    order before the next send, as the runner's workers do. Returns (sent_at, accepted).
    """
    clock = ManualClock(0.0)
    ctrl = controller(initial=5.0, clock=clock)
    pacer = Pacer(ctrl.rate, clock=clock)
    tokens, refilled = capacity, 0.0
    in_flight: list[tuple[float, float, bool]] = []
    log: list[tuple[float, bool]] = []
    while clock() < seconds:
        send_at = clock() + pacer.reserve()
        while in_flight and in_flight[0][0] <= send_at:
            arrived, sent, ok = heapq.heappop(in_flight)
            clock.now = max(clock.now, arrived)
            if ok:
                ctrl.on_success(sent, arrived)
            else:
                ctrl.on_throttle(sent, arrived)
            pacer.set_rate(ctrl.rate)
        clock.now = send_at
        tokens = min(capacity, tokens + (send_at - refilled) * quota)
        refilled = send_at
        ok = tokens >= 1.0
        if ok:
            tokens -= 1.0
        heapq.heappush(in_flight, (send_at + latency, send_at, ok))
        log.append((send_at, ok))
    return log


@pytest.mark.parametrize("quota", [25.0, 50.0, 200.0])
def test_aimd_converges_near_a_server_quota(quota: float) -> None:
    # GIVEN a server bucket refilling at `quota`/s holding a tenth of a second of tokens
    # WHEN the AIMD controller drives a paced client for two simulated minutes
    log = _simulate(quota, seconds=120.0, capacity=quota * 0.1)

    # THEN over the last minute it is accepted at close to the quota, rarely throttled
    tail = [ok for sent, ok in log if sent >= 60.0]
    accepted_rate = sum(tail) / 60.0
    throttled = 1 - sum(tail) / len(tail)
    assert 0.9 * quota <= accepted_rate <= 1.05 * quota
    assert throttled < 0.03


def test_aimd_uses_more_of_the_quota_than_cubic() -> None:
    # GIVEN the same server quota
    quota = 50.0

    # WHEN each controller drives the client
    aimd = [ok for sent, ok in _simulate(quota, seconds=120.0, capacity=5.0) if sent >= 60]
    cubic = [
        ok
        for sent, ok in _simulate(quota, seconds=120.0, capacity=5.0, controller=CubicRate)
        if sent >= 60
    ]

    # THEN AIMD gets more accepted calls through (the reason it is the default)
    assert sum(aimd) > sum(cubic)


# -- CubicRate -------------------------------------------------------------------------------


def test_cubic_cuts_to_seventy_percent() -> None:
    # GIVEN a CUBIC controller at 10/s that has seen no successes
    clock = ManualClock(0.0)
    cubic = CubicRate(initial=10.0, clock=clock)

    # WHEN a throttle arrives
    cubic.on_throttle(0.0, 0.0)

    # THEN it runs at 70 % of the rate
    assert cubic.rate == pytest.approx(7.0)


def test_cubic_cuts_from_the_measured_rate_when_lower() -> None:
    # GIVEN a CUBIC controller at 100/s that saw 20 successes in the last second
    clock = ManualClock(0.0)
    cubic = CubicRate(initial=100.0, clock=clock)
    for i in range(20):
        now = 0.04 * (i + 1)
        cubic.on_success(now, now)
    now = 0.81

    # WHEN a throttle arrives
    cubic.on_throttle(now, now)

    # THEN the cut is 70 % of what was accepted
    assert cubic.rate == pytest.approx(0.7 * 20)


def test_cubic_ignores_a_throttle_sent_before_its_last_cut() -> None:
    clock = ManualClock(0.0)
    cubic = CubicRate(initial=10.0, clock=clock)
    cubic.on_throttle(1.0, 2.0)
    cubic.on_throttle(1.5, 2.1)
    assert cubic.rate == pytest.approx(7.0)
