"""What a run says on stderr: human lines (``--log-format text``, the default) or one JSON
object per line (``--log-format json``) for CloudWatch Logs, Datadog, Loki and friends.

Every line goes through one ``EventLog``: the start, the plan, the progress line, warnings
(the ``logging`` module's, and signals), errors (the CLI's one-line error) and the summary.
Callers give both forms: the text line as it has always been, and the event's fields. In text
mode an event without a text line (``start``, ``plan`` of an unattended run) prints nothing.

JSON lines have these fields, always: ``ts`` (UTC, ISO 8601 with milliseconds), ``level``
(``info``, ``warning``, ``error``), ``event``; then the event's own fields (README, "Logs a
machine reads"). Field names are stable. No attribute value is ever a field: events carry
counts, codes, names of columns and attributes, paths and settings, never a cell of the input.

A line is written with one ``os.write`` when the stream has a descriptor: whole lines never
interleave (lines under ``PIPE_BUF`` are atomic on a pipe), and a signal handler can log
without the buffered stream's "reentrant call".
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
import threading
from collections.abc import Mapping
from importlib import metadata
from typing import Any, TextIO

LOG_FORMATS = ("text", "json")

# The summary's fields that go into the ``summary`` event: what a dashboard graphs. The
# settings (column mapping, client metadata) and the per-part map stay in the summary file.
SUMMARY_FIELDS = (
    "rows", "counts", "errors", "calls", "throttles", "faults", "duration_s", "achieved_rate",
    "rate", "rate_final", "rate_low", "rate_high", "concurrency", "stopped", "report",
    "journal", "input", "input_sha256", "resumed_rows", "read_calls", "lookup", "pool",
    "shard", "dry_run", "to_apply", "attributes", "messages", "pending_verification",
    "estimated_seconds",
)


def version() -> str:
    """The installed package's version (``--version``)."""
    try:
        return metadata.version("cognito-batch")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


class EventLog:
    """Writes events as text lines or JSON lines. Thread-safe; safe in a signal handler."""

    def __init__(self, stream: TextIO | None = None, *, format: str = "text") -> None:
        if format not in LOG_FORMATS:
            raise ValueError(f"log format must be one of {LOG_FORMATS}, not {format!r}")
        self.stream = stream if stream is not None else sys.stderr
        self.format = format
        self._lock = threading.Lock()

    @property
    def json(self) -> bool:
        return self.format == "json"

    def emit(self, event: str, text: str | None = None, *, level: str = "info",
             **fields: Any) -> None:
        """One event: ``text`` in text mode (nothing if None), the fields in JSON mode."""
        if self.json:
            record = {"ts": _now(), "level": level, "event": event, **fields}
            line = json.dumps(record, ensure_ascii=False, default=str, separators=(",", ":"))
        elif text is None:
            return
        else:
            line = text
        self._write(line + "\n")

    def error(self, message: str, **fields: Any) -> None:
        """The one-line error a run ends with (exit 2)."""
        self.emit("error", f"cognito-batch: error: {message}", level="error", message=message,
                  **fields)

    def warning(self, message: str, **fields: Any) -> None:
        self.emit("warning", f"cognito-batch: {message}", level="warning", message=message,
                  **fields)

    def summary(self, summary: Mapping[str, Any], text: str | None, **fields: Any) -> None:
        kept = {k: summary[k] for k in SUMMARY_FIELDS if k in summary}
        self.emit("summary", text, **kept, **fields)

    def _write(self, data: str) -> None:
        try:
            fd = self.stream.fileno()
        except (AttributeError, OSError, ValueError):
            fd = -1
        if fd >= 0:
            try:
                self.stream.flush()  # what others wrote through the buffer goes first
            except (OSError, ValueError, RuntimeError):
                pass
            encoded = data.encode("utf-8", "replace")
            while encoded:
                written = os.write(fd, encoded)
                encoded = encoded[written:]
            return
        with self._lock:
            self.stream.write(data)
            self.stream.flush()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _LogHandler(logging.Handler):
    """Library warnings (urllib3's pool, botocore's credential notes) as warning events."""

    def __init__(self, log: EventLog) -> None:
        super().__init__(logging.WARNING)
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._log.warning(record.getMessage(), logger=record.name)
        except Exception:  # noqa: BLE001 - logging must never break the run
            self.handleError(record)


def route_logging(log: EventLog) -> None:
    """Send the ``logging`` module's warnings through ``log`` (JSON mode only: text mode keeps
    ``logging.basicConfig``'s ``cognito-batch: message`` lines)."""
    if not log.json:
        return
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_LogHandler(log))
    root.setLevel(logging.WARNING)
