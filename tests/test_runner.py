"""The worker pool: one result per item, fatal stops, the trigger breaker, the window.

The runner really runs threads here; tests synchronise with events and barriers, never sleeps.
Back-offs are shrunk to microseconds so retried rows cost nothing.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Iterator

import pytest
from fakes import FakeCognito, ManualClock

from batch.config import DEFAULT_WORKERS, MAX_WORKERS
from batch.engine.runner import TRIGGER_BREAKER, Runner, RunnerSettings
from batch.errors import FatalError, TriggerError
from batch.models import RowResult, Status, UserUpdate
from batch.pace.controllers import FixedRate
from batch.pace.retrying import RetryPolicy

POOL = "us-east-1_test"
FAST = RetryPolicy(base_backoff=1e-5, max_backoff=1e-4)


class Collected:
    """Results as the runner hands them out (from several threads)."""

    def __init__(self) -> None:
        self.results: list[RowResult] = []
        self._lock = threading.Lock()

    def __call__(self, result: RowResult) -> None:
        with self._lock:
            self.results.append(result)

    def by_row(self) -> dict[int, RowResult]:
        rows = [r.row for r in self.results]
        assert len(rows) == len(set(rows)), f"a row was reported twice: {sorted(rows)}"
        return {r.row: r for r in self.results}


def users(n: int) -> dict[str, dict[str, str]]:
    return {f"u{i}": {"given_name": "old"} for i in range(1, n + 1)}


def update(row: int, username: str, **attributes: str) -> UserUpdate:
    return UserUpdate(row, username, tuple(attributes.items()) or (("given_name", f"new{row}"),))


def make_runner(
    fake: FakeCognito,
    out: Collected,
    *,
    workers: int = 4,
    retry: RetryPolicy = FAST,
    rate: float = 10_000.0,
    per_user_rate: float = 10_000.0,
    resolve: object = None,
    stop: threading.Event | None = None,
) -> Runner:
    return Runner(
        fake,  # type: ignore[arg-type]
        RunnerSettings(user_pool_id=POOL, workers=workers, retry=retry,
                       per_user_rate=per_user_rate),
        controller=FixedRate(rate),
        on_result=out,
        resolve=resolve,  # type: ignore[arg-type]
        rng=random.Random(0),
        stop=stop,
    )


def test_every_item_yields_exactly_one_result() -> None:
    # GIVEN 40 updates with planned results (invalid rows) interleaved
    fake = FakeCognito(users(40))
    out = Collected()
    runner = make_runner(fake, out, workers=6)
    invalid = {i: RowResult(i, f"bad{i}", Status.INVALID, error_code="InvalidValue")
               for i in range(41, 51)}
    items: list[UserUpdate | RowResult] = []
    for i in range(1, 41):
        items.append(update(i, f"u{i}"))
        if i % 4 == 0:
            items.append(invalid[40 + i // 4])

    # WHEN the runner applies them
    runner.run(items)

    # THEN each of the 50 rows has exactly one result
    results = out.by_row()
    assert sorted(results) == list(range(1, 51))
    # AND planned results pass through untouched
    for row, planned in invalid.items():
        assert results[row] is planned
    # AND every update was applied once, in one attempt
    for i in range(1, 41):
        assert results[i].status == Status.UPDATED
        assert results[i].attempts == 1
        assert fake.users[f"u{i}"]["given_name"] == f"new{i}"
    assert sorted(fake.calls) == sorted(("update", f"u{i}") for i in range(1, 41))
    assert runner.stats.calls == 40
    assert runner.stats.in_flight == 0
    assert runner.fatal is None


def test_a_fatal_error_stops_the_run_and_skips_the_rest_with_the_reason() -> None:
    # GIVEN one worker (so the order is fixed) and a user whose update is not authorized
    fake = FakeCognito(users(10))
    fake.script["u4"] = ["NotAuthorizedException"]
    out = Collected()
    runner = make_runner(fake, out, workers=1)

    # WHEN ten rows are run
    runner.run([update(i, f"u{i}") for i in range(1, 11)])

    # THEN rows before it are updated, it failed, the rest were skipped with the reason
    results = out.by_row()
    assert [results[i].status for i in (1, 2, 3)] == [Status.UPDATED] * 3
    assert results[4].status == Status.FAILED
    assert results[4].error_code == "NotAuthorizedException"
    for i in range(5, 11):
        assert results[i].status == Status.SKIPPED
        assert results[i].error_code == "Stopped"
        assert "NotAuthorizedException" in results[i].error_message
    # AND the runner records the fatal error, and no call was made after it
    assert isinstance(runner.fatal, FatalError)
    assert runner.stopping
    assert fake.calls == [("update", f"u{i}") for i in (1, 2, 3, 4)]


def test_rows_submitted_after_a_fatal_error_make_no_call() -> None:
    # GIVEN several workers, and a feed that holds back rows 5.. until row 4's result is out
    fake = FakeCognito(users(20))
    fake.script["u4"] = ["AccessDeniedException"]
    out = Collected()
    fatal_reported = threading.Event()

    def on_result(result: RowResult) -> None:
        out(result)
        if result.row == 4:
            fatal_reported.set()

    runner = Runner(fake, RunnerSettings(user_pool_id=POOL, workers=4, retry=FAST),  # type: ignore[arg-type]
                    controller=FixedRate(10_000), on_result=on_result)

    def feed() -> Iterator[UserUpdate]:
        for i in range(1, 5):
            yield update(i, f"u{i}")
        assert fatal_reported.wait(timeout=10)
        for i in range(5, 21):
            yield update(i, f"u{i}")

    # WHEN the run goes on
    runner.run(feed())

    # THEN every later row is skipped and none of them reached Cognito
    results = out.by_row()
    assert sorted(results) == list(range(1, 21))
    assert results[4].status == Status.FAILED
    assert all(results[i].status == Status.SKIPPED for i in range(5, 21))
    called = {user for _, user in fake.calls}
    assert called <= {"u1", "u2", "u3", "u4"}
    # AND rows in flight with it ended either applied or skipped, never lost
    assert {results[i].status for i in (1, 2, 3)} <= {Status.UPDATED, Status.SKIPPED}


def test_consecutive_trigger_failures_trip_the_breaker() -> None:
    # GIVEN a broken Lambda trigger on every user
    fake = FakeCognito(users(8))
    for i in range(1, 9):
        fake.script[f"u{i}"] = ["UnexpectedLambdaException"] * 10
    out = Collected()
    # one worker: the streak is counted in row order, which the assertions name
    runner = make_runner(fake, out, workers=1, retry=RetryPolicy(
        base_backoff=1e-5, max_backoff=1e-4, trigger_attempts=2))

    # WHEN eight rows are run
    runner.run([update(i, f"u{i}") for i in range(1, 9)])

    # THEN the first five fail on the trigger, then the job stops and skips the rest
    results = out.by_row()
    assert TRIGGER_BREAKER == 5
    for i in range(1, 6):
        assert results[i].status == Status.FAILED
        assert results[i].error_code == "UnexpectedLambdaException"
        assert results[i].attempts == 2
    for i in (6, 7, 8):
        assert results[i].status == Status.SKIPPED
        assert "Lambda trigger" in results[i].error_message
    assert isinstance(runner.fatal, TriggerError)
    assert len(fake.calls) == 5 * 2


def test_a_success_resets_the_trigger_breaker() -> None:
    # GIVEN four trigger failures, a success, then four more
    fake = FakeCognito(users(9))
    for i in (1, 2, 3, 4, 6, 7, 8, 9):
        fake.script[f"u{i}"] = ["UnexpectedLambdaException"] * 3
    out = Collected()
    runner = make_runner(fake, out, workers=1)  # one worker: the streak depends on row order

    # WHEN they run
    runner.run([update(i, f"u{i}") for i in range(1, 10)])

    # THEN no streak reached five: nothing was skipped
    statuses = [out.by_row()[i].status for i in range(1, 10)]
    assert statuses == [Status.FAILED] * 4 + [Status.UPDATED] + [Status.FAILED] * 4
    assert runner.fatal is None
    assert not runner.stopping


@pytest.mark.parametrize(
    ("rate", "latency", "workers", "window"),
    [
        (10.0, 0.05, 8, 3),  # 10/s x 50 ms = 0.5 in flight, x1.5 -> 1, +2
        (25.0, 0.06, 8, 5),  # ceil(2.25) + 2
        (100.0, 0.05, 16, 10),  # ceil(7.5) + 2
        (100.0, 0.05, 8, 8),  # capped by workers
        (10_000.0, 1.0, 64, 64),
        (0.5, 0.001, 8, 3),
    ],
)
def test_window_follows_rate_times_latency_capped_by_workers(
    rate: float, latency: float, workers: int, window: int
) -> None:
    runner = make_runner(FakeCognito(), Collected(), workers=workers, rate=rate)
    runner.stats.latency = latency
    assert runner.window() == window


def test_window_grows_with_latency_and_never_passes_workers() -> None:
    # GIVEN a runner with 12 workers at 50/s
    runner = make_runner(FakeCognito(), Collected(), workers=12, rate=50.0)

    # WHEN the observed latency rises
    windows = []
    for latency in (0.001, 0.01, 0.02, 0.05, 0.1, 0.5, 5.0):
        runner.stats.latency = latency
        windows.append(runner.window())

    # THEN the window grows with it, up to the worker count
    assert windows == sorted(windows)
    assert windows[0] < windows[-1] == 12
    assert all(1 <= w <= 12 for w in windows)


def test_calls_in_flight_reach_but_never_exceed_workers() -> None:
    # GIVEN 4 workers and a Cognito that holds each call until 4 are in progress together
    fake = FakeCognito(users(16))
    barrier = threading.Barrier(4, timeout=10)
    lock = threading.Lock()
    active = 0
    peak = 0

    def hook(username: str) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        try:
            barrier.wait()
        finally:
            with lock:
                active -= 1

    fake.hook = hook
    out = Collected()
    runner = make_runner(fake, out, workers=4)

    # WHEN 16 rows are run
    runner.run([update(i, f"u{i}") for i in range(1, 17)])

    # THEN four calls ran at once, never more, and all rows were applied
    assert peak == 4
    assert all(r.status == Status.UPDATED for r in out.results)
    assert len(out.results) == 16


def test_one_user_is_never_written_by_two_calls_at_once() -> None:
    # GIVEN two rows for alice and one for bob; alice's first call lasts until bob's is made
    fake = FakeCognito({"alice": {}, "bob": {}})
    bob_called = threading.Event()
    events: list[tuple[str, str]] = []
    lock = threading.Lock()

    def hook(username: str) -> None:
        with lock:
            events.append((username, "start"))
        if username == "bob":
            bob_called.set()
        elif not [e for e in events if e == ("alice", "end")]:
            assert bob_called.wait(timeout=10)
        with lock:
            events.append((username, "end"))

    fake.hook = hook
    out = Collected()
    runner = make_runner(fake, out, workers=3)

    # WHEN they run with a worker free for each
    runner.run([update(1, "alice"), update(2, "alice"), update(3, "bob")])

    # THEN alice's second call started only after her first ended
    alice = [phase for user, phase in events if user == "alice"]
    assert alice == ["start", "end", "start", "end"]
    assert all(r.status == Status.UPDATED for r in out.results)


def test_deletes_run_after_the_update() -> None:
    # GIVEN a row that sets one attribute and deletes another
    fake = FakeCognito({"u1": {"given_name": "old", "family_name": "gone"}})
    out = Collected()
    runner = make_runner(fake, out)
    item = UserUpdate(1, "u1", (("given_name", "new"),), deletes=("family_name",))

    # WHEN it runs
    runner.run([item])

    # THEN update then delete were called, and both attempts counted
    assert fake.calls == [("update", "u1"), ("delete", "u1")]
    assert fake.users["u1"] == {"given_name": "new"}
    assert out.by_row()[1].status == Status.UPDATED
    assert out.by_row()[1].attempts == 2


def test_a_delete_only_row_calls_delete_only() -> None:
    fake = FakeCognito({"u1": {"given_name": "x", "family_name": "y"}})
    out = Collected()
    make_runner(fake, out).run([UserUpdate(1, "u1", (), deletes=("family_name",))])
    assert fake.calls == [("delete", "u1")]
    assert fake.users["u1"] == {"given_name": "x"}
    assert out.by_row()[1].status == Status.UPDATED


def test_a_failed_update_does_not_delete() -> None:
    # GIVEN the update fails permanently
    fake = FakeCognito({"u1": {"family_name": "kept"}})
    fake.script["u1"] = ["InvalidParameterException"]
    out = Collected()

    # WHEN the row runs
    make_runner(fake, out).run(
        [UserUpdate(1, "u1", (("given_name", "new"),), deletes=("family_name",))]
    )

    # THEN no delete was sent and the row failed with Cognito's code
    assert fake.calls == [("update", "u1")]
    assert fake.users["u1"] == {"family_name": "kept"}
    result = out.by_row()[1]
    assert (result.status, result.error_code) == (Status.FAILED, "InvalidParameterException")


def test_a_throttled_call_is_retried_and_counted() -> None:
    # GIVEN a user throttled once
    fake = FakeCognito(users(1))
    fake.script["u1"] = ["TooManyRequestsException"]
    out = Collected()
    runner = make_runner(fake, out)

    # WHEN the row runs
    runner.run([update(1, "u1")])

    # THEN it was updated on the second attempt and one throttle was counted
    result = out.by_row()[1]
    assert (result.status, result.attempts) == (Status.UPDATED, 2)
    assert (runner.stats.calls, runner.stats.throttles, runner.stats.faults) == (2, 1, 0)


def test_a_row_that_gives_up_says_so_and_counts_every_fault() -> None:
    # GIVEN a user whose calls always fail with a service fault, 3 attempts allowed
    fake = FakeCognito(users(1))
    fake.script["u1"] = ["InternalErrorException"] * 5
    out = Collected()
    runner = make_runner(fake, out, retry=RetryPolicy(max_attempts=3, base_backoff=1e-5,
                                                      max_backoff=1e-4))

    # WHEN the row runs
    runner.run([update(1, "u1")])

    # THEN it failed after 3 attempts, and the 3 faults are counted
    result = out.by_row()[1]
    assert result.status == Status.FAILED
    assert result.error_code == "InternalErrorException"
    assert result.attempts == 3
    assert result.error_message.startswith("gave up after 3 attempts")
    assert runner.stats.faults == 3
    assert runner.fatal is None


def test_stop_before_the_run_skips_every_update_with_the_reason() -> None:
    # GIVEN a runner already told to stop
    fake = FakeCognito(users(3))
    out = Collected()
    runner = make_runner(fake, out)
    runner.stop("interrupted by SIGTERM")
    planned = RowResult(9, "x", Status.INVALID)

    # WHEN it is fed
    runner.run([update(1, "u1"), planned, update(2, "u2")])

    # THEN no call is made, updates are skipped with the reason, planned results pass
    assert fake.calls == []
    results = out.by_row()
    assert results[9] is planned
    for row in (1, 2):
        assert results[row].status == Status.SKIPPED
        assert results[row].error_message == "interrupted by SIGTERM"


def test_stop_during_the_run_lets_the_call_in_flight_finish() -> None:
    # GIVEN one worker, and a signal arriving during u3's call
    fake = FakeCognito(users(6))
    out = Collected()
    runner = make_runner(fake, out, workers=1)

    def hook(username: str) -> None:
        if username == "u3":
            runner.stop("interrupted by SIGINT")

    fake.hook = hook

    # WHEN six rows are run
    runner.run([update(i, f"u{i}") for i in range(1, 7)])

    # THEN u3's call completed, nothing started after it, and the stop is not fatal
    results = out.by_row()
    assert [results[i].status for i in range(1, 7)] == [Status.UPDATED] * 3 + [Status.SKIPPED] * 3
    assert len(fake.calls) == 3
    assert runner.fatal is None
    assert runner.stop_reason == "interrupted by SIGINT"


@pytest.mark.parametrize("error", [RuntimeError("a bug"), KeyboardInterrupt()])
def test_an_unexpected_error_after_the_call_was_sent_fails_the_row(
    error: BaseException,
) -> None:
    # GIVEN Cognito blows up in an unexpected way on u2, once its call was counted as sent
    fake = FakeCognito(users(3))

    def hook(username: str) -> None:
        if username == "u2":
            raise error

    fake.hook = hook
    out = Collected()
    runner = make_runner(fake, out)

    # WHEN the rows run
    runner.run([update(i, f"u{i}") for i in range(1, 4)])

    # THEN nothing escaped the worker: u2's row failed (its write may have landed) with the
    # error's type and at least the attempt that was sent; the others were applied
    results = out.by_row()
    assert results[2].status == Status.FAILED
    assert results[2].error_code == type(error).__name__
    assert results[2].attempts >= 1
    assert results[1].status == results[3].status == Status.UPDATED
    assert runner._sent == set()  # nothing kept of a row once it ended


@pytest.mark.parametrize("error", [RuntimeError("a bug"), KeyboardInterrupt()])
def test_an_unexpected_error_before_any_call_skips_the_row(error: BaseException) -> None:
    # GIVEN the resolve step (our read/diff code) blows up on u2, before any call for it
    fake = FakeCognito(users(3))

    def resolve(item: UserUpdate) -> UserUpdate:
        if item.username == "u2":
            raise error
        return item

    out = Collected()
    runner = make_runner(fake, out, resolve=resolve)

    # WHEN the rows run
    runner.run([update(i, f"u{i}") for i in range(1, 4)])

    # THEN u2 was never sent: skipped (not failed: no call was made), with the error's type
    # and no attempt, so `retry` (failed and skipped rows) redoes it; the others applied
    results = out.by_row()
    assert "u2" not in [name for _, name in fake.calls]
    assert results[2].status == Status.SKIPPED
    assert results[2].error_code == type(error).__name__
    assert results[2].attempts == 0
    assert "never sent" in results[2].error_message
    assert results[1].status == results[3].status == Status.UPDATED
    assert runner._sent == set()


def test_rows_keyed_by_email_are_resolved_before_the_call() -> None:
    # GIVEN rows keyed by email and a resolver that knows one of them
    fake = FakeCognito({"u1": {}})
    out = Collected()
    directory = {"a@example.com": "u1"}

    def resolve(item: UserUpdate) -> UserUpdate | RowResult:
        if item.key in directory:
            return UserUpdate(item.row, directory[item.key], item.attributes, key=item.key)
        return RowResult(item.row, "", Status.FAILED, error_code="UserNotFoundException",
                         key=item.key)

    runner = make_runner(fake, out, resolve=resolve)
    items = [
        UserUpdate(1, "", (("given_name", "A"),), key="a@example.com"),
        UserUpdate(2, "", (("given_name", "B"),), key="b@example.com"),
    ]

    # WHEN they run
    runner.run(items)

    # THEN the known one was written under its username, the other failed without a call
    results = out.by_row()
    assert (results[1].status, results[1].username, results[1].key) == (
        Status.UPDATED, "u1", "a@example.com")
    assert results[2].error_code == "UserNotFoundException"
    assert fake.calls == [("update", "u1")]


def test_an_error_message_that_echoes_a_value_is_not_kept() -> None:
    # GIVEN Cognito refusing a value and quoting it back
    from batch.errors import RowError
    from batch.models import UserUpdate
    from batch.view.messages import report_message

    update = UserUpdate(1, "u1", (("email", "ada@example.com"), ("custom:tier", "ab")))
    error = RowError("InvalidParameterException", "Invalid email address ada@example.com.")
    # WHEN the message is prepared for the report
    message = report_message(error, update)
    # THEN Cognito's words are replaced by ours (the code stays in its own column)
    assert "ada@example.com" not in message
    assert message.startswith("Cognito refused a parameter")


def test_a_reader_error_ends_the_feed_and_is_raised_after_rows_in_flight_report() -> None:
    # GIVEN a feed that yields 5 updates, then fails as a reader would on an unreadable file
    fake = FakeCognito(users(5))
    out = Collected()
    runner = make_runner(fake, out, workers=3)

    def feed() -> Iterator[UserUpdate]:
        for i in range(1, 6):
            yield update(i, f"u{i}")
        raise OSError("input vanished")

    # WHEN the run goes on
    with pytest.raises(OSError, match="input vanished"):
        runner.run(feed())

    # THEN the error reached the caller, and only after each row taken had its one result
    assert sorted(out.by_row()) == [1, 2, 3, 4, 5]
    assert all(r.status == Status.UPDATED for r in out.results)


def test_a_failing_result_sink_stops_the_run_and_is_raised() -> None:
    # GIVEN a report that cannot be written from the third result on (a full disk), a
    # Cognito that holds the calls past u3 until the run is stopping, and the failing write
    # coming once the window is full (so as many calls are out as it lets out, whatever the
    # scheduling)
    fake = FakeCognito(users(50))
    written: list[int] = []
    stop = threading.Event()
    held = threading.Condition()
    holding = 0

    def hook(username: str) -> None:
        nonlocal holding
        if int(username[1:]) > 3:
            with held:
                holding += 1
                held.notify_all()
            if not stop.wait(timeout=5):
                stop.set()  # never stopped: let the rest through, the assertions below fail

    fake.hook = hook

    def on_result(result: RowResult) -> None:
        if len(written) >= 2:
            with held:  # the window's other slots taken by held calls (or give up after 5 s)
                held.wait_for(lambda: holding >= runner.window() - 1, timeout=5)
            raise OSError("No space left on device")
        written.append(result.row)

    runner = Runner(fake, RunnerSettings(user_pool_id=POOL, workers=4, retry=FAST),  # type: ignore[arg-type]
                    controller=FixedRate(10_000), on_result=on_result, stop=stop)

    # WHEN the run goes on
    with pytest.raises(OSError, match="No space left"):
        runner.run([update(i, f"u{i}") for i in range(1, 51)])

    # THEN the run stopped instead of writing on without a record: past the two results
    # written, no more calls than one window of --workers 4
    assert runner.stopping
    assert len(fake.calls) <= 2 + 4, len(fake.calls)


def test_ctrl_c_in_the_waiting_thread_winds_the_run_down_and_is_raised() -> None:
    # GIVEN Python's default Ctrl-C handler (a library caller without the job's handlers), and
    # a Cognito that receives SIGINT while row 5 is being written
    # (later rows' calls hold until the run is stopping, so the interrupt lands mid-run)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    fake = FakeCognito(users(200))
    stop = threading.Event()

    def hook(username: str) -> None:
        if username == "u5":
            signal.raise_signal(signal.SIGINT)
        elif int(username[1:]) > 5 and not stop.wait(timeout=5):
            stop.set()  # never stopped: let the rest through, the assertions below will fail

    fake.hook = hook
    out = Collected()
    runner = make_runner(fake, out, workers=2, stop=stop)

    # WHEN the run goes on
    try:
        with pytest.raises(KeyboardInterrupt):
            runner.run([update(i, f"u{i}") for i in range(1, 201)])
    finally:
        signal.signal(signal.SIGINT, previous)

    # THEN it stopped instead of working through the input: every row has its one result,
    # the rest are skipped as interrupted, and past row 5 no more calls than the two workers
    # had in flight (held until the stop)
    results = out.by_row()
    assert sorted(results) == list(range(1, 201))
    assert runner.stop_reason == "interrupted"
    assert sum(r.status == Status.SKIPPED for r in results.values()) >= 200 - 5 - 2
    assert len(fake.calls) <= 5 + 2, len(fake.calls)


def test_the_window_cap_is_said_once_with_the_flag_that_lifts_it() -> None:
    # GIVEN --workers 8 and a rate of 150/s at 100 ms (Little's law asks for ~35 in flight)
    notes: list[str] = []
    runner = Runner(
        FakeCognito(users(1)),  # type: ignore[arg-type]
        RunnerSettings(user_pool_id=POOL, workers=8),
        controller=FixedRate(150.0), on_result=Collected(), on_note=notes.append,
    )
    runner.stats.latency = 0.1
    # WHEN calls complete after the first seconds, again and again
    start = runner._started
    with runner._lock:
        runner._check_cap(start + 1.0)  # too early: the latency estimate is still settling
        assert notes == []
        for second in range(4, 10):
            runner._check_cap(start + second)
    # THEN the progress line heard it once, naming the cap and --workers
    assert len(notes) == 1 and runner.cap_note == notes[0]
    assert "--workers 8 caps the calls in flight" in notes[0] and "raise --workers" in notes[0]


def test_no_cap_is_said_when_the_window_fits() -> None:
    # GIVEN a bound of 64 and the same 150/s at 100 ms
    notes: list[str] = []
    runner = Runner(
        FakeCognito(users(1)),  # type: ignore[arg-type]
        RunnerSettings(user_pool_id=POOL, workers=64),
        controller=FixedRate(150.0), on_result=Collected(), on_note=notes.append,
    )
    runner.stats.latency = 0.1
    with runner._lock:
        runner._check_cap(runner._started + 10.0)
    # THEN nothing is said: nothing holds the rate back
    assert notes == [] and runner.cap_note == ""


def test_the_window_follows_the_latency_up_to_a_bound_that_fits_slow_answers() -> None:
    # GIVEN the default bound and 150/s asked for (a raised quota)
    runner = Runner(
        FakeCognito(users(1)),  # type: ignore[arg-type]
        RunnerSettings(user_pool_id=POOL, workers=DEFAULT_WORKERS),
        controller=FixedRate(150.0), on_result=Collected(),
    )
    # WHEN every call takes 1 s (a Lambda trigger), then 100 ms, then 1 s with a 1 s read
    windows = []
    for latency, resolve in ((1.0, 0.0), (0.1, 0.0), (1.0, 1.0)):
        runner.stats.latency, runner.stats.resolve = latency, resolve
        windows.append(runner.window())
    # THEN the window holds what fills 150/s at each (Little's law), growing and shrinking
    assert windows[0] >= 150 and windows[1] < 40 and windows[2] >= 300
    assert max(windows) <= DEFAULT_WORKERS


def test_the_cap_note_names_the_default_bound_when_it_binds() -> None:
    # GIVEN the default bound, 150/s and calls that take 5 s (750 in flight needed)
    notes: list[str] = []
    runner = Runner(
        FakeCognito(users(1)),  # type: ignore[arg-type]
        RunnerSettings(user_pool_id=POOL, workers=DEFAULT_WORKERS),
        controller=FixedRate(150.0), on_result=Collected(), on_note=notes.append,
    )
    runner.stats.latency = 5.0
    # ... after the climber's one experiment at fewer calls found the answers slow
    runner.climber.low, runner.climber.slow = 1, 5.0
    with runner._lock:
        runner._check_cap(runner._started + 10.0)
    # THEN the note names the bound, that it is --workers' default, and how far it goes
    assert notes == [runner.cap_note]
    assert f"the bound of {DEFAULT_WORKERS} calls in flight (--workers' default)" in notes[0]
    assert f"up to {MAX_WORKERS}" in notes[0]


def test_a_fatal_read_stops_the_job_at_once_and_the_rows_after_it_are_skipped() -> None:
    # GIVEN one worker and a resolve step (the read before the write) whose 3rd read is refused
    # as the deleted pool's would be
    from batch.pace.retrying import Cancelled

    fake = FakeCognito(users(10))
    out = Collected()
    reads: list[int] = []

    def resolve(item: UserUpdate) -> UserUpdate:
        reads.append(item.row)
        if item.row == 3:
            raise FatalError("ResourceNotFoundException", "User pool does not exist.")
        return item

    runner = make_runner(fake, out, workers=1, resolve=resolve)  # one: no row read after 3

    # WHEN ten rows are run
    runner.run([update(i, f"u{i}") for i in range(1, 11)])

    # THEN the refused read fails its row with Cognito's code and stops the job as fatal; no
    # later row is read, written or failed: each is skipped, Stopped
    results = out.by_row()
    assert (results[3].status, results[3].error_code) == (Status.FAILED,
                                                          "ResourceNotFoundException")
    assert isinstance(runner.fatal, FatalError) and runner.stopping
    assert reads == [1, 2, 3]
    assert [(results[i].status, results[i].error_code) for i in range(4, 11)] == [
        (Status.SKIPPED, "Stopped")] * 7
    assert fake.calls == [("update", "u1"), ("update", "u2")]

    # AND a read cancelled by the stop is skipped, Stopped, never failed with "Cancelled"
    out2 = Collected()

    def cancelled(item: UserUpdate) -> UserUpdate:
        raise Cancelled("job stopping")

    make_runner(FakeCognito(users(3)), out2, resolve=cancelled).run(
        [update(i, f"u{i}") for i in range(1, 4)])
    assert {(r.status, r.error_code) for r in out2.results} == {(Status.SKIPPED, "Stopped")}


def test_the_window_opens_with_the_wait_before_the_first_answer() -> None:
    # GIVEN 150/s, the default bound, a manual clock, and calls that take 1 s (issue 22 item
    # 2: the latency's prior, 50 ms, held the window at ~16 through the first second)
    clock = ManualClock()
    fake = FakeCognito(users(1))
    fake.hook = lambda _username: clock.sleep(1.0)
    runner = Runner(
        fake,  # type: ignore[arg-type]
        RunnerSettings(user_pool_id=POOL, workers=DEFAULT_WORKERS),
        controller=FixedRate(150.0), on_result=Collected(), clock=clock,
    )
    at_start = runner.window()
    # WHEN a second passes with no answer yet
    clock.sleep(1.0)
    # THEN the window holds what a second's wait says: 150/s x 1 s at least
    assert at_start < 20 and runner.window() >= 225
    # ... while the climber is told the window measured (told the wait as a window past its
    # bound with nothing delivered, it jumped to one call in flight)
    assert runner.wanted(aged=False) == at_start
    # WHEN the first answer comes, after 1 s, THEN it sets the latency (not 20 % of it)
    runner._call(update(1, "u1", tier="gold"), "update")  # noqa: SLF001
    assert runner.stats.latency == pytest.approx(1.0)
    # ... and the wait no longer counts: the window follows the latency measured
    clock.sleep(30.0)
    assert 225 <= runner.window() < 300


def test_workers_start_as_the_window_opens_while_every_row_waits() -> None:
    # GIVEN 150/s, a clock a test can move a second on, and rows whose reads do not answer
    # until 40 are under way at once (the first answers at 1 s are a second away)
    offset = [0.0]
    barrier = threading.Barrier(40, timeout=10)
    entered = iter(range(1, 10**6))
    full = threading.Event()  # as many rows wait as the window first allowed

    def resolve(u: UserUpdate) -> UserUpdate:
        n = next(entered)
        if n == at_start:
            full.set()
        if n <= 40:
            barrier.wait()  # broken (a failed row) unless 40 rows are in flight together
        return u

    out = Collected()
    runner = Runner(
        FakeCognito(users(60)),  # type: ignore[arg-type]
        RunnerSettings(user_pool_id=POOL, workers=DEFAULT_WORKERS),
        controller=FixedRate(150.0), on_result=out, resolve=resolve,
        clock=lambda: time.monotonic() + offset[0],
    )
    at_start = runner.window()  # ~14: workers have stopped starting one another once it is
    thread = threading.Thread(target=runner.run, args=([update(i, f"u{i}", tier="gold")
                                                        for i in range(1, 61)],))
    thread.start()
    # WHEN that many rows wait, then a second passes with no answer (the window opens to ~230)
    assert full.wait(10)
    offset[0] += 1.0
    thread.join(30)
    # THEN workers started for the open window without any row coming back: all updated
    assert {r.status for r in out.by_row().values()} == {Status.UPDATED}


def test_a_latency_measured_before_the_loop_opens_the_first_window() -> None:
    # GIVEN 150/s and an answer time of 1 s measured at the start (the read check): the first
    # rows resolve at once (read at the start), so no wait would size the window yet
    clock = ManualClock()
    runner = Runner(
        FakeCognito(users(1)),  # type: ignore[arg-type]
        RunnerSettings(user_pool_id=POOL, workers=DEFAULT_WORKERS, latency_hint=1.0),
        controller=FixedRate(150.0), on_result=Collected(), clock=clock,
    )
    # THEN the window holds 150/s x 1 s from the start, before any answer
    assert runner.window() >= 225
    # ... the climber is still told the window measured, not the hint
    assert runner.wanted(aged=False) < 20
    # WHEN the first answer comes (fast), THEN it alone sizes the window
    runner._call(update(1, "u1", tier="gold"), "update")  # noqa: SLF001
    assert runner.window() < 20
