"""Controllers kept only to compare against the tool's, and a way to run the command with one.

    .venv/bin/python bench/controllers.py aimd -- run INPUT --user-pool-id ... --rate auto

``AimdRate`` and ``CubicRate`` lost to ``SharedRate``/``MeasuredRate`` (figures in
docs/design/rate-control.md); ``fixed`` is the old default's meaning of ``--rate N`` (throttles
change nothing). The command runs as ``python -m batch`` would, except that its controller is
the one named here, under the ceiling the tool's own rate plan chose.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence

from batch.pace.controllers import Adaptive, FixedRate, RateController
from batch.pace.pacer import Clock


class AimdRate(Adaptive):
    """Additive increase, multiplicative decrease, with a slow start and one cut per round trip.

    - Slow start: from ``initial``, the rate grows by ``growth`` per second until the first
      throttle.
    - A throttle cuts the rate to ``beta`` times the lower of the current rate and the rate
      Cognito actually accepted over the last second: when the server's bucket is empty, the
      accepted rate *is* the share of the quota available, so this lands just under it instead
      of far below (plain AIMD halving would idle a third of the quota).
    - Only a throttle on a call sent after the last cut cuts again, as TCP cuts once per round
      trip: the calls already in flight at the cut say nothing about the new rate.
    - Then the rate climbs by ``increase`` (a fraction of itself) per second, probing for
      quota that other applications released.
    """

    def __init__(
        self,
        *,
        initial: float = 10.0,
        max_rate: float = 10_000.0,
        min_rate: float = 0.5,
        growth: float = 2.0,
        beta: float = 0.97,
        increase: float = 0.02,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(initial, max_rate, min_rate, clock())
        self.growth = growth
        self.beta = beta
        self.increase = increase
        self._slow_start = True
        self._last_cut = -math.inf
        self._last_grow = clock()

    def on_success(self, sent_at: float, now: float) -> None:
        with self._lock:
            self._accepted.add(now)
            elapsed = now - self._last_grow
            if elapsed < 0.1:
                return
            self._last_grow = now
            if self._slow_start:
                new = self._rate * self.growth**elapsed
            else:
                new = self._rate * (1.0 + self.increase * elapsed)
            self._set(min(new, self.max_rate), now)

    def on_throttle(self, sent_at: float, now: float) -> None:
        with self._lock:
            if sent_at < self._last_cut:
                return
            accepted = self._accepted.rate(now)
            basis = min(self._rate, accepted) if accepted > 0 else self._rate * 0.5
            self._slow_start = False
            self._last_cut = now
            self._last_grow = now
            self._set(max(self.min_rate, basis * self.beta), now)


class CubicRate(Adaptive):
    """botocore's adaptive curve (CUBIC, beta 0.7, C 0.4) on the measured sending rate.

    Kept for comparison (bench/throughput.py --compare-algorithms; figures in
    docs/design/rate-control.md).
    """

    def __init__(
        self,
        *,
        initial: float = 10.0,
        max_rate: float = 10_000.0,
        min_rate: float = 0.5,
        beta: float = 0.7,
        scale: float = 0.4,
        clock: Clock = time.monotonic,
    ) -> None:
        self._last_cut = clock()
        super().__init__(initial, max_rate, min_rate, self._last_cut)
        self.beta = beta
        self.scale = scale
        self._w_max = self._rate
        self._slow_start = True
        self._cut_at = -math.inf

    def _k(self) -> float:
        return float((self._w_max * (1 - self.beta) / self.scale) ** (1 / 3))

    def on_success(self, sent_at: float, now: float) -> None:
        with self._lock:
            self._accepted.add(now)
            if self._slow_start:
                new = max(self._rate, 2 * self._accepted.rate(now), self._rate * 1.02)
            else:
                t = now - self._last_cut
                new = self.scale * (t - self._k()) ** 3 + self._w_max
            new = max(self.min_rate, min(new, self.max_rate))
            if abs(new - self._rate) >= 0.01 * self._rate:
                self.history.record(now, new)
            self._rate = new

    def on_throttle(self, sent_at: float, now: float) -> None:
        with self._lock:
            if sent_at < self._cut_at:
                return
            self._slow_start = False
            measured = self._accepted.rate(now) or self._rate
            self._w_max = min(self._rate, max(measured, self.min_rate))
            self._rate = max(self.min_rate, self._w_max * self.beta)
            self._last_cut = now
            self._cut_at = now
            self.history.record(now, self._rate)


def _discovery_start(ceiling: float) -> float:
    return min(ceiling, 10.0)  # from 10/s up, as the tool's discovery does


CONTROLLERS: dict[str, Callable[[float], RateController]] = {
    "aimd": lambda ceiling: AimdRate(initial=_discovery_start(ceiling), max_rate=ceiling),
    "cubic": lambda ceiling: CubicRate(initial=_discovery_start(ceiling), max_rate=ceiling),
    "fixed": FixedRate,
}


def main(argv: Sequence[str]) -> int:
    """``NAME -- COMMAND ARGS``: run the command with controller NAME in place of the tool's."""
    if len(argv) < 2 or argv[0] not in CONTROLLERS or argv[1] != "--":
        print(f"usage: controllers.py {{{','.join(CONTROLLERS)}}} -- COMMAND ARGS", file=sys.stderr)
        return 2
    from batch.cli import main as cli_main
    from batch.commands.run import Job

    make = CONTROLLERS[argv[0]]

    def controller(job: Job) -> RateController:
        return make(job.rate_plan().ceiling)

    Job._controller = controller  # type: ignore[method-assign]
    return cli_main(list(argv[2:]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
