"""Metrics an operator alarms on: CloudWatch EMF lines on stdout, or a Prometheus textfile.

Pure formatting and writing: the figures come from a run's summary at the end
(``snapshot_of``) or from the live counters on each progress tick (``Metrics.progress``); the
pipeline is not touched. Only counts, rates, durations and the exit code are metrics, and
only the pool id and the job's name are dimensions (labels): every metric name and dimension
comes from this module's own constants or ``Status``, never from the input, so no attribute
value can become a metric, a dimension or a label.

- ``emf``: one JSON object a line on stdout, by the published EMF specification
  (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html),
  which the ``awslogs`` driver, Lambda and Fluent Bit forward to CloudWatch Logs, where they
  become metrics without an agent call. Logs stay on stderr. Written by hand: the
  ``aws-embedded-metrics`` library needs the CloudWatch agent unless ``AWS_EMF_ENVIRONMENT``
  is set (its default sink is TCP 25888, after an HTTP probe of the EC2 metadata endpoint),
  and it pulls aiohttp into a tool that makes no asynchronous call; the format itself is one
  small JSON object.
- ``prometheus-textfile PATH``: node_exporter's textfile collector format, written at the end
  atomically (owner-only, a temporary beside it renamed over it, never through a symlink:
  ``batch.store.files``). ``cognito_batch_last_success_timestamp_seconds`` moves only when a
  run finished (exit 0 or 1: every row decided); otherwise the previous value is kept, so
  ``time() - cognito_batch_last_success_timestamp_seconds > 26*3600`` alarms on a nightly
  job that stopped succeeding.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from batch.config import JobConfig, check_metrics
from batch.models import JobResult, Status
from batch.record.guard import check_replaceable
from batch.store.files import atomic_write
from batch.view.progress import Tick

NAMESPACE = "CognitoBatch"
KINDS = ("emf", "prometheus-textfile")
#: Exit codes of a run that finished: every row decided (0: all written, 1: some rows not).
FINISHED = frozenset({0, 1})
_MAX_DIMENSION = 250  # the shortest bound any EMF client enforces on a dimension value


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The figures of a run, at a progress tick (``exit_code`` None) or at its end."""

    counts: Mapping[str, int]
    calls: int
    throttles: int
    achieved_rate: float
    duration_s: float
    exit_code: int | None = None


def snapshot_of(summary: Mapping[str, Any], exit_code: int) -> Snapshot:
    """A finished (or stopped) run's figures, from its summary (``JobResult.summary``)."""
    counts = summary.get("counts") or {}
    return Snapshot(
        counts={s.value: int(counts.get(s.value, 0) or 0) for s in Status},
        calls=int(summary.get("calls", 0) or 0),
        throttles=int(summary.get("throttles", 0) or 0),
        achieved_rate=float(summary.get("achieved_rate", 0.0) or 0.0),
        duration_s=float(summary.get("duration_s", 0.0) or 0.0),
        exit_code=exit_code,
    )


def snapshot_live(tick: Tick) -> Snapshot:
    """The figures at a progress tick (``view.progress.Tick``: counts, never values)."""
    updated = tick.counts.get(Status.UPDATED.value, 0)
    return Snapshot(
        counts={s.value: tick.counts.get(s.value, 0) for s in Status},
        calls=tick.calls,
        throttles=tick.throttles,
        achieved_rate=round(updated / tick.elapsed_s, 2) if tick.elapsed_s > 0 else 0.0,
        duration_s=round(tick.elapsed_s, 3),
    )


class Metrics(Protocol):
    """Where a run's metrics go. ``progress`` on each tick of the progress line, ``finish``
    once at the end."""

    def progress(self, snapshot: Snapshot) -> None: ...

    def finish(self, snapshot: Snapshot) -> None: ...


def _dimension(text: str) -> str:
    """A dimension value CloudWatch and every EMF client accept: printable ASCII, bounded."""
    clean = "".join(c if " " <= c <= "~" else "_" for c in text)[:_MAX_DIMENSION]
    return clean or "unknown"


def _number(value: float) -> float | int:
    return value if math.isfinite(value) else 0


# -- EMF ---------------------------------------------------------------------------------------

#: (root member, unit) of every metric, in the order written. Rows by status come first.
_EMF_ROWS = tuple((f"Rows{s.value.capitalize()}", s) for s in Status)
_EMF_OTHER = (
    ("Calls", "Count"),
    ("Throttles", "Count"),
    ("AchievedRate", "Count/Second"),
    ("DurationSeconds", "Seconds"),
)


