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
"""

from __future__ import annotations

import html
import io
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from batch.errors import UsageError
from batch.models import Status
from batch.record.report import format_summary, report_format, summary_path
from batch.record.report_reader import read_cells
from batch.record.timeline import SAMPLE_SECONDS, Bucket, Timeline, percentile, read_timeline
from batch.store.files import write_text_atomic

__all__ = ["RunView", "load_run", "render_html", "report_command", "require_matplotlib",
           "terminal_summary", "write_html"]  # fmt: skip

DEFAULT_QUOTA = 25.0  # Cognito's default UserUpdate quota (requests/s, account and region)
SAMPLES_PER_CODE = 5
MAX_CODES = 200  # distinct error codes tracked with samples; more are counted as "(other)"
TOP_ERRORS = 10
STATUS_COLOURS = {
    "updated": "#2e7d32", "unchanged": "#90a4ae", "invalid": "#ef6c00",
    "failed": "#c62828", "skipped": "#6a1b9a",
}  # fmt: skip
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


# -- reading a run ---------------------------------------------------------------------------


@dataclass(slots=True)
class ErrorSample:
    """One error code: how many rows, the first message, a few sample rows."""

    count: int = 0
    message: str = ""
    rows: list[tuple[int, str]] = field(default_factory=list)


@dataclass(slots=True)
class ReportScan:
    """What streaming the report found: counts and bounded samples."""

    rows: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    errors: dict[str, ErrorSample] = field(default_factory=dict)
    source: str = ""

    def add(self, row: int, username: str, status: str, code: str, message: str) -> None:
        self.rows += 1
        self.by_status[status] = self.by_status.get(status, 0) + 1
        if code:
            self.add_error(row, username, code, message)

    def add_error(self, row: int, username: str, code: str, message: str) -> None:
        if code not in self.errors and len(self.errors) >= MAX_CODES:
            code = "(other)"
        sample = self.errors.setdefault(code, ErrorSample(message=message))
        sample.count += 1
        if len(sample.rows) < SAMPLES_PER_CODE:
            sample.rows.append((row, username))


def scan_report(path: Path) -> ReportScan:
    """Count a report's rows, streamed (the run may still be writing it: a torn last line is
    passed over); only rows with an error code take the slow path (most rows of a night have
    none, and a million of them should cost about what reading them does)."""
    scan = ReportScan(source=str(path))
    by_status = scan.by_status
    rows = 0
    for cells in read_cells(path, partial=True):
        rows += 1
        status = str(cells[3])
        by_status[status] = by_status.get(status, 0) + 1
        if cells[5]:
            scan.add_error(int(cells[0]), str(cells[1] or ""), str(cells[5]),
                           str(cells[6] or ""))  # fmt: skip
    scan.rows += rows
    return scan


@dataclass(slots=True)
class RunView:
    """Everything the page and the terminal show about one run."""

    report: Path
    summary: dict[str, Any] | None
    timeline: Timeline | None
    scan: ReportScan
    finished: bool

    @property
    def counts(self) -> dict[str, int]:
        if self.summary is not None and self.finished:
            return {k: int(v) for k, v in self.summary.get("counts", {}).items()}
        return {s.value: self.scan.by_status.get(s.value, 0) for s in Status}

    @property
    def total_rows(self) -> int | None:
        if self.summary is not None and self.finished:
            return int(self.summary.get("rows", 0))
        if self.timeline is not None and self.timeline.rows:
            return self.timeline.rows
        return None


def load_run(report: Path) -> RunView:
    """Read a run from what exists beside ``report``; a usage error when nothing does."""
    from batch.record.journal import journal_path, read_journal
    from batch.record.timeline import timeline_path

    report_format(report)
    spath, jpath = summary_path(report), journal_path(report)
    summary: dict[str, Any] | None = None
    if spath.is_file():
        try:
            summary = json.loads(spath.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"summary {spath}: unreadable ({exc})") from None
    # A run writes its summary after the report and the timeline (only the journal's
    # completion marker comes later): a summary older than either belongs to an earlier run,
    # and this one has not ended.
    others = [p.stat().st_mtime for p in (report, timeline_path(report)) if p.exists()]
    finished = summary is not None and spath.stat().st_mtime >= max(others, default=0.0)
    if report.is_file():
        scan = scan_report(report)
    elif jpath.is_file():  # a Parquet report is only written when its run ends
        scan = ReportScan(source=str(jpath))
        state = read_journal(jpath)
        for result in state.records() if state is not None else ():
            scan.add(result.row, result.username, result.status.value, result.error_code,
                     result.error_message)  # fmt: skip
    elif summary is None:
        raise UsageError(f"report {report}: no such file (nor its summary or journal)")
    else:
        scan = ReportScan()
    return RunView(report, summary, read_timeline(timeline_path(report)), scan, finished)


# -- words -----------------------------------------------------------------------------------

_OUTCOMES = {
    0: "finished: every row updated or unchanged",
    1: "finished: some rows invalid, failed or skipped",
    2: "stopped: a fatal error or bad input",
    130: "interrupted (SIGINT)",
    143: "terminated (SIGTERM)",
}


def outcome(view: RunView) -> str:
    if not view.finished or view.summary is None:
        return "unfinished: still running, or stopped without a summary (rerun to resume)"
    code = view.summary.get("exit_code")
    text = _OUTCOMES.get(code, f"exit code {code}") if isinstance(code, int) else "finished"
    if view.summary.get("stopped"):
        text += f" — {view.summary['stopped']}"
    return text


def quota_line(summary: Mapping[str, Any] | None) -> tuple[float, str]:
    """The quota to draw and what it is: read from Cognito (a ``quota`` in the summary), else
    the fixed rate asked for, else Cognito's default."""
    summary = summary or {}
    quota = summary.get("quota")
    if isinstance(quota, Mapping):
        inner = quota.get("UserUpdate", quota)
        source = str(quota.get("source", "GetProvisionedLimit"))
        if isinstance(inner, Mapping):
            source = str(inner.get("source", source))
            for key in ("provisioned", "ProvisionedLimitValue", "value", "limit", "rate"):
                if isinstance(inner.get(key), int | float):
                    inner = inner[key]
                    break
        if isinstance(inner, int | float) and inner > 0:
            return float(inner), f"quota {inner:g}/s ({source})"
    elif isinstance(quota, int | float) and quota > 0:
        return float(quota), f"quota {quota:g}/s"
    rate = summary.get("rate")
    if isinstance(rate, int | float) and rate > 0:
        return float(rate), f"rate asked {rate:g}/s (quota not read)"
    return DEFAULT_QUOTA, f"Cognito's default quota {DEFAULT_QUOTA:g}/s (not read)"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _local(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _settings(summary: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """The run's settings for display; client metadata by key only (values may be data)."""
    settings = dict((summary or {}).get("settings") or {})
    metadata = settings.pop("client_metadata", None) or {}
    rows = [(k, json.dumps(v) if not isinstance(v, str) else v)
            for k, v in sorted(settings.items()) if v not in ("", None, [], {})]  # fmt: skip
    if metadata:
        rows.append(("client_metadata", ", ".join(f"{k}=…" for k in sorted(metadata))))
    return rows


def terminal_summary(view: RunView) -> str:
    """What ``report REPORT`` prints without ``--html``."""
    lines: list[str] = []
    if view.finished and view.summary is not None:
        lines.append(format_summary(view.summary))
        lines.append(f"  outcome: {outcome(view)}")
    else:
        counts = view.counts
        total = view.total_rows
        lines.append(
            f"cognito-batch: unfinished run — {view.scan.rows} results so far"
            + (f" of {total} rows" if total else "") + ": "
            + ", ".join(f"{s.value} {counts.get(s.value, 0)}" for s in Status)
        )  # fmt: skip
        lines.append(f"  from: {view.scan.source}; rerun the same command to resume")
    if view.timeline is not None and view.timeline.buckets:
        tl = view.timeline
        span = tl.buckets[-1].t + tl.resolution - tl.buckets[0].t
        peak = max(b.accepted / max(b.seconds, 1e-3) for b in tl.buckets)
        lat: dict[int, int] = {}
        for b in tl.buckets:
            for i, c in b.latency.items():
                lat[i] = lat.get(i, 0) + c
        p95 = percentile(lat, 0.95)
        lines.append(
            f"  timeline: {len(tl.runs)} run(s) over {_duration(span)}, {len(tl.buckets)} "
            f"samples of {tl.resolution:g}s, peak {peak:.1f} accepted calls/s"
            + (f", p95 latency {p95 * 1000:.0f} ms" if p95 is not None else "")
        )
    top = sorted(view.scan.errors.items(), key=lambda kv: -kv[1].count)[:5]
    for code, sample in top:
        rows = ", ".join(f"{r} ({u})" if u else str(r) for r, u in sample.rows)
        lines.append(f"  {code} ×{sample.count}: rows {rows}" + (" …" if sample.count >
                                                                  len(sample.rows) else ""))
    return "\n".join(lines)


# -- charts ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Series:
    """The timeline as plot-ready columns; a gap (between runs) breaks the lines."""

    times: list[datetime] = field(default_factory=list)
    columns: dict[str, list[float]] = field(default_factory=dict)

    def add(self, when: datetime, values: Mapping[str, float]) -> None:
        self.times.append(when)
        for name, value in values.items():
            self.columns.setdefault(name, []).append(value)


def _series(timeline: Timeline) -> _Series:
    nan = float("nan")
    out = _Series()
    previous: Bucket | None = None
    for bucket in timeline.buckets:
        seconds = max(bucket.seconds, 1e-3)
        if previous is not None and bucket.t - previous.t > 2.5 * timeline.resolution:
            gap = datetime.fromtimestamp(previous.t + timeline.resolution).astimezone()
            out.add(gap, dict.fromkeys(out.columns, nan))
        p50 = percentile(bucket.latency, 0.50)
        p95 = percentile(bucket.latency, 0.95)
        values = {
            "rate": bucket.rate, "sent": bucket.sent / seconds,
            "accepted": bucket.accepted / seconds, "throttled": bucket.throttled / seconds,
            "faults": bucket.faults / seconds, "in_flight": bucket.in_flight,
            "in_flight_max": float(bucket.in_flight_max),
            "p50": p50 * 1000 if p50 is not None else nan,
            "p95": p95 * 1000 if p95 is not None else nan,
        }  # fmt: skip
        for status in STATUS_COLOURS:
            values[status] = bucket.statuses.get(status, 0) / seconds
        out.add(datetime.fromtimestamp(bucket.t).astimezone(), values)
        previous = bucket
    if previous is not None:  # close the last step at the end of its bucket
        end = min(previous.t + timeline.resolution, previous.t + previous.seconds)
        out.add(datetime.fromtimestamp(end).astimezone(),
                {k: v[-1] for k, v in out.columns.items()})  # fmt: skip
    return out


_COORD = re.compile(r"(\d\.\d)\d+")


def _svg(figure: Any, salt: str) -> str:
    import matplotlib

    buffer = io.StringIO()
    # Text stays text (smaller, selectable); a salt per chart keeps the SVG ids of several
    # charts on one page apart.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        figure.savefig(buffer, format="svg")
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    # The RDF metadata block only names its vocabularies by URL: drop it, the page names none.
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, count=1, flags=re.S)
    # Path coordinates to 0.1 pt (matplotlib writes six decimals): a third of the bytes.
    text = re.sub(r'\bd="([^"]*)"', lambda m: 'd="' + _COORD.sub(r"\1", m.group(1)) + '"', text)
    # Scale with the page: the viewBox keeps the proportions, the width follows the column.
    return re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 width="100%"', text,
                  count=1)  # fmt: skip


