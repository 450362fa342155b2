"""A shared token bucket, a neighbour and a paced job, simulated on virtual time (no threads).

Used by tests/test_controllers.py to check the controllers' behaviour and by bench/controllers.py
to compare them quickly before the emulator runs. The model: the job sends one call per pacer
slot (1/rate apart, no bursts) and learns its outcome ``latency`` seconds later; the neighbour
sends Poisson (or paced) calls at a scheduled rate and never retries; both draw from one bucket
refilled at ``quota``/s holding ``burst_s`` seconds of it, as the emulator's front does.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from batch.pace.controllers import RateController


class Bucket:
    def __init__(self, rate: float, capacity: float, now: float = 0.0) -> None:
        self.rate, self.capacity, self.tokens, self.stamp = rate, capacity, capacity, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class Outcome:
    job_calls: int = 0
    job_accepted: int = 0
    job_throttled: int = 0
    neighbour_calls: int = 0
    neighbour_throttled: int = 0
    free: float = 0.0  # quota tokens the neighbour left, integrated over the run
    duration: float = 0.0
    rates: list[tuple[float, float]] = field(default_factory=list)  # (t, job rate) each 0.5 s
    neighbour_throttle_times: list[float] = field(default_factory=list)

    @property
    def share(self) -> float:
        return self.job_accepted / self.free if self.free else 0.0

    @property
    def neighbour_throttled_share(self) -> float:
        return self.neighbour_throttled / self.neighbour_calls if self.neighbour_calls else 0.0

    @property
    def job_throttled_share(self) -> float:
        return self.job_throttled / self.job_calls if self.job_calls else 0.0


def simulate(
    controller: RateController,
    *,
    quota: float,
    schedule: Sequence[tuple[float, float]],
    latency: float = 0.02,
    burst_s: float = 1.0,
    poisson: bool = True,
    seed: int = 1,
    start: float = 0.0,
    on_tick: Callable[[float], None] | None = None,
    group: int = 1,
    arrivals: Sequence[float] | None = None,
    job_start: float = 0.0,
) -> Outcome:
    """Run ``schedule`` ((neighbour calls/s, seconds), ...) to its end; the job never runs dry.

    ``arrivals``: the neighbour's call times (seconds from ``start``) instead of drawing them,
    e.g. taken from an emulator trace. ``job_start``: the job's first call, seconds in. As the
    runner's pacer does, a cut re-times the job's next send (slots already taken move to the new
    spacing), and the job sends in groups of the controller's ``group`` as it is at each send.
    """
    rng = random.Random(seed)
    bucket = Bucket(quota, max(1.0, quota * burst_s), start)
    out = Outcome()
    end = start + sum(d for _, d in schedule)
    out.duration = end - start
    events: list[tuple[float, int, str, float]] = []
    seq = 0

    def push(t: float, kind: str, sent: float = 0.0) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, sent))

    t = start
    for rate, seconds in schedule:  # the neighbour's arrivals, drawn up front
        out.free += max(0.0, quota - rate) * seconds
        if rate > 0 and arrivals is None:
            step = 1.0 / rate
            nxt = t + (rng.expovariate(rate) if poisson else step)
            while nxt < t + seconds:
                push(nxt, "neighbour")
                nxt += rng.expovariate(rate) if poisson else step
        t += seconds
    for at in arrivals or ():
        push(start + at, "neighbour")
    send_gen = 0  # a re-timed send makes the one pushed before it stale
    last_send, next_send = -1e9, start + job_start

    def schedule_send(at: float) -> None:
        nonlocal send_gen, next_send
        send_gen += 1
        next_send = at
        push(at, "send", float(send_gen))

    def retime(now: float) -> None:
        # The pacer's slots already taken follow a lower rate at once.
        size = max(1, getattr(controller, "group", group))
        due = max(last_send + size / max(controller.rate, 1e-3), now)
        if due > next_send:
            schedule_send(due)

    schedule_send(start + job_start)
    push(start, "tick")
    while events:
        now, _, kind, sent = heapq.heappop(events)
        if now >= end:
            break
        if kind == "neighbour":
            out.neighbour_calls += 1
            if not bucket.take(now):
                out.neighbour_throttled += 1
                out.neighbour_throttle_times.append(now - start)
        elif kind == "send":
            if sent != send_gen:
                continue  # re-timed since
            # ``group`` calls leave together, ``group`` intervals apart: the same rate.
            size = max(1, getattr(controller, "group", group))
            for _ in range(size):
                out.job_calls += 1
                push(now + latency, "answer", now)
            last_send = now
            schedule_send(now + size / max(controller.rate, 1e-3))
        elif kind == "answer":
            # The emulator admits a call after its latency, and answers at once.
            if bucket.take(now):
                out.job_accepted += 1
                controller.on_success(sent, now)
            else:
                out.job_throttled += 1
                controller.on_throttle(sent, now)
                retime(now)
        elif kind == "tick":
            out.rates.append((now - start, controller.rate))
            if on_tick is not None:
                on_tick(now)
            push(now + 0.5, "tick")
    return out
