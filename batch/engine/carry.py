"""A resume's carry on a thread of its own: the runner writes while the finished rows go in.

Before, a resume copied every finished row of the old journal into a compacted journal and
into the report before its first call: at 2 M rows, seconds of a container doing nothing
(issue 22 item 4). Now the journal is appended to as it is (``Journal(append_at=...)``) and
only the report needs the carried rows. ``CarrySink`` is the report's sink for a resume: its
thread writes the old journal's finished rows, then the results this run has journaled since
(the journal is the spill: nothing is held in memory, however far the runner got), then, under
the fan-out's lock, the last of those, and from then on each result as it comes. So the
report reads as before: carried rows, then this run's results in the journal's order. The
thread starts once the runner's first call is answered (``after_first_call``), or when the
apply ends without one: copying rows takes the interpreter's lock from the workers, and the
first calls should not wait for it (measured: ~0.8 s more to the first write at 2 M rows).

A signal (or a lost lease) during the carry stops it within ``CHECK_EVERY`` rows: the half
report is then removed by the pipeline, and the journal holds every result, so the same command
resumes. A stop of the pipeline's own (the brake, a changed input) lets it finish: that run
still ends with a whole report.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable
from typing import IO

from batch.models import Counters, RowResult
from batch.record.journal import JournalState, decode
from batch.record.report import ReportWriter
from batch.rowset import RowSet

#: Rows between two looks at the stop.
CHECK_EVERY = 4096
#: Bytes of the journal's new lines read at a time.
BLOCK = 1 << 20
#: Once a pass over the new lines finds fewer than this many, the rest is copied under the lock.
CAUGHT_UP = 256


class CarryStopped(Exception):
    """A signal arrived while a resume copied the finished rows."""


class CarrySink:
    """The report of a resume (``engine.sinks.ReportSink``'s part), filled by a thread until
    it catches up with the results, then by ``on_result`` (under the fan-out's ``lock``)."""

    def __init__(
        self,
        writer: ReportWriter,
        reported: RowSet,
        state: JournalState,
        lock: threading.Lock,
        *,
        urgent: threading.Event,
        on_carried: Callable[[Counters], None],
        on_error: Callable[[str], None],
    ) -> None:
        self.writer, self.reported, self.state, self.lock = writer, reported, state, lock
        self.urgent = urgent  # set by a stop that must be prompt (a signal)
        self.on_carried = on_carried  # the carried rows' counts, once all are in the report
        self.on_error = on_error  # stops the run: a report that cannot be written
        self.counts = Counters()
        self.live = False
        self.stopped = False
        self.error: BaseException | None = None
        self._abort = threading.Event()  # the apply ended before the carry did
        self._started = False
        self._starting = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="cognito-batch_carry",
                                        daemon=True)

    def start(self) -> None:
        with self._starting:
            if not self._started:
                self._started = True
                self._thread.start()

    def after_first_call(self, hook: Callable[[float], None]) -> Callable[[float], None]:
        """The runner's ``on_call`` hook, starting the carry on the first answered call."""

        def called(seconds: float) -> None:
            if not self._started:
                self.start()
            hook(seconds)

        return called

    def on_result(self, result: RowResult) -> None:
        self.reported.add(result.row)
        if self.live:
            self.writer.write(result)
        # else: journaled just before this (the journal's sink is first); the thread copies it

    def wait(self) -> bool:
        """Until the carry has ended: True when the report holds every row so far (from
        then on each result goes in as it comes), False when a signal stopped it. A report
        that could not be written is raised here."""
        self.start()
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.live

    def close(self, finished: bool) -> None:
        with self._starting:
            self._started = True  # never started from now on
        if self._thread.is_alive():  # ended early (an error): stop the copy, then close
            self._abort.set()
            self._thread.join()
        self.writer.close()  # durable (fsync'd) before the summary and the marker

    # -- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._carry()
            with open(self.state.path, "rb") as journal:
                offset = self.state.valid_bytes
                while True:
                    offset, copied = self._follow(journal, offset)
                    if copied < CAUGHT_UP:
                        break
                with self.lock:  # no result is journaled meanwhile: the last of them, then live
                    self._follow(journal, offset)
                    self.live = True
        except CarryStopped:
            self.stopped = True
        except BaseException as exc:  # noqa: BLE001 - raised in the main thread by wait()
            self.error = exc
            self.on_error(f"the report could not be written ({type(exc).__name__})")

    def _carry(self) -> None:
        by_status, by_error = self.counts.by_status, self.counts.by_error
        write = self.writer.write_cells
        for n, (_, cells) in enumerate(self.state.carried()):
            if not n % CHECK_EVERY:
                self._check()
            write(cells)
            by_status[cells[3]] = by_status.get(cells[3], 0) + 1
            if cells[5]:
                by_error[cells[5]] = by_error.get(cells[5], 0) + 1
        self.on_carried(self.counts)

    def _check(self) -> None:
        if self.urgent.is_set() or self._abort.is_set():
            raise CarryStopped

    def _follow(self, journal: IO[bytes], offset: int) -> tuple[int, int]:
        """This run's results journaled from ``offset`` on, into the report: whole lines only
        (one being written waits for the next pass); the offset reached and the rows copied."""
        copied = 0
        while True:
            journal.seek(offset)
            data = journal.read(BLOCK)
            end = data.rfind(b"\n") + 1
            if not end:
                return offset, copied
            for line in data[: end - 1].split(b"\n"):
                payload = line[9:]
                if zlib.crc32(payload) != int(line[:8], 16):
                    return offset, copied  # not whole yet: seen again on the next pass
                offset += len(line) + 1
                if not payload[:1].isdigit():
                    continue  # not a result
                if not copied % CHECK_EVERY:
                    self._check()
                self.writer.write(decode(payload))
                copied += 1
