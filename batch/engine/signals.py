"""SIGINT, SIGTERM and SIGHUP during a run: the first stops it gracefully, a second Ctrl-C exits
now.

A graceful stop lets the calls in flight finish, reports every row not applied ``skipped``
and exits 130 (SIGINT), 143 (SIGTERM) or 129 (SIGHUP). SIGHUP (a closed terminal or ssh
session) used to kill the job on the spot, with the report behind the journal and no summary;
it is now a graceful stop like SIGTERM (unless it was ignored when the job started, as
``nohup`` does: then it stays ignored and the job runs on). The terminal it came from is
gone, and writing to a hung-up terminal fails (EIO), so stdout and stderr that were that
terminal are pointed at ``/dev/null`` first: the report and summary files still get written.

The second Ctrl-C leaves at once, after an fsync of the journal: every result so far is in it
already (written line by line), so a resume redoes at most the rows in flight.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import IO, Any

from batch.engine.exit_codes import EXIT_SIGHUP, EXIT_SIGINT, EXIT_SIGTERM

#: The signals that stop a run gracefully, and the code each exits with.
CODES = {signal.SIGINT: EXIT_SIGINT, signal.SIGTERM: EXIT_SIGTERM, signal.SIGHUP: EXIT_SIGHUP}


class SignalStop:
    """Installs the handlers for the length of a ``with`` block (main thread only)."""

    def __init__(
        self,
        stream: IO[str],
        *,
        on_stop: Callable[[str], None],
        sync: Callable[[], None],
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.stream = stream
        self._say_with = say  # e.g. batch.view.logs: the line as a JSON event
        self.on_stop = on_stop  # called with the reason, from the handler
        self.sync = sync  # makes what is written durable before an immediate exit
        self.code = 0
        self.reason = ""
        self._previous: dict[int, Any] = {}
        self._ttys: list[int] = []  # stdout/stderr descriptors that are a terminal

    def __enter__(self) -> SignalStop:
        if threading.current_thread() is threading.main_thread():
            # Asked now: once the terminal hangs up, isatty() on it fails too.
            self._ttys = [fd for fd in (1, 2) if _isatty(fd)]
            for signum in CODES:
                if signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN:
                    continue  # started under nohup: the operator asked to ride out a hang-up
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _say(self, text: str) -> None:
        """Write from a signal handler: a buffered stream the interrupted code may be in the
        middle of writing raises "reentrant call", so go to the file descriptor directly."""
        if self._say_with is not None:
            self._say_with(text)
            return
        try:
            os.write(self.stream.fileno(), text.encode())
        except (AttributeError, OSError, ValueError):
            pass  # no descriptor (a test's StringIO) or a closed pipe: the exit code says it

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        code = CODES.get(signal.Signals(signum), EXIT_SIGTERM)
        if signum == signal.SIGHUP:
            self._detach_terminal()
        if self.code and signum == signal.SIGINT:
            try:
                self.sync()
            except (OSError, ValueError, RuntimeError):
                pass
            self._say("cognito-batch: interrupted again, exiting now\n")
            os._exit(EXIT_SIGINT)
        # Set first: a second signal arriving inside this handler sees it.
        self.code = self.code or code
        self.reason = f"interrupted by {name}"
        self._say(
            f"cognito-batch: {name}: finishing calls in flight, then stopping "
            "(Ctrl-C again to exit at once)\n"
        )
        self.on_stop(self.reason)

    def _detach_terminal(self) -> None:
        """Point the descriptors that were the (now hung-up) terminal at /dev/null."""
        if not self._ttys:
            return
        try:
            null = os.open(os.devnull, os.O_WRONLY)
        except OSError:
            return
        for fd in self._ttys:
            try:
                os.dup2(null, fd)
            except OSError:
                pass
        os.close(null)
        self._ttys = []


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False
