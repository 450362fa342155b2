"""The one retry layer: which errors retry, the full-jitter waits, and the bounds."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from fakes import ManualClock

from batch.errors import (
    CognitoError,
    FatalError,
    RowError,
    ThrottledError,
    TransientError,
    TriggerError,
)
from batch.pace.retrying import Cancelled, Outcome, Retrier, RetryPolicy


class Script:
    """A call that raises the given errors in turn, then succeeds; counts its calls."""

    def __init__(self, *errors: BaseException, then: Callable[[], None] | None = None) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.then = then

    def __call__(self) -> None:
        self.calls += 1
        if self.then is not None:
            self.then()
        if self.errors:
            raise self.errors.pop(0)


def throttled() -> ThrottledError:
    return ThrottledError("TooManyRequestsException", "Rate exceeded")


def transient() -> TransientError:
    return TransientError("InternalErrorException", "oops")


def expected_waits(seed: int, policy: RetryPolicy, count: int) -> list[float]:
    rng = random.Random(seed)
    return [
        rng.uniform(0.0, min(policy.max_backoff, policy.base_backoff * 2 ** (n - 1)))
        for n in range(1, count + 1)
    ]


def test_retries_throttles_with_full_jitter_exponential_waits() -> None:
    # GIVEN a retrier with a seeded rng and a call throttled three times
    clock = ManualClock()
    policy = RetryPolicy(base_backoff=0.25, max_backoff=20.0)
    retrier = Retrier(policy, wait=clock.sleep, clock=clock, rng=random.Random(42))
    call = Script(throttled(), throttled(), throttled())

    # WHEN it runs
    outcome = retrier.run(call)

    # THEN it succeeded on the 4th attempt after exactly the jittered waits
    assert outcome.error is None
    assert outcome.attempts == 4
    assert call.calls == 4
    assert clock.sleeps == expected_waits(42, policy, 3)


def test_backoff_is_capped_at_max_backoff() -> None:
    # GIVEN a policy whose exponential would pass the cap from the 4th wait on
    clock = ManualClock()
    policy = RetryPolicy(max_attempts=8, base_backoff=1.0, max_backoff=3.0)
    retrier = Retrier(policy, wait=clock.sleep, clock=clock, rng=random.Random(7))

    # WHEN a call fails transiently every time
    outcome = retrier.run(Script(*[transient() for _ in range(10)]))

    # THEN every wait is drawn from [0, min(3, 2**(n-1))]
    assert outcome.attempts == 8
    assert clock.sleeps == expected_waits(7, policy, 7)
    assert max(clock.sleeps) <= 3.0


def test_stops_at_max_attempts_with_the_last_error() -> None:
    # GIVEN a call that always fails transiently
    clock = ManualClock()
    retrier = Retrier(RetryPolicy(max_attempts=5), wait=clock.sleep, clock=clock,
                      rng=random.Random(1))
    errors = [transient() for _ in range(10)]
    call = Script(*errors)

    # WHEN it runs
    outcome = retrier.run(call)

    # THEN five attempts, four waits, and the fifth error is reported
    assert outcome.attempts == 5
    assert call.calls == 5
    assert len(clock.sleeps) == 4
    assert outcome.error is errors[4]


def test_stops_when_the_row_has_used_max_row_seconds() -> None:
    # GIVEN each attempt takes 10 s (by the injected clock) and a row may take 25 s
    clock = ManualClock()
    retrier = Retrier(RetryPolicy(max_attempts=50, max_row_seconds=25.0), wait=clock.sleep,
                      clock=clock, rng=random.Random(3))

    def slow() -> None:
        clock.now += 10.0

    call = Script(*[throttled() for _ in range(50)], then=slow)

    # WHEN it runs
    outcome = retrier.run(call)

    # THEN it stopped after the attempt that crossed 25 s (the third), with a throttle
    assert outcome.attempts == 3
    assert call.calls == 3
    assert isinstance(outcome.error, ThrottledError)


@pytest.mark.parametrize(
    "error",
    [
        RowError("UserNotFoundException", "User does not exist."),
        FatalError("NotAuthorizedException", "denied"),
        CognitoError("Whatever", "the base class is not retryable"),
        ValueError("a bug in a call"),
    ],
)
def test_does_not_retry_permanent_errors(error: BaseException) -> None:
    # GIVEN a call that fails permanently once, then would succeed
    clock = ManualClock()
    retrier = Retrier(RetryPolicy(), wait=clock.sleep, clock=clock, rng=random.Random(0))
    call = Script(error)

    # WHEN it runs
    outcome = retrier.run(call)

    # THEN one attempt, no wait, and that error
    assert outcome.attempts == 1
    assert call.calls == 1
    assert clock.sleeps == []
    assert outcome.error is error


def test_trigger_errors_are_tried_at_most_trigger_attempts() -> None:
    # GIVEN a broken Lambda trigger and a policy allowing 3 trigger attempts of 8
    clock = ManualClock()
    retrier = Retrier(RetryPolicy(max_attempts=8, trigger_attempts=3), wait=clock.sleep,
                      clock=clock, rng=random.Random(0))
    call = Script(*[TriggerError("UnexpectedLambdaException", "boom") for _ in range(8)])

    # WHEN it runs
    outcome = retrier.run(call)

    # THEN three attempts only
    assert outcome.attempts == 3
    assert call.calls == 3
    assert isinstance(outcome.error, TriggerError)


def test_a_trigger_error_that_clears_succeeds() -> None:
    clock = ManualClock()
    retrier = Retrier(RetryPolicy(trigger_attempts=3), wait=clock.sleep, clock=clock,
                      rng=random.Random(0))
    outcome = retrier.run(Script(TriggerError("UnexpectedLambdaException", "boom")))
    assert outcome == Outcome(attempts=2, error=None)


def test_a_stopping_job_cancels_the_back_off() -> None:
    # GIVEN a waiter that reports the job is stopping
    clock = ManualClock()
    asked: list[float] = []

    def stopping(seconds: float) -> bool:
        asked.append(seconds)
        return True

    retrier = Retrier(RetryPolicy(), wait=stopping, clock=clock, rng=random.Random(0))
    call = Script(throttled(), throttled())

    # WHEN a throttled call would back off
    outcome = retrier.run(call)

    # THEN the row ends Cancelled after its one attempt, not resent
    assert isinstance(outcome.error, Cancelled)
    assert outcome.attempts == 1
    assert call.calls == 1
    assert len(asked) == 1


def test_a_first_attempt_cancelled_ends_the_row_without_a_retry() -> None:
    # GIVEN a call whose first attempt finds the job stopping (its pacer slot was refused)
    clock = ManualClock()
    retrier = Retrier(RetryPolicy(), wait=clock.sleep, clock=clock, rng=random.Random(0))
    call = Script(Cancelled("job stopping"))

    # WHEN it runs
    outcome = retrier.run(call)

    # THEN the row ends Cancelled after one attempt: no back-off, no second call
    assert isinstance(outcome.error, Cancelled)
    assert (outcome.attempts, call.calls, clock.sleeps) == (1, 1, [])


def test_first_try_success_counts_one_attempt_and_never_waits() -> None:
    clock = ManualClock()
    retrier = Retrier(RetryPolicy(), wait=clock.sleep, clock=clock, rng=random.Random(0))
    outcome = retrier.run(Script())
    assert (outcome.attempts, outcome.error) == (1, None)
    assert clock.sleeps == []


def test_on_retry_sees_each_retried_error_but_not_the_last() -> None:
    # GIVEN a retrier that reports retries
    clock = ManualClock()
    seen: list[BaseException] = []
    retrier = Retrier(RetryPolicy(max_attempts=3), wait=clock.sleep, clock=clock,
                      rng=random.Random(0), on_retry=seen.append)
    errors = [throttled(), transient(), throttled()]

    # WHEN a call fails three times and gives up
    outcome = retrier.run(Script(*errors))

    # THEN the two errors that were retried were reported; the final one is the outcome
    assert seen == errors[:2]
    assert outcome.error is errors[2]


def test_attempts_are_counted_per_run_not_shared() -> None:
    # GIVEN one retrier used for two rows in turn
    clock = ManualClock()
    retrier = Retrier(RetryPolicy(), wait=clock.sleep, clock=clock, rng=random.Random(0))

    # WHEN the first needs three attempts and the second one
    first = retrier.run(Script(throttled(), throttled()))
    second = retrier.run(Script())

    # THEN each outcome counts its own attempts
    assert (first.attempts, second.attempts) == (3, 1)


def test_backoff_draws_from_the_injected_rng() -> None:
    policy = RetryPolicy(base_backoff=0.5, max_backoff=4.0)
    retrier = Retrier(policy, wait=lambda s: False, rng=random.Random(9))
    reference = random.Random(9)
    assert [retrier.backoff(n) for n in (1, 2, 3, 4, 5)] == [
        reference.uniform(0.0, cap) for cap in (0.5, 1.0, 2.0, 4.0, 4.0)
    ]
