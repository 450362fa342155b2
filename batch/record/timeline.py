"""The run's timeline: bounded samples of rate, throughput, throttles, latency and outcomes.

A sample is taken every second (``Recorder``) from the runner's live counters; samples fall
into buckets aligned on multiples of the timeline's resolution. When the buckets reach
``MAX_BUCKETS``, neighbours merge pairwise and the resolution doubles, so a run of any length
keeps between half and all of ``MAX_BUCKETS`` (a 20-hour run ends at 64 s a bucket, ~1,100 of
them): the file stays a few hundred kB, whatever the night. Counts add when buckets merge;
the rate set and the calls in flight keep their mean and maximum.

Call latencies arrive one by one through ``record_call`` (the runner's hook) into a small
log-scale histogram per bucket (8 bins per doubling: percentiles within ±5 %), so p50/p95
survive merging exactly as counts do, and no list of calls is ever kept.

The timeline is written beside the report (``REPORT.timeline.json``, owner-only and replaced
atomically every few seconds) and carries the journal's identity (input SHA-256 and settings
fingerprint), so a resumed run loads it and carries on: its ``runs`` list marks where each run
started and ended. A finished timeline, or one from other input or settings, is started afresh.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batch.record.layout import timeline_path as timeline_path  # named there, kept here for callers
from batch.store.files import write_text_atomic

VERSION = 1
MAX_BUCKETS = 2000
SAMPLE_SECONDS = 1.0
SAVE_SECONDS = 5.0

#: Histogram bins: bin ``i`` holds latencies in [BASE * 2**(i/STEPS), BASE * 2**((i+1)/STEPS)).
_BASE = 1e-4  # 0.1 ms; anything faster lands in bin 0
_STEPS = 8
_LAST_BIN = 24 * _STEPS  # 0.1 ms * 2**24: ~28 minutes; anything slower lands here

#: Cumulative counters a probe returns; the timeline stores their increase per bucket.
COUNTERS = ("sent", "throttled", "faults")

Clock = Callable[[], float]
Probe = Callable[[], "Reading"]




def latency_bin(seconds: float) -> int:
    if seconds <= _BASE:
        return 0
    return min(int(math.log2(seconds / _BASE) * _STEPS), _LAST_BIN)


def bin_seconds(index: int) -> float:
    """A bin's representative latency: the geometric middle of its range."""
    return float(_BASE * 2 ** ((index + 0.5) / _STEPS))


