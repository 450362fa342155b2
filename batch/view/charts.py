"""The run page's charts: the timeline as plot-ready series, drawn by matplotlib (the
optional ``html`` extra, imported only here and only when drawing) as inline SVG."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from batch.record.timeline import Bucket, Timeline, percentile
from batch.view.run_text import quota_line
from batch.view.run_view import RunView

STATUS_COLOURS = {
    "updated": "#2e7d32", "unchanged": "#90a4ae", "invalid": "#ef6c00",
    "failed": "#c62828", "skipped": "#6a1b9a", "created": "#1565c0",
}


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
        }
        for status in STATUS_COLOURS:
            values[status] = bucket.statuses.get(status, 0) / seconds
        out.add(datetime.fromtimestamp(bucket.t).astimezone(), values)
        previous = bucket
    if previous is not None:  # close the last step at the end of its bucket
        end = min(previous.t + timeline.resolution, previous.t + previous.seconds)
        out.add(datetime.fromtimestamp(end).astimezone(),
                {k: v[-1] for k, v in out.columns.items()})
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
                  count=1)


def _figure(title: str, *, height: float = 2.6) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, height), dpi=96)
    # Margins fixed in inches, not fitted per chart: the time axes of all charts line up.
    figure.subplots_adjust(left=0.75 / 10, right=1 - 0.15 / 10, bottom=0.6 / height,
                           top=1 - 0.35 / height)
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
                     linestyle=":", linewidth=1)
        axes.annotate("resumed", (datetime.fromtimestamp(run["start"]).astimezone(), 1),
                      xycoords=("data", "axes fraction"), fontsize=8, color="#555",
                      ha="left", va="top")


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
                           height=3.2)
    axes.plot(t, col["rate"], color="#1565c0", linewidth=3, alpha=0.35, label="rate set",
              drawstyle="steps-post")
    axes.plot(t, col["accepted"], color="#2e7d32", linewidth=1.2, label="accepted (throughput)",
              drawstyle="steps-post")
    axes.plot(t, col["throttled"], color="#c62828", linewidth=1.2, label="throttled",
              drawstyle="steps-post")
    if any(v > 0 for v in col["faults"]):
        axes.plot(t, col["faults"], color="#ef6c00", linewidth=1, label="faults",
                  drawstyle="steps-post")
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
                      alpha=0.8, label="throttled (TooManyRequests)", linewidth=0)
    axes.plot(t, [v * 60 for v in col["faults"]], color="#ef6c00", linewidth=1,
              drawstyle="steps-post", label="faults (5xx, timeouts)")
    axes.set_ylabel("calls/min")
    if not any(v > 0 for v in col["throttled"] + col["faults"]):
        axes.text(0.5, 0.5, "no throttles, no faults", transform=axes.transAxes, ha="center",
                  va="center", color="#757575")
    axes.set_ylim(bottom=0, top=max([v * 60 for v in col["throttled"] + col["faults"]
                                     if v == v] + [1.0]) * 1.15)
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
                       step="post", alpha=0.85)
        axes.legend(loc="upper right", fontsize=8)
    axes.set_ylabel("rows/s")
    axes.set_ylim(bottom=0)
    _time_axis(axes)
    out.append(("Results by status over time", _svg(figure, "status")))

    figure, axes = _figure("Calls in flight", height=2.0)
    axes.plot(t, col["in_flight"], color="#00838f", linewidth=1.2, label="mean")
    axes.plot(t, col["in_flight_max"], color="#00838f", linewidth=0.8, alpha=0.5,
              linestyle="--", label="max")
    axes.set_ylim(bottom=0)
    _time_axis(axes)
    axes.legend(loc="upper right", fontsize=8)
    out.append(("Calls in flight", _svg(figure, "inflight")))
    return out
