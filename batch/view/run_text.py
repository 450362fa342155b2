"""A run in words: its outcome, the quota line, the settings as shown, and the terminal
summary that ``report REPORT`` prints without ``--html``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from batch.models import Status
from batch.record.summary import RunSummary, format_summary
from batch.record.timeline import percentile
from batch.view.run_view import RunView

DEFAULT_QUOTA = 25.0  # Cognito's default UserUpdate quota (requests/s, account and region)


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
    """The quota to draw and what it is: read from Cognito (the summary's ``quota``, in any of
    the shapes summaries have had: ``summary.Quota``), else the fixed rate asked for, else
    Cognito's default."""
    typed = RunSummary.from_json(summary or {})
    read = typed.quota.rate("UserUpdate") if typed.quota is not None else None
    if read is not None:
        source = typed.quota.source if typed.quota is not None else ""
        return read, f"quota {read:g}/s ({source})" if source else f"quota {read:g}/s"
    rate = typed.rate
    if isinstance(rate, int | float) and rate > 0:
        return float(rate), f"rate asked {rate:g}/s (quota not read)"
    return DEFAULT_QUOTA, f"Cognito's default quota {DEFAULT_QUOTA:g}/s (not read)"


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def local_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def shown_settings(summary: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """The run's settings for display; client metadata by key only (values may be data)."""
    settings = dict((summary or {}).get("settings") or {})
    metadata = settings.pop("client_metadata", None) or {}
    rows = [(k, json.dumps(v) if not isinstance(v, str) else v)
            for k, v in sorted(settings.items()) if v not in ("", None, [], {})]
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
        )
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
            f"  timeline: {len(tl.runs)} run(s) over {format_duration(span)}, {len(tl.buckets)} "
            f"samples of {tl.resolution:g}s, peak {peak:.1f} accepted calls/s"
            + (f", p95 latency {p95 * 1000:.0f} ms" if p95 is not None else "")
        )
    top = sorted(view.scan.errors.items(), key=lambda kv: -kv[1].count)[:5]
    for code, sample in top:
        rows = ", ".join(f"{r} ({u})" if u else str(r) for r, u in sample.rows)
        lines.append(f"  {code} ×{sample.count}: rows {rows}" + (" …" if sample.count >
                                                                  len(sample.rows) else ""))
    return "\n".join(lines)