def emf_record(
    snapshot: Snapshot, *, pool_id: str, job_name: str, timestamp_ms: int
) -> dict[str, Any]:
    """One EMF record: ``_aws`` metadata, the two dimensions and the metrics as root members."""
    members: dict[str, Any] = {name: snapshot.counts.get(s.value, 0) for name, s in _EMF_ROWS}
    members.update({
        "Calls": snapshot.calls, "Throttles": snapshot.throttles,
        "AchievedRate": _number(snapshot.achieved_rate),
        "DurationSeconds": _number(snapshot.duration_s),
    })
    metrics = [{"Name": name, "Unit": "Count"} for name, _ in _EMF_ROWS]
    metrics += [{"Name": name, "Unit": unit} for name, unit in _EMF_OTHER]
    if snapshot.exit_code is not None:
        members["ExitCode"] = snapshot.exit_code
        metrics.append({"Name": "ExitCode", "Unit": "None"})
    return {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["PoolId", "JobName"]],
                "Metrics": metrics,
            }],
        },
        "PoolId": _dimension(pool_id),
        "JobName": _dimension(job_name),
        "Phase": "progress" if snapshot.exit_code is None else "end",  # a property, no metric
        **members,
    }


class EmfMetrics:
    """EMF records, one JSON object a line, on ``stream`` (stdout): on each tick and at the end."""

    def __init__(
        self,
        *,
        pool_id: str,
        job_name: str,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pool_id, self.job_name = pool_id, job_name
        self.stream = stream if stream is not None else sys.stdout
        self.clock = clock

    def _emit(self, snapshot: Snapshot) -> None:
        record = emf_record(snapshot, pool_id=self.pool_id, job_name=self.job_name,
                            timestamp_ms=int(self.clock() * 1000))
        self.stream.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.stream.flush()

    def progress(self, snapshot: Snapshot) -> None:
        self._emit(snapshot)

    def finish(self, snapshot: Snapshot) -> None:
        self._emit(snapshot)


# -- Prometheus textfile ---------------------------------------------------------------------

LAST_SUCCESS = "cognito_batch_last_success_timestamp_seconds"
_GAUGES = (
    (LAST_SUCCESS, "Unix time the last run that finished (exit 0 or 1) ended; kept otherwise."),
    ("cognito_batch_last_run_timestamp_seconds", "Unix time the last run ended, however."),
    ("cognito_batch_last_exit_code", "Exit code of the last run (0, 1, 2, 129, 130, 143)."),
    ("cognito_batch_last_rows", "Rows of the last run, by status."),
    ("cognito_batch_last_calls", "Cognito write calls of the last run, retries included."),
    ("cognito_batch_last_throttles", "Calls of the last run Cognito refused as throttled."),
    ("cognito_batch_last_achieved_rate", "Rows updated per second in the last run."),
    ("cognito_batch_last_duration_seconds", "How long the last run took."),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _read_private(path: Path) -> str:
    """The previous file's text, never read through a symlink; empty when absent or unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return ""
    with os.fdopen(fd, encoding="utf-8", errors="replace") as handle:
        return handle.read(1 << 20)


def previous_success(path: Path, labels: str) -> float | None:
    """The last-success value the file holds for these labels, if any."""
    pattern = re.compile(rf"^{LAST_SUCCESS}{re.escape(labels)} (\S+)$", re.M)
    match = pattern.search(_read_private(path))
    if match is None:
        return None
    try:
        value = float(match.group(1))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def prometheus_text(
    snapshot: Snapshot, *, pool_id: str, job_name: str, now: float, last_success: float | None
) -> str:
    """The textfile's content: gauges of the last run (the collector takes no timestamps)."""
    labels = f'{{job_name="{_label(job_name)}",pool_id="{_label(pool_id)}"}}'
    code = snapshot.exit_code if snapshot.exit_code is not None else -1
    values: dict[str, list[tuple[str, float]]] = {
        LAST_SUCCESS: [(labels, last_success)] if last_success is not None else [],
        "cognito_batch_last_run_timestamp_seconds": [(labels, now)],
        "cognito_batch_last_exit_code": [(labels, code)],
        "cognito_batch_last_rows": [
            (f'{labels[:-1]},status="{s.value}"}}', snapshot.counts.get(s.value, 0))
            for s in Status
        ],
        "cognito_batch_last_calls": [(labels, snapshot.calls)],
        "cognito_batch_last_throttles": [(labels, snapshot.throttles)],
        "cognito_batch_last_achieved_rate": [(labels, _number(snapshot.achieved_rate))],
        "cognito_batch_last_duration_seconds": [(labels, _number(snapshot.duration_s))],
    }
    lines: list[str] = []
    for name, help_text in _GAUGES:
        if not values[name]:
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [f"{name}{lab} {_format(v)}" for lab, v in values[name]]
    return "\n".join(lines) + "\n"


def _format(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) and not value.is_integer() else (
        str(int(value)))


class PrometheusTextfile:
    """A node_exporter textfile, rewritten at the end of the run (not on ticks: the collector
    reads the file whenever it is scraped, and a batch job's key metric is its last success)."""

    def __init__(
        self, path: Path, *, pool_id: str, job_name: str, clock: Callable[[], float] = time.time
    ) -> None:
        self.path, self.pool_id, self.job_name, self.clock = path, pool_id, job_name, clock

    def progress(self, snapshot: Snapshot) -> None:
        return None

    def finish(self, snapshot: Snapshot) -> None:
        now = self.clock()
        labels = f'{{job_name="{_label(self.job_name)}",pool_id="{_label(self.pool_id)}"}}'
        last = now if snapshot.exit_code in FINISHED else previous_success(self.path, labels)
        text = prometheus_text(snapshot, pool_id=self.pool_id, job_name=self.job_name,
                               now=now, last_success=last)
        with atomic_write(self.path, encoding="utf-8") as handle:
            handle.write(text)


# -- the setting -------------------------------------------------------------------------------


def split_metrics_flag(given: Sequence[str]) -> tuple[tuple[str, ...], list[str]]:
    """``--metrics KIND [PATH]`` as argparse's ``nargs="+"`` gave it: the setting, and the
    words beyond it (the INPUT, when the flag came before it). ``prometheus-textfile`` takes
    its PATH as the next word or as ``prometheus-textfile=PATH``."""
    if not given:
        return (), []
    kind, sep, path = given[0].partition("=")
    if sep:
        return (kind, path), list(given[1:])
    width = 2 if kind == "prometheus-textfile" else 1
    return tuple(given[:width]), list(given[width:])


def open_metrics(
    spec: Sequence[str],
    *,
    pool_id: str,
    job_name: str,
    stream: IO[str] | None = None,
    clock: Callable[[], float] = time.time,
) -> Metrics | None:
    """The metrics a run's ``metrics`` setting asks for, or None."""
    spec = tuple(spec)
    check_metrics(spec)
    if not spec:
        return None
    if spec[0] == "emf":
        return EmfMetrics(pool_id=pool_id, job_name=job_name, stream=stream, clock=clock)
    return PrometheusTextfile(Path(spec[1]), pool_id=pool_id, job_name=job_name, clock=clock)


class RunMetrics:
    """A run's ``metrics`` setting, live: ``tick`` on the progress line's cadence (a
    ``Progress`` listener), ``finish`` once with the result. Failing to write them is a
    warning: it never changes the run's exit code."""

    def __init__(self, sink: Metrics) -> None:
        self.sink = sink

    @classmethod
    def of(cls, config: JobConfig, *, job_file: str | None) -> RunMetrics | None:
        """None for no ``metrics``, and for a dry run (it writes nothing)."""
        if not config.metrics or config.dry_run:
            return None
        if config.metrics[0] == "prometheus-textfile":  # before the run: refused, not lost
            check_replaceable(Path(config.metrics[1]), "metrics", "--metrics")
        sink = open_metrics(config.metrics, pool_id=config.user_pool_id,
                            job_name=job_name(job_file))
        return cls(sink) if sink is not None else None

    def tick(self, tick: Tick) -> None:
        if not tick.final:  # the end is ``finish``'s, with the exit code
            self._guarded(self.sink.progress, snapshot_live(tick))

    def finish(self, result: JobResult) -> None:
        self._guarded(self.sink.finish, snapshot_of(result.summary, result.exit_code))

    @staticmethod
    def _guarded(call: Callable[[Snapshot], None], snapshot: Snapshot) -> None:
        try:
            call(snapshot)
        except OSError as exc:
            logging.getLogger("batch").warning(
                "metrics not written: %s: %s", exc.filename or "", exc.strerror or exc)


def job_name(job_file: str | None) -> str:
    """The job's name as a dimension: its job file's name (stable across nights, unlike a
    report named after the run), else the tool's."""
    return Path(job_file).stem if job_file else "cognito-batch"