def _figure(title: str, *, height: float = 2.6) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, height), dpi=96)
    # Margins fixed in inches, not fitted per chart: the time axes of all charts line up.
    figure.subplots_adjust(left=0.75 / 10, right=1 - 0.15 / 10, bottom=0.6 / height,
                           top=1 - 0.35 / height)  # fmt: skip
    axes = figure.add_subplot()
    axes.set_title(title, loc="left", fontsize=11)
    axes.grid(True, color="#e0e0e0", linewidth=0.6)
    axes.spines[["top", "right"]].set_visible(False)
    return figure, axes


def _time_axis(axes: Any) -> None:
    import matplotlib.dates as mdates

    tz = datetime.now().astimezone().tzinfo
    locator = mdates.AutoDateLocator(tz=tz)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    formatter = mdates.ConciseDateFormatter(locator, tz=tz)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_formatter(formatter)


def _run_marks(axes: Any, timeline: Timeline) -> None:
    for run in timeline.runs[1:]:
        axes.axvline(datetime.fromtimestamp(run["start"]).astimezone(), color="#555",
                     linestyle=":", linewidth=1)  # fmt: skip
        axes.annotate("resumed", (datetime.fromtimestamp(run["start"]).astimezone(), 1),
                      xycoords=("data", "axes fraction"), fontsize=8, color="#555",
                      ha="left", va="top")  # fmt: skip


