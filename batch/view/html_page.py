"""The run page: one self-contained HTML document (inline CSS, inline SVG charts, no script,
no external URL) from a ``RunView``."""

from __future__ import annotations

import html
from datetime import datetime

from batch.record.guard import HTML_MARKER
from batch.record.timeline import SAMPLE_SECONDS
from batch.view.charts import STATUS_COLOURS, charts
from batch.view.run_text import format_duration, local_time, outcome, shown_settings
from batch.view.run_view import SAMPLES_PER_CODE, RunView

TOP_ERRORS = 10


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
    when = f"{local_time(started)} to {local_time(ended)}" if started is not None and ended else ""
    if view.finished:
        duration = format_duration(float(summary.get("duration_s", 0)))
    elif started is not None and ended is not None:
        duration = format_duration(ended - started) + " so far"
    else:
        duration = "?"
    pool = summary.get("pool") or {}
    parts: list[str] = [
        "<!DOCTYPE html>", HTML_MARKER, '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>cognito-batch report: {_e(view.report.name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>cognito-batch run: {_e(view.report.name)}</h1>",
        f'<p class="sub">{_e(when)}'
        + (f" · pool {_e(pool.get('id', ''))} ({_e(pool.get('region', ''))})" if pool else "")
        + "</p>",
        f'<div class="outcome {css}">{_e(outcome(view))}</div>',
        '<div class="cards">',
    ]
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
                     "<th>sample rows (row: username)</th></tr>")
        for name, sample in top:
            rows = ", ".join(f"{r}: {_e(u)}" if u else str(r) for r, u in sample.rows)
            more = " …" if sample.count > len(sample.rows) else ""
            parts.append(
                f'<tr><td><code>{_e(name)}</code></td><td class="n">{sample.count:,}</td>'
                f"<td>{_e(sample.message[:300])}</td><td>{rows}{more}</td></tr>"
            )
        parts.append("</table>")
        parts.append(f'<p class="muted">From {_e(view.scan.source)}; at most '
                     f"{SAMPLES_PER_CODE} sample rows per code.</p>")
    else:
        parts.append('<p class="muted">No errors.</p>')

    settings = shown_settings(summary)
    parts.append("<h2>Settings</h2>")
    if settings:
        parts.append('<div class="kv">')
        parts += [f"<b>{_e(k)}</b><code>{_e(v)}</code>" for k, v in settings]
        parts.append("</div>")
    else:
        parts.append('<p class="muted">No summary yet: the settings are written when the run '
                     "ends.</p>")
    stamp = local_time(generated if generated is not None else datetime.now().timestamp())
    parts.append(f'<p class="muted">Generated by cognito-batch report at {_e(stamp)}. '
                 "Attribute values are never shown.</p></body></html>")
    return "\n".join(parts) + "\n"
