"""Which errors are retried, and how: the project's one retry layer (tenacity).

botocore's retries are pinned off in ``cognito.py``; every attempt here is one HTTP call and
passes the shared pacer first, so retries spend quota as visibly as first tries do.
Back-off is "full jitter" exponential (a random wait in [0, min(cap, base * 2**n)]): many
workers that were throttled together must not come back together.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, Retrying

from batch.errors import BatchError, RetryableError, TriggerError
from batch.pace.pacer import Clock, Waiter

T = TypeVar("T")


class Cancelled(BatchError):
    """The job is stopping; this row's call was not (re)sent."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds on retrying one row."""

    max_attempts: int = 8
    max_row_seconds: float = 300.0
    base_backoff: float = 0.25
    max_backoff: float = 20.0
    trigger_attempts: int = 3


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a retried call ended: the attempts it took and the error it ended on, if any."""

    attempts: int
    error: BaseException | None


class Retrier:
    """Runs a call under the policy. Thread-safe: each call gets its own tenacity state."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        wait: Waiter,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        on_retry: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.policy = policy
        self._wait = wait
        self._clock = clock
        self._rng = rng or random.Random()
        self._on_retry = on_retry

    def backoff(self, attempt: int) -> float:
        """The jittered wait after failed attempt number ``attempt`` (1-based)."""
        cap = min(self.policy.max_backoff, self.policy.base_backoff * 2 ** (attempt - 1))
        return self._rng.uniform(0.0, cap)

    def _should_retry(self, state: RetryCallState) -> bool:
        outcome = state.outcome
        if outcome is None or not outcome.failed:
            return False
        exc = outcome.exception()
        if not isinstance(exc, RetryableError):
            return False
        if isinstance(exc, TriggerError):
            return state.attempt_number < self.policy.trigger_attempts
        return True

    def _sleep(self, seconds: float) -> None:
        if self._wait(seconds):
            raise Cancelled("job stopping")

    def run(self, call: Callable[[], T]) -> Outcome:
        """Call until success, a non-retryable error, or the policy's bounds.

        The first attempt runs bare, and most calls end there: tenacity's per-attempt
        bookkeeping was ~5 % of a row's CPU at the emulator's ceiling. A first attempt that
        fails is *replayed* into the tenacity loop as its attempt 1 (the loop re-raises it
        instead of calling again), so every decision - retry or not, stop, back-off, the
        retry counter - is tenacity's, exactly as if it had made that first call itself.
        """
        started = self._clock()
        try:
            call()
        except Cancelled as exc:
            return Outcome(1, exc)
        except Exception as exc:  # noqa: BLE001 - judged by the tenacity loop below
            first: Exception = exc
        else:
            return Outcome(1, None)
        replay = [first]

        def attempt() -> None:
            if replay:
                raise replay.pop()
            call()

        return self._loop(attempt, started)

    def _loop(self, call: Callable[[], None], started: float) -> Outcome:
        limit = self.policy.max_row_seconds

        def stop(state: RetryCallState) -> bool:
            return (
                state.attempt_number >= self.policy.max_attempts or self._clock() - started >= limit
            )

        def before_sleep(state: RetryCallState) -> None:
            if self._on_retry is not None and state.outcome is not None:
                exc = state.outcome.exception()
                if exc is not None:
                    self._on_retry(exc)

        retrying = Retrying(
            retry=self._should_retry,
            stop=stop,
            wait=lambda state: self.backoff(state.attempt_number),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        attempts = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    call()
        except Cancelled as exc:
            return Outcome(attempts, exc)
        except Exception as exc:  # noqa: BLE001 - recorded on the row, never raised
            return Outcome(attempts, exc)
        return Outcome(attempts, None)