def charts(view: RunView) -> list[tuple[str, str]]:
    """(caption, inline SVG) for each chart; none without a timeline."""
    timeline = view.timeline
    if timeline is None or not timeline.buckets:
        return []
    data = _series(timeline)
    t, col = data.times, data.columns
    quota, label = quota_line(view.summary)
    out: list[tuple[str, str]] = []

    figure, axes = _figure("Calls per second: the rate set, what Cognito accepted, throttles",
                           height=3.2)  # fmt: skip
    axes.plot(t, col["rate"], color="#1565c0", linewidth=3, alpha=0.35, label="rate set",
              drawstyle="steps-post")  # fmt: skip
    axes.plot(t, col["accepted"], color="#2e7d32", linewidth=1.2, label="accepted (throughput)",
              drawstyle="steps-post")  # fmt: skip
    axes.plot(t, col["throttled"], color="#c62828", linewidth=1.2, label="throttled",
              drawstyle="steps-post")  # fmt: skip
    if any(v > 0 for v in col["faults"]):
        axes.plot(t, col["faults"], color="#ef6c00", linewidth=1, label="faults",
                  drawstyle="steps-post")  # fmt: skip
    axes.axhline(quota, color="#000", linestyle="--", linewidth=1, label=label)
    axes.set_ylabel("calls/s")
    axes.set_ylim(bottom=0)
    _time_axis(axes)
    _run_marks(axes, timeline)
    axes.legend(loc="lower right", fontsize=8, framealpha=0.9)
    out.append(("Rate, throughput and throttles against the quota", _svg(figure, "rate")))

    # Throttles are a few per minute against a rate of tens per second: on the rate's scale
    # they vanish, so they get their own chart, per minute, where 02:13 shows.
    figure, axes = _figure("Throttled and failed calls per minute", height=2.0)
    axes.fill_between(t, [v * 60 for v in col["throttled"]], step="post", color="#c62828",
                      alpha=0.8, label="throttled (TooManyRequests)", linewidth=0)  # fmt: skip
    axes.plot(t, [v * 60 for v in col["faults"]], color="#ef6c00", linewidth=1,
              drawstyle="steps-post", label="faults (5xx, timeouts)")  # fmt: skip
    axes.set_ylabel("calls/min")
    if not any(v > 0 for v in col["throttled"] + col["faults"]):
        axes.text(0.5, 0.5, "no throttles, no faults", transform=axes.transAxes, ha="center",
                  va="center", color="#757575")  # fmt: skip
    axes.set_ylim(bottom=0, top=max([v * 60 for v in col["throttled"] + col["faults"]
                                     if v == v] + [1.0]) * 1.15)  # fmt: skip
    _time_axis(axes)
    _run_marks(axes, timeline)
    axes.legend(loc="upper right", fontsize=8)
    out.append(("Throttles and faults over time", _svg(figure, "throttles")))

    figure, axes = _figure("Latency of accepted calls (ms)")
    axes.plot(t, col["p50"], color="#1565c0", linewidth=1.2, label="p50")
    axes.plot(t, col["p95"], color="#6a1b9a", linewidth=1.2, label="p95")
    finite = [v for v in col["p95"] + col["p50"] if v == v]
    if finite and max(finite) > 20 * max(min(finite), 1e-3):
        axes.set_yscale("log")
    else:
        axes.set_ylim(bottom=0)
    axes.set_ylabel("ms")
    _time_axis(axes)
    _run_marks(axes, timeline)
    axes.legend(loc="upper right", fontsize=8)
    out.append(("Latency over time", _svg(figure, "latency")))

    figure, axes = _figure("Rows finished per second, by status")
    names = [s for s in STATUS_COLOURS if any(v > 0 for v in col[s])]
    if names:
        axes.stackplot(t, *[[0.0 if v != v else v for v in col[s]] for s in names],
                       labels=names, colors=[STATUS_COLOURS[s] for s in names],
                       step="post", alpha=0.85)  # fmt: skip
        axes.legend(loc="upper right", fontsize=8)
    axes.set_ylabel("rows/s")
    axes.set_ylim(bottom=0)
    _time_axis(axes)
    out.append(("Results by status over time", _svg(figure, "status")))

    figure, axes = _figure("Calls in flight", height=2.0)
    axes.plot(t, col["in_flight"], color="#00838f", linewidth=1.2, label="mean")
    axes.plot(t, col["in_flight_max"], color="#00838f", linewidth=0.8, alpha=0.5,
              linestyle="--", label="max")  # fmt: skip
    axes.set_ylim(bottom=0)
    _time_axis(axes)
    axes.legend(loc="upper right", fontsize=8)
    out.append(("Calls in flight", _svg(figure, "inflight")))
    return out


