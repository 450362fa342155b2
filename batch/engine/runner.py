"""The bounded worker pool that applies updates: paced, retried, stoppable.

Shape: worker threads pull planned rows from one shared feed through a *window* that bounds
how many rows are in flight, so the reader never runs more than the window ahead and memory
stays flat. The window follows Little's law: the calls needed in flight to fill the rate at the
observed latency, capped by ``workers``; a worker starts only when all are busy and the window
allows one more. No thread hands rows to another: a row is read, planned, sent and reported
by the thread that took it, which keeps a row's CPU close to a bare boto3 loop's.

Every worker catches everything at its boundary and returns a ``RowResult``: nothing escapes a
worker thread. A fatal error, or ``stop()`` (a signal), ends the run quickly: in-flight calls
finish, no new call starts, sleeping back-offs wake at once, and every row not applied is
reported ``skipped`` with the reason.
"""

from __future__ import annotations

import functools
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping

from batch.config import DEFAULT_WORKERS, MAX_WORKERS
from batch.engine.breaker import EndpointBreaker
from batch.engine.concurrency import ConcurrencyClimber
from batch.engine.lanes import UPDATE_CATEGORY, Lane, category_of, send
from batch.engine.runner_settings import RunnerSettings as RunnerSettings  # for callers
from batch.engine.runner_settings import Stats
from batch.engine.runner_settings import Writer as Writer  # for callers
from batch.errors import (
    CognitoError,
    FatalError,
    RetryableError,
    ThrottledError,
    TransientError,
    TriggerError,
)
from batch.models import RowResult, Status, UserUpdate
from batch.pace.controllers import RateController
from batch.pace.pacer import Clock, event_waiter
from batch.pace.retrying import Cancelled, Retrier
from batch.pace.user_gate import UserGate
from batch.plan.operations import Kind, Operation, SyncUpdate
from batch.view.messages import report_message

#: Consecutive rows ending on a broken Lambda trigger before the job stops.
TRIGGER_BREAKER = 5


def progress_figures(
    controller: RateController, runner: Callable[[], Runner | None], quota: float
) -> Callable[[], dict[str, float]]:
    """The progress line's live figures. ``runner`` may not exist yet: carried rows of a
    resume are shown before it does."""

    def figures() -> dict[str, float]:
        current = runner()
        stats = current.stats if current is not None else None
        return {"rate": controller.rate, "throttles": stats.throttles if stats else 0,
                "calls": stats.calls if stats else 0, "quota": quota}

    return figures


