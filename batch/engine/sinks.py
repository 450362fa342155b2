"""Where a row's result goes: a small protocol, and the sinks every apply has.

The runner hands each result to one callable (``Fanout``); it passes the result to every
sink, the journal first. ``close(finished)`` ends a sink: ``finished`` is True only when every
row has its result (no stop, no unreached row), which is what lets the journal and the
before-images say ``complete``. ``Closing`` closes a list of sinks in order when its block
ends, each as unfinished if the block raised.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Protocol

from batch.engine.brake import Brake
from batch.models import RowResult
from batch.record.journal import Journal
from batch.record.report import ReportWriter
from batch.record.timeline import Recorder
from batch.rowset import RowSet
from batch.view.progress import Progress


class Sink(Protocol):
    """Takes every result of an apply; is closed once, when it ends."""

    def on_result(self, result: RowResult) -> None: ...
    def close(self, finished: bool) -> None: ...


class Fanout:
    """The runner's ``on_result``: ``ordered`` sinks under one lock (the journal first, so a
    row is durable before it is reported; the report's rows in the journal's order), then
    ``free`` sinks outside it (progress, the brake: they may stop the run)."""

    def __init__(self, ordered: Sequence[Sink], free: Sequence[Sink]) -> None:
        self.ordered, self.free = list(ordered), list(free)
        self.lock = threading.Lock()

    def __call__(self, result: RowResult) -> None:
        with self.lock:
            for sink in self.ordered:
                sink.on_result(result)
        for sink in self.free:
            sink.on_result(result)


class Closing:
    """``with Closing(sinks) as group:`` ... ``group.close(finished)``; the block's end closes
    them (unfinished) if that was never reached. Every sink is closed even if one fails."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)
        self.closed = False

    def close(self, finished: bool) -> None:
        if self.closed:
            return
        self.closed = True
        error: BaseException | None = None
        for sink in self.sinks:
            try:
                sink.close(finished)
            except BaseException as exc:  # noqa: BLE001 - the others still close; raised below
                error = error or exc
        if error is not None:
            raise error

    def __enter__(self) -> Closing:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.close(False)
            return
        try:
            self.close(False)
        except Exception:  # noqa: BLE001 - the block's own error is the one to raise
            pass


class JournalSink:
    """Every result, durable first. Closed last, after the summary: ``complete`` vouches for
    the report and summary, so it is written only once they are on disk."""

    def __init__(self, journal: Journal, image: Callable[[int], str] | None = None) -> None:
        self.journal = journal
        self.image = image  # a row's before-image digest, for its line (``Work.image``)

    def on_result(self, result: RowResult) -> None:
        self.journal.write(result, self.image(result.row) if self.image is not None else "")

    def close(self, finished: bool) -> None:
        try:
            if finished:
                self.journal.complete()
        finally:
            self.journal.close()


class ReportSink:
    """The report, and the rows it holds (a bitmap: what the unreached pass leaves out)."""

    def __init__(self, writer: ReportWriter, reported: RowSet) -> None:
        self.writer, self.reported = writer, reported

    def on_result(self, result: RowResult) -> None:
        self.writer.write(result)
        self.reported.add(result.row)

    def wait(self) -> bool:
        """Every row so far is in the report (a resume's ``CarrySink`` may still be copying)."""
        return True

    def close(self, finished: bool) -> None:
        self.writer.close()  # durable (fsync'd) before the summary and the marker


class ProgressSink:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def on_result(self, result: RowResult) -> None:
        self.progress.add(result)

    def close(self, finished: bool) -> None:
        self.progress.close()


class BrakeSink:
    """``--max-failures``: stops the apply when the failures say the job is broken."""

    def __init__(self, brake: Brake, stop: Callable[[str], None]) -> None:
        self.brake, self.stop = brake, stop

    def on_result(self, result: RowResult) -> None:
        if self.brake.add(result):
            self.stop(self.brake.reason)

    def close(self, finished: bool) -> None:
        pass


class TimelineSink:
    """The timeline samples the runner on its own thread; closing saves it, marked complete
    when the apply finished."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def on_result(self, result: RowResult) -> None:
        pass

    def close(self, finished: bool) -> None:
        self.recorder.close(complete=finished)