def percentile(histogram: Mapping[int, int], share: float) -> float | None:
    """The latency (seconds) below which ``share`` of the calls fell; None without calls."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = share * total
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return bin_seconds(index)
    return bin_seconds(max(histogram))  # pragma: no cover - rounding guard


@dataclass(frozen=True, slots=True)
class Reading:
    """What the probe sees at one moment: cumulative counters and current levels."""

    sent: int = 0
    throttled: int = 0
    faults: int = 0
    rate: float = 0.0
    in_flight: int = 0
    statuses: Mapping[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Bucket:
    """One stretch of the run: what happened in ``[t, t + span)`` (wall-clock seconds)."""

    t: float
    samples: int = 0
    seconds: float = 0.0  # the time its samples cover: counts / seconds are per-second rates
    sent: int = 0
    accepted: int = 0
    throttled: int = 0
    faults: int = 0
    rate_sum: float = 0.0
    rate_max: float = 0.0
    in_flight_sum: float = 0.0
    in_flight_max: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    latency: dict[int, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.rate_sum / self.samples if self.samples else 0.0

    @property
    def in_flight(self) -> float:
        return self.in_flight_sum / self.samples if self.samples else 0.0

    def merge(self, other: Bucket) -> None:
        self.t = min(self.t, other.t)
        self.samples += other.samples
        self.seconds += other.seconds
        self.sent += other.sent
        self.accepted += other.accepted
        self.throttled += other.throttled
        self.faults += other.faults
        self.rate_sum += other.rate_sum
        self.rate_max = max(self.rate_max, other.rate_max)
        self.in_flight_sum += other.in_flight_sum
        self.in_flight_max = max(self.in_flight_max, other.in_flight_max)
        for name, count in other.statuses.items():
            self.statuses[name] = self.statuses.get(name, 0) + count
        for index, count in other.latency.items():
            self.latency[index] = self.latency.get(index, 0) + count

    def as_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "t": round(self.t, 3), "samples": self.samples, "seconds": round(self.seconds, 3),
            "sent": self.sent,
            "accepted": self.accepted, "throttled": self.throttled, "faults": self.faults,
            "rate_sum": round(self.rate_sum, 3), "rate_max": round(self.rate_max, 3),
            "in_flight_sum": self.in_flight_sum, "in_flight_max": self.in_flight_max,
        }
        if self.statuses:
            record["statuses"] = dict(sorted(self.statuses.items()))
        if self.latency:
            record["latency"] = [[i, c] for i, c in sorted(self.latency.items())]
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Bucket:
        return cls(
            t=float(record["t"]), samples=int(record.get("samples", 0)),
            seconds=float(record.get("seconds", record.get("samples", 0))),
            sent=int(record.get("sent", 0)), accepted=int(record.get("accepted", 0)),
            throttled=int(record.get("throttled", 0)), faults=int(record.get("faults", 0)),
            rate_sum=float(record.get("rate_sum", 0.0)),
            rate_max=float(record.get("rate_max", 0.0)),
            in_flight_sum=float(record.get("in_flight_sum", 0.0)),
            in_flight_max=int(record.get("in_flight_max", 0)),
            statuses={str(k): int(v) for k, v in record.get("statuses", {}).items()},
            latency={int(i): int(c) for i, c in record.get("latency", [])},
        )


class Timeline:
    """Bounded buckets over a run (and the runs it resumed). Thread-safe."""

    def __init__(
        self,
        *,
        identity: Mapping[str, str] | None = None,
        rows: int = 0,
        max_buckets: int = MAX_BUCKETS,
        resolution: float = SAMPLE_SECONDS,
        origin: float | None = None,
    ) -> None:
        self.identity = dict(identity or {})
        self.rows = rows
        self.max_buckets = max_buckets
        self.resolution = resolution
        self.origin = origin
        self.complete = False
        self.runs: list[dict[str, Any]] = []
        self.buckets: list[Bucket] = []
        self._lock = threading.Lock()
        self._last: Reading | None = None
        self._last_t: float | None = None
        self._pending_latency: dict[int, int] = {}
        self._pending_accepted = 0

    # -- feeding -----------------------------------------------------------------------------

    def start_run(self, now: float, reading: Reading, *, resumed_rows: int = 0) -> None:
        """A run begins: counters from here on are this run's (the baseline is ``reading``)."""
        with self._lock:
            if self.origin is None:
                self.origin = now
            self.complete = False
            self.runs.append({"start": round(now, 3), "end": round(now, 3),
                              "resumed_rows": resumed_rows})
            self._last = reading
            self._last_t = now

    def record_call(self, seconds: float) -> None:
        """One accepted call and its latency (the runner's hook; called from workers)."""
        index = latency_bin(seconds)
        with self._lock:
            self._pending_accepted += 1
            self._pending_latency[index] = self._pending_latency.get(index, 0) + 1

    def sample(self, now: float, reading: Reading) -> None:
        """Fold what happened since the last sample into the bucket holding ``now``."""
        with self._lock:
            last = self._last or Reading()
            self._last = reading
            if self.origin is None:
                self.origin = now
            bucket = self._bucket_at(now)
            bucket.samples += 1
            # The first sample of a timeline fed without start_run covers one interval.
            since = SAMPLE_SECONDS if self._last_t is None else now - self._last_t
            bucket.seconds += max(since, 0.0)
            self._last_t = now
            bucket.sent += max(reading.sent - last.sent, 0)
            bucket.throttled += max(reading.throttled - last.throttled, 0)
            bucket.faults += max(reading.faults - last.faults, 0)
            bucket.rate_sum += reading.rate
            bucket.rate_max = max(bucket.rate_max, reading.rate)
            bucket.in_flight_sum += reading.in_flight
            bucket.in_flight_max = max(bucket.in_flight_max, reading.in_flight)
            for name, count in reading.statuses.items():
                grown = count - last.statuses.get(name, 0)
                if grown > 0:
                    bucket.statuses[name] = bucket.statuses.get(name, 0) + grown
            bucket.accepted += self._pending_accepted
            for index, count in self._pending_latency.items():
                bucket.latency[index] = bucket.latency.get(index, 0) + count
            self._pending_accepted = 0
            self._pending_latency = {}
            if self.runs:
                self.runs[-1]["end"] = round(now, 3)
            if len(self.buckets) > self.max_buckets:
                self._coarsen()

    def finish(self, now: float, reading: Reading, *, complete: bool) -> None:
        self.sample(now, reading)
        with self._lock:
            self.complete = complete

    def _bucket_at(self, now: float) -> Bucket:
        assert self.origin is not None
        start = self.origin + math.floor((now - self.origin) / self.resolution) * self.resolution
        if self.buckets and self.buckets[-1].t >= start - 1e-9:
            return self.buckets[-1]  # the current bucket (or a clock that stepped back)
        bucket = Bucket(t=start)
        self.buckets.append(bucket)
        return bucket

    def _coarsen(self) -> None:
        """Double the resolution (caller holds the lock): contiguous buckets halve in number;
        again while they do not fit (lone buckets around gaps merge with none). Buckets merge
        by aligned time, so a gap between runs stays a gap."""
        assert self.origin is not None
        first = True
        while first or len(self.buckets) > self.max_buckets:
            first = False
            self.resolution *= 2
            merged: list[Bucket] = []
            for bucket in self.buckets:
                start = self.origin + (
                    math.floor((bucket.t - self.origin) / self.resolution + 1e-9) * self.resolution
                )
                if merged and merged[-1].t >= start - 1e-9:
                    merged[-1].merge(bucket)
                else:
                    bucket.t = start
                    merged.append(bucket)
            self.buckets = merged

    # -- files -------------------------------------------------------------------------------

    def as_record(self) -> dict[str, Any]:
        with self._lock:
            return {
                "timeline": VERSION, "identity": self.identity, "rows": self.rows,
                "origin": self.origin, "resolution": self.resolution,
                "complete": self.complete, "runs": [dict(r) for r in self.runs],
                "buckets": [b.as_record() for b in self.buckets],
            }

    def save(self, path: Path) -> None:
        write_text_atomic(path, json.dumps(self.as_record(), separators=(",", ":")) + "\n")

    @classmethod
    def from_record(cls, record: Mapping[str, Any], *, max_buckets: int = MAX_BUCKETS) -> Timeline:
        timeline = cls(
            identity=record.get("identity", {}), rows=int(record.get("rows", 0)),
            max_buckets=max_buckets, resolution=float(record.get("resolution", SAMPLE_SECONDS)),
            origin=record.get("origin"),
        )
        timeline.complete = bool(record.get("complete", False))
        timeline.runs = [dict(r) for r in record.get("runs", [])]
        timeline.buckets = [Bucket.from_record(b) for b in record.get("buckets", [])]
        return timeline