class Runner:
    """Applies updates; feed it with ``run(items)``. One instance, one run."""

    def __init__(
        self,
        writer: Writer,
        settings: RunnerSettings,
        *,
        controller: RateController,
        on_result: Callable[[RowResult], None],
        resolve: Callable[[UserUpdate], UserUpdate | RowResult] | None = None,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        stop: threading.Event | None = None,
        on_call: Callable[[float], None] | None = None,
        on_note: Callable[[str], None] | None = None,
        controllers: Mapping[str, RateController] | None = None,
    ) -> None:
        self.writer = writer
        self._on_call = on_call  # each accepted call's seconds (the timeline's latency)
        self.settings = settings
        self.controller = controller
        self._on_result = on_result
        self._resolve = resolve
        self._clock = clock
        self._stop = stop or threading.Event()
        self.stop_reason = ""
        self.fatal: CognitoError | None = None
        self._wait = event_waiter(self._stop)
        # One lane per quota category (``lanes.py``): ``controller`` paces UserUpdate, the
        # attribute writes; ``controllers`` the other categories a sync calls (UserCreation).
        self.lanes = {UPDATE_CATEGORY: Lane.of(controller, clock)}
        for category, other in (controllers or {}).items():
            self.lanes.setdefault(category, Lane.of(other, clock))
        self.group = self.lanes[UPDATE_CATEGORY].group
        self.pacer = self.lanes[UPDATE_CATEGORY].pacer
        self.cap_note = ""  # said once when --workers caps what the rate needs
        self._on_note = on_note
        self._started = clock()
        self.gate = UserGate(per_user_rate=settings.per_user_rate, clock=clock)
        self.retrier = Retrier(
            settings.retry, wait=self._wait, clock=clock, rng=rng, on_retry=self._count_retry
        )
        self.stats = Stats()
        self.climber = ConcurrencyClimber(settings.workers, clock=clock)
        self.breaker = EndpointBreaker(settings.give_up_after, clock=clock)
        # Re-entrant: a signal handler (main thread) may stop the run while it holds the lock.
        self._lock = threading.RLock()
        self._window = threading.Condition(self._lock)  # room in the window
        self._trigger_streak = 0
        self._live = 0  # worker threads started and not yet ended
        self._sent: set[int] = set()  # rows in a worker with a call sent (``_unexpected``)
        self._answered = self._resolved = False  # the first of each sets its estimate

    # -- control -----------------------------------------------------------------------------

    def stop(self, reason: str) -> None:
        """Start no new call; rows not yet applied end ``skipped`` with ``reason``."""
        with self._lock:
            if not self.stop_reason:
                self.stop_reason = reason
            self._window.notify_all()
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wanted(self, *, aged: bool = True) -> int:
        """Calls in flight that fill the rate: rate x latency (Little's law), half again for
        jitter, + 1, + the pacer's group (its slots leave together). A row holds its slot
        through ``resolve`` too, so that time counts."""
        held = self.stats.latency + self.stats.resolve
        if aged and not self._answered:  # no answer yet: a call takes at least the wait so far
            held = max(held, self._clock() - self._started, self.settings.latency_hint)
        busy = [lane for lane in self.lanes.values() if lane.calls] or [self.lanes[UPDATE_CATEGORY]]
        rate = sum(lane.controller.rate for lane in busy)  # each busy category's calls in flight
        return math.ceil(rate * held * 1.5 - 1e-6) + 1 + sum(lane.group for lane in busy)

    def _check_cap(self, now: float) -> None:
        """Say once when ``workers`` holds the rate back (caller holds the lock). Not when the
        climber chose fewer (a CPU-bound local endpoint; answers found slow do not count),
        nor in the first seconds, while the latency estimate settles."""
        workers = self.settings.workers
        cpu_bound = self.climber.low < workers and not self.climber.slow
        if self.cap_note or now - self._started < 3.0 or cpu_bound:
            return
        wanted = self.wanted()
        if wanted <= workers:
            return
        bound = (f"the bound of {workers} calls in flight (--workers' default)"
                 if workers == DEFAULT_WORKERS else f"--workers {workers}")
        self.cap_note = (
            f"{bound} caps the calls in flight: {self.controller.rate:.0f} calls/s at "
            f"{1000 * self.stats.latency:.0f} ms needs about {wanted}; raise --workers (up to "
            f"{MAX_WORKERS}) to lift it"
        )
        if self._on_note is not None:
            self._on_note(self.cap_note)

    def window(self) -> int:
        """Rows allowed in flight: Little's law's capped by ``workers``, or fewer when the rate
        does not bind and fewer deliver as much (``concurrency.py``)."""
        return max(1, min(self.settings.workers, self.wanted(), self.climber.limit))

    # -- the run -----------------------------------------------------------------------------

    def run(self, items: Iterable[UserUpdate | RowResult]) -> None:
        """Apply every update; report every item. Returns when all results are out.

        Workers pull the next row themselves (reading and planning it under the feed lock), so
        a row costs no hand-off between threads: with one row in flight the job runs on one
        thread like a plain loop. A new worker starts only when every live one is busy and the
        window allows more. An error raised by ``items`` (the reader) ends the feed: rows in
        flight finish and report, then ``run`` raises it.
        """
        self._items = iter(items)
        self._feed = threading.Lock()
        self._exhausted = False
        self._error: BaseException | None = None
        self._threads: list[threading.Thread] = []
        with self._window:
            self._spawn()
        try:
            # Polled, holding no lock: a KeyboardInterrupt landing inside a Condition's (or an
            # Event's) wait can leave this thread holding that lock, and the workers, which
            # need it to finish, would then block the joins below for ever (seen under load).
            # A plain sleep is interrupted cleanly; 10 ms is the most a run's end waits.
            while self._live:
                time.sleep(0.01)
                self._grow()
        except BaseException:  # e.g. KeyboardInterrupt without the job's handlers: wind down
            self.stop("interrupted")
            raise
        finally:
            for thread in list(self._threads):
                thread.join()
        if self._error is not None:
            raise self._error

    def _grow(self) -> None:
        """Start a worker if the window opened while every one waits; never blocks (tried)."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            if (not self._exhausted and not self.stopping
                    and self._live <= self.stats.in_flight < self.window()):
                self._spawn()
        finally:
            self._lock.release()

    def _spawn(self) -> None:
        """Start one more worker (caller holds the lock)."""
        self._live += 1
        thread = threading.Thread(
            target=self._work, name=f"cognito-batch_{len(self._threads)}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _next(self) -> UserUpdate | RowResult | None:
        """The next item, once the window has room for it; None when the feed is over."""
        with self._window:
            while (
                not self._exhausted
                and not self.stopping
                and self.stats.in_flight >= self.window()
            ):
                self._window.wait(0.5)
            if self._exhausted:
                return None
            self.stats.in_flight += 1  # the slot is held while the row is read
        item: UserUpdate | RowResult | None
        with self._feed:
            try:
                item = next(self._items, None) if not self._exhausted else None
            except BaseException as exc:  # noqa: BLE001 - raised again by run()
                self._error = exc
                item = None
        with self._window:
            if item is None:
                self._exhausted = True
                self._window.notify_all()  # every waiting worker leaves
            if not isinstance(item, UserUpdate) or self.stopping:
                self._release()  # no call for this item: the slot was only for reading it
            elif self._live <= self.stats.in_flight < self.window():
                self._spawn()  # every worker is busy and the window has room for one more
        return item

    def _release(self) -> None:
        """Give back a slot (caller holds the lock). The releasing worker comes back for a slot
        itself, so wake a waiting one only if there is room for both: a futile wake-up per row
        cost CPU once the window shrank."""
        self.stats.in_flight -= 1
        if self.stats.in_flight + 1 < self.window():
            self._window.notify()

    def _work(self) -> None:
        try:
            while (item := self._next()) is not None:
                if isinstance(item, RowResult):
                    self._on_result(item)
                elif self.stopping:
                    self._on_result(self._skipped(item, 0))
                else:
                    self._worker(item)
        except BaseException as exc:  # noqa: BLE001 - on_result failed: end the run, re-raise
            with self._window:
                self._error = self._error or exc
                self._exhausted = True
            self.stop(f"internal error: {type(exc).__name__}")
        finally:
            with self._window:
                self._live -= 1
                self._window.notify_all()

    def _worker(self, update: UserUpdate) -> None:
        try:
            result = self._apply(update)
        except BaseException as exc:  # noqa: BLE001 - the worker boundary: record, never raise
            result = self._unexpected(update, exc)
        try:
            self._on_result(result)
        finally:
            with self._window:
                self._sent.discard(update.row)
                self._release()

    def _unexpected(
        self, update: UserUpdate, exc: BaseException, attempts: int = 0, elapsed: int = 0
    ) -> RowResult:
        """An exception nothing expected (a bug in resolve or before a request left): ``failed``
        once a call for the row was counted as sent (its write may have landed), else
        ``skipped`` with no attempt, as any row never sent is (``retry`` redoes both)."""
        with self._lock:
            sent = update.row in self._sent
        message = report_message(exc, update)
        if not sent:
            attempts, message = 0, f"never sent: {message}"
        else:
            attempts = max(attempts, 1)  # counted as sent: one went out, at least
        return RowResult(
            update.row, update.username, Status.FAILED if sent else Status.SKIPPED,
            attempts=attempts, error_code=type(exc).__name__, error_message=message[:500],
            elapsed_ms=elapsed, key=update.key,
        )

    def _apply(self, update: UserUpdate) -> RowResult:
        started = self._clock()
        if self._resolve is not None:
            try:
                resolved = self._resolve(update)
            except (CognitoError, Cancelled) as exc:  # a read's end is the row's, as a write's
                if isinstance(exc, TransientError):  # it spent its retries: the endpoint too?
                    self._endpoint_failed(exc)
                return self._result(update, 0, exc, int((self._clock() - started) * 1000))
            with self._lock:
                took, old = self._clock() - started, self.stats.resolve  # the first: as is
                self.stats.resolve = 0.8 * old + 0.2 * took if self._resolved else took
                self._resolved = True
            if isinstance(resolved, RowResult):
                return resolved
            update = resolved
        if self.stopping:
            return self._skipped(update, 0)
        if not self.gate.enter(update.username, self._wait):
            return self._skipped(update, 0)
        attempts = 0
        try:
            error: BaseException | None = None
            # A sync's row: its operations in order, each under its own category; the first
            # that fails fails the row. Any other row: today's attribute pair.
            ops = update.ops if isinstance(update, SyncUpdate) else (Operation(
                Kind.UPDATE, update.username, update),)
            for op in ops:
                if op.kind is not Kind.UPDATE:
                    outcome = self.retrier.run(functools.partial(self._call, update,
                                                                 op.kind.value, op))
                    attempts, error = attempts + outcome.attempts, outcome.error
                    if error is not None:
                        break
                    continue
                attrs = op.update or update
                if attrs.attributes:
                    outcome = self.retrier.run(functools.partial(self._call, attrs, "update"))
                    attempts, error = attempts + outcome.attempts, outcome.error
                if error is None and attrs.deletes:
                    outcome = self.retrier.run(functools.partial(self._call, attrs, "delete"))
                    attempts, error = attempts + outcome.attempts, outcome.error
                if error is not None:
                    break
        finally:
            self.gate.leave(update.username)
        elapsed = int((self._clock() - started) * 1000)
        if error is not None and not isinstance(error, (CognitoError, Cancelled)):
            return self._unexpected(update, error, attempts, elapsed)  # a bug, not an answer
        return self._result(update, attempts, error, elapsed)

    def _call(self, update: UserUpdate, kind: str, op: Operation | None = None) -> None:
        lane = self.lanes.get(category_of(kind), self.lanes[UPDATE_CATEGORY])
        if self.stopping or not lane.pacer.acquire(self._wait):
            raise Cancelled(self.stop_reason or "job stopping")
        sent = self._clock()
        with self._lock:
            self.stats.calls += 1
            lane.calls += 1
            self._sent.add(update.row)
        try:
            self._send(update, kind, op)
        except ThrottledError:
            self._answered = True  # the age since the start no longer sizes the window
            lane.controller.on_throttle(sent, self._clock())
            self._follow_controller(lane)
            raise
        now = self._clock()
        lane.controller.on_success(sent, now)
        self._follow_controller(lane)
        with self._lock:
            self.stats.latency = (0.8 * self.stats.latency + 0.2 * (now - sent)
                                  if self._answered else now - sent)
            self._answered = True
            self._check_cap(now)
        if self._on_call is not None:
            self._on_call(now - sent)

    def _follow_controller(self, lane: Lane) -> None:
        """The lane's pacer takes its controller's rate and group."""
        lane.follow()
        self.group = self.lanes[UPDATE_CATEGORY].group

    def _send(self, update: UserUpdate, kind: str, op: Operation | None = None) -> None:
        """The one HTTP call; however it ends, the concurrency climber counts it."""
        began = self._clock()
        try:
            if op is not None:
                send(self.writer, self.settings.user_pool_id, op,
                     self.settings.client_metadata or None)
            elif kind == "update":
                self.writer.update_user_attributes(
                    self.settings.user_pool_id, update.username, update.attributes,
                    client_metadata=self.settings.client_metadata or None,
                )
            else:
                self.writer.delete_user_attributes(
                    self.settings.user_pool_id, update.username, update.deletes
                )
        except TransientError as exc:
            self._endpoint_failed(exc)
            raise
        except CognitoError:
            self.breaker.answered()
            raise
        else:
            self.breaker.answered()
        finally:
            # Little's window as measured: the wait before the first answer is no CPU queue.
            self.climber.on_call(self.controller.rate, self.wanted(aged=False),
                                 self._clock() - began)

    def _endpoint_failed(self, exc: TransientError) -> None:
        if self.breaker.failed(exc.code):  # a dead endpoint: stop as on a fatal error
            self.fatal = self.fatal or FatalError("EndpointUnreachable", self.breaker.reason)
            self.stop(self.breaker.reason)

    def _count_retry(self, exc: BaseException) -> None:
        with self._lock:
            if isinstance(exc, ThrottledError):
                self.stats.throttles += 1
            else:
                self.stats.faults += 1

    def _result(
        self, update: UserUpdate, attempts: int, error: BaseException | None, elapsed: int
    ) -> RowResult:
        if error is None:
            with self._lock:
                self._trigger_streak = 0
            created = isinstance(update, SyncUpdate) and update.creates
            return RowResult(
                update.row, update.username, Status.CREATED if created else Status.UPDATED,
                attempts=attempts, elapsed_ms=elapsed, key=update.key,
            )
        if isinstance(error, Cancelled):
            return self._skipped(update, attempts, elapsed)
        code = getattr(error, "code", type(error).__name__)
        message = report_message(error, update)  # Cognito's words only in a known-safe shape
        if isinstance(error, ThrottledError):
            # Counted here too: the last throttle of a row that gave up had no retry after it.
            with self._lock:
                self.stats.throttles += 1
            message = f"gave up after {attempts} attempts: {message}"
        elif isinstance(error, RetryableError):
            with self._lock:
                self.stats.faults += 1
            message = f"gave up after {attempts} attempts: {message}"
        if isinstance(error, FatalError):
            self.fatal = self.fatal or error
            self.stop(f"fatal error {code}: {message}")
        elif isinstance(error, TriggerError):
            with self._lock:
                self._trigger_streak += 1
                streak = self._trigger_streak
            if streak >= TRIGGER_BREAKER:
                self.fatal = self.fatal or error
                self.stop(f"{streak} rows in a row failed on a broken Lambda trigger ({code})")
        return RowResult(
            update.row, update.username, Status.FAILED, attempts=attempts, error_code=str(code),
            error_message=str(message)[:500], elapsed_ms=elapsed, key=update.key,
        )

    def _skipped(self, update: UserUpdate, attempts: int, elapsed: int = 0) -> RowResult:
        return RowResult(
            update.row, update.username, Status.SKIPPED, attempts=attempts,
            error_code="Stopped", error_message=self.stop_reason or "job stopping",
            elapsed_ms=elapsed, key=update.key,
        )
