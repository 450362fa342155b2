"""``cognito-batch report REPORT [--html OUT.html]``: a run you can look at.

Without ``--html`` the run's summary is printed on the terminal; with it, one self-contained
HTML page is written (owner-only, replaced atomically) that works offline: no external URL,
no script, every chart an inline SVG drawn by matplotlib (the optional ``html`` extra). It
holds the headline (rows, outcome, duration, exit code), counts by status and error code, the
rate, throughput and throttles over time against the quota, latency over time, the top errors
with sample rows (row numbers and usernames, never values) and the settings (client-metadata
keys only, never their values).

A finished run is read from ``REPORT.summary.json`` and ``REPORT.timeline.json``; an unfinished
one (still running, interrupted, crashed) from what exists: the report (or, for a Parquet
report, the journal) streamed for its counts, and the timeline saved so far. The report is
always streamed, with a bounded number of sample rows per error code, so a report of millions
of rows costs seconds and flat memory.

This module is the command; the run is gathered in ``run_view``, put in words in
``run_text``, drawn in ``charts`` and laid out as a page in ``html_page``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from batch.errors import UsageError
from batch.store.files import write_text_atomic
from batch.view.html_page import render_html
from batch.view.run_text import quota_line, terminal_summary
from batch.view.run_view import RunView, load_run

__all__ = ["RunView", "load_run", "quota_line", "render_html", "report_command",
           "require_matplotlib", "terminal_summary", "write_html"]

_MISSING = (
    "the HTML report needs matplotlib: pip install 'cognito-batch[html]' "
    "(or report REPORT without --html for the terminal summary)"
)


def require_matplotlib() -> None:
    """A one-line usage error when the ``html`` extra is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(_MISSING) from None


def write_html(report: Path, out: Path) -> Path:
    """Render the run of ``report`` into ``out`` (owner-only, replaced atomically)."""
    require_matplotlib()
    view = load_run(report)
    write_text_atomic(out, render_html(view))
    return out


def report_command(report: str, *, html: str | None = None, stream: TextIO | None = None) -> int:
    """The ``report`` command: the terminal summary, or the HTML page with ``--html``."""
    stream = stream or sys.stdout
    path = Path(report)
    if html:
        require_matplotlib()
        view = load_run(path)
        write_text_atomic(Path(html), render_html(view))
        stream.write(f"cognito-batch: wrote {html} ({Path(html).stat().st_size:,} bytes)\n")
        return 0
    stream.write(terminal_summary(load_run(path)) + "\n")
    return 0