# -- the page --------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#212121;
margin:0 auto;max-width:1100px;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px;
border-bottom:1px solid #e0e0e0;padding-bottom:4px}
.sub{color:#616161;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #e0e0e0;border-radius:6px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:20px}.card span{color:#616161;font-size:12px}
.outcome{padding:8px 12px;border-radius:6px;margin:12px 0;font-weight:600}
.ok{background:#e8f5e9;color:#1b5e20}.warn{background:#fff3e0;color:#e65100}
.bad{background:#ffebee;color:#b71c1c}
table{border-collapse:collapse;margin:4px 0}td,th{padding:3px 10px;text-align:left;
border-bottom:1px solid #eeeeee;vertical-align:top}th{color:#616161;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.bar{height:10px;border-radius:2px;display:inline-block}
figure{margin:8px 0 18px}figure svg{display:block;max-width:100%;height:auto}
code{font-size:12px}.muted{color:#757575}
.kv{display:grid;grid-template-columns:repeat(2,max-content minmax(0,1fr));gap:3px 14px}
.kv b{color:#616161;font-weight:600}.kv code{overflow-wrap:anywhere}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def render_html(view: RunView, *, generated: float | None = None) -> str:
    summary = view.summary or {}
    counts = view.counts
    total = view.total_rows
    done = sum(counts.values())
    code = summary.get("exit_code") if view.finished else None
    css = "ok" if code == 0 else "bad" if code in (2, 130, 143) else "warn"
    if not view.finished:
        css = "warn"
    timeline = view.timeline
    started = ended = None
    if timeline is not None and timeline.runs:
        started, ended = timeline.runs[0]["start"], timeline.runs[-1]["end"]
    when = f"{_local(started)} to {_local(ended)}" if started is not None and ended else ""
    if view.finished:
        duration = _duration(float(summary.get("duration_s", 0)))
    elif started is not None and ended is not None:
        duration = _duration(ended - started) + " so far"
    else:
        duration = "?"
    pool = summary.get("pool") or {}
    parts: list[str] = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>cognito-batch report: {_e(view.report.name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>cognito-batch run: {_e(view.report.name)}</h1>",
        f'<p class="sub">{_e(when)}'
        + (f" · pool {_e(pool.get('id', ''))} ({_e(pool.get('region', ''))})" if pool else "")
        + "</p>",
        f'<div class="outcome {css}">{_e(outcome(view))}</div>',
        '<div class="cards">',
    ]  # fmt: skip
    cards = [
        (f"{total:,}" if total is not None else "?", "rows"),
        (f"{done:,}", "results"),
        (duration, "duration"),
        (str(code) if code is not None else "—", "exit code"),
    ]
    if view.finished:
        cards += [
            (f"{summary.get('achieved_rate', 0):g}/s", "updates/s achieved"),
            (f"{summary.get('calls', 0):,}", "calls"),
            (f"{summary.get('throttles', 0):,}", "throttled"),
            (f"{summary.get('faults', 0):,}", "faults retried"),
        ]
    if len(timeline.runs if timeline else []) > 1:
        cards.append((str(len(timeline.runs)), "runs (resumed)"))  # type: ignore[union-attr]
    parts += [f'<div class="card"><b>{_e(v)}</b><span>{_e(k)}</span></div>' for v, k in cards]
    parts.append("</div>")

    parts.append("<h2>Rows by status</h2><table><tr><th>status</th><th>rows</th><th></th></tr>")
    biggest = max(counts.values(), default=0) or 1
    for status in STATUS_COLOURS:
        n = counts.get(status, 0)
        width = max(int(300 * n / biggest), 1 if n else 0)
        parts.append(
            f'<tr><td>{status}</td><td class="n">{n:,}</td><td><span class="bar" '
            f'style="width:{width}px;background:{STATUS_COLOURS[status]}"></span></td></tr>'
        )
    parts.append("</table>")

    errors = (summary.get("errors") if view.finished else None) or {
        k: v.count for k, v in view.scan.errors.items()
    }
    parts.append("<h2>Rows by error code</h2>")
    if errors:
        parts.append("<table><tr><th>error code</th><th>rows</th></tr>")
        for name, n in sorted(errors.items(), key=lambda kv: (-kv[1], kv[0])):
            parts.append(f'<tr><td><code>{_e(name)}</code></td><td class="n">{n:,}</td></tr>')
        parts.append("</table>")
    else:
        parts.append('<p class="muted">No errors.</p>')

    figures = charts(view)
    parts.append("<h2>Over time</h2>")
    if figures:
        resolution = timeline.resolution if timeline else SAMPLE_SECONDS
        parts.append(f'<p class="muted">Local time; one sample per {resolution:g} s.</p>')
        for caption, svg in figures:
            parts.append(f'<figure aria-label="{_e(caption)}">{svg}</figure>')
    else:
        parts.append('<p class="muted">No timeline was recorded for this run.</p>')

    parts.append("<h2>Top errors, with sample rows</h2>")
    top = sorted(view.scan.errors.items(), key=lambda kv: -kv[1].count)[:TOP_ERRORS]
    if top:
        parts.append("<table><tr><th>error code</th><th>rows</th><th>message (first)</th>"
                     "<th>sample rows (row: username)</th></tr>")  # fmt: skip
        for name, sample in top:
            rows = ", ".join(f"{r}: {_e(u)}" if u else str(r) for r, u in sample.rows)
            more = " …" if sample.count > len(sample.rows) else ""
            parts.append(
                f'<tr><td><code>{_e(name)}</code></td><td class="n">{sample.count:,}</td>'
                f"<td>{_e(sample.message[:300])}</td><td>{rows}{more}</td></tr>"
            )
        parts.append("</table>")
        parts.append(f'<p class="muted">From {_e(view.scan.source)}; at most '
                     f"{SAMPLES_PER_CODE} sample rows per code.</p>")  # fmt: skip
    else:
        parts.append('<p class="muted">No errors.</p>')

    settings = _settings(summary)
    parts.append("<h2>Settings</h2>")
    if settings:
        parts.append('<div class="kv">')
        parts += [f"<b>{_e(k)}</b><code>{_e(v)}</code>" for k, v in settings]
        parts.append("</div>")
    else:
        parts.append('<p class="muted">No summary yet: the settings are written when the run '
                     "ends.</p>")  # fmt: skip
    stamp = _local(generated) if generated is not None else _local(datetime.now().timestamp())
    parts.append(f'<p class="muted">Generated by cognito-batch report at {_e(stamp)}. '
                 "Attribute values are never shown.</p></body></html>")  # fmt: skip
    return "\n".join(parts) + "\n"


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