def read_timeline(path: Path) -> Timeline | None:
    """The timeline saved at ``path``; None when there is none or it cannot be read (a
    timeline is a picture of the run, never a reason to stop one)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("timeline") != VERSION:
        return None
    try:
        return Timeline.from_record(record)
    except (KeyError, TypeError, ValueError):
        return None


def open_timeline(
    path: Path, identity: Mapping[str, str], *, rows: int, resume: bool
) -> Timeline:
    """The timeline to feed: an unfinished one of the same input and settings when resuming,
    else a new one."""
    if resume:
        earlier = read_timeline(path)
        if earlier is not None and not earlier.complete and earlier.identity == dict(identity):
            earlier.rows = rows
            return earlier
    return Timeline(identity=identity, rows=rows)


class Recorder:
    """Samples ``probe`` into ``timeline`` every second and saves it every few seconds, on a
    daemon thread. Clock and wait are injected; ``tick`` is what the thread does each time."""

    def __init__(
        self,
        timeline: Timeline,
        probe: Probe,
        path: Path | None,
        *,
        clock: Clock = time.time,
        interval: float = SAMPLE_SECONDS,
        save_every: float = SAVE_SECONDS,
    ) -> None:
        self.timeline = timeline
        self.probe = probe
        self.path = path
        self.clock = clock
        self.interval = interval
        self.save_every = save_every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._saved = clock()

    def start(self, *, resumed_rows: int = 0) -> None:
        now = self.clock()
        self.timeline.start_run(now, self.probe(), resumed_rows=resumed_rows)
        self._saved = now
        self._thread = threading.Thread(target=self._loop, name="cognito-batch_timeline",
                                        daemon=True)
        self._thread.start()

    def tick(self) -> None:
        now = self.clock()
        self.timeline.sample(now, self.probe())
        if self.path is not None and now - self._saved >= self.save_every:
            self._saved = now
            self._save()

    def close(self, *, complete: bool) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.timeline.finish(self.clock(), self.probe(), complete=complete)
        self._save()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - a picture of the run never stops the run
                pass

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            self.timeline.save(self.path)
        except OSError:
            pass  # the report and journal matter; a timeline that cannot be saved does not
