"""The timeline: bounded whatever the run's length, exact counts, percentiles, resume."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

from fakes import FakeCognito, ManualClock
from test_job import job_config, seed_users

from batch.commands.run import Job
from batch.record.timeline import (
    MAX_BUCKETS,
    Reading,
    Recorder,
    Timeline,
    latency_bin,
    open_timeline,
    percentile,
    read_timeline,
    timeline_path,
)

IDENTITY = {"journal": "1", "input_sha256": "abc", "settings": "def"}


def test_a_ten_million_row_night_stays_bounded_and_keeps_every_count(tmp_path: Path) -> None:
    # GIVEN a timeline sampled every second of a 20-hour run at 139 calls/s (10 M rows), with
    # a throttle every 100 s and a few accepted calls' latencies recorded each second
    clock = ManualClock(start=1_700_000_000.0)
    timeline = Timeline(identity=IDENTITY, rows=10_000_000)
    timeline.start_run(clock(), Reading())
    seconds = 20 * 3600
    sent = throttled = 0
    for second in range(1, seconds + 1):
        clock.now += 1.0
        sent += 139
        throttled += 1 if second % 100 == 0 else 0
        timeline.record_call(0.040)
        timeline.record_call(0.090 if second % 10 == 0 else 0.050)
        timeline.sample(clock(), Reading(sent=sent, throttled=throttled, rate=139.0,
                                         in_flight=12, statuses={"updated": sent}))
        # THEN at no moment does it hold more than MAX_BUCKETS buckets
        assert len(timeline.buckets) <= MAX_BUCKETS + 1
    # AND at the end it still shows the night in ~1,000-2,000 samples (64 s each)
    assert MAX_BUCKETS // 2 <= len(timeline.buckets) <= MAX_BUCKETS
    assert timeline.resolution == 64.0
    # AND no call, throttle or row was lost in merging
    assert sum(b.sent for b in timeline.buckets) == 139 * seconds == sent
    assert sum(b.throttled for b in timeline.buckets) == seconds // 100
    assert sum(b.statuses["updated"] for b in timeline.buckets) == sent
    assert sum(b.accepted for b in timeline.buckets) == 2 * seconds
    assert sum(b.samples for b in timeline.buckets) == seconds
    assert abs(sum(b.seconds for b in timeline.buckets) - seconds) < 1e-3
    # AND the rate set and calls in flight keep their level (means), not a sum
    assert all(abs(b.rate - 139.0) < 1e-9 and b.in_flight == 12 for b in timeline.buckets)
    # AND the file it is saved to stays small
    path = tmp_path / "night.timeline.json"
    timeline.save(path)
    assert path.stat().st_size < 600_000


def test_sparse_samples_far_apart_stay_bounded_too() -> None:
    # GIVEN samples 1,000 s apart (a run stopped and resumed again and again), 100 buckets
    timeline = Timeline(max_buckets=100)
    timeline.start_run(0.0, Reading())
    for n in range(1, 5001):
        timeline.sample(1000.0 * n, Reading(sent=n))
        # THEN lone buckets merge too: never more than the room
        assert len(timeline.buckets) <= 101
    assert sum(b.sent for b in timeline.buckets) == 5000


def test_percentiles_come_from_the_histogram_within_five_percent() -> None:
    # GIVEN 1,000 calls: 900 at 40 ms and 100 at 400 ms, recorded into one bucket
    timeline = Timeline()
    timeline.start_run(0.0, Reading())
    for i in range(1000):
        timeline.record_call(0.400 if i % 10 == 0 else 0.040)
    timeline.sample(0.5, Reading())
    histogram = timeline.buckets[0].latency
    # THEN p50 is ~40 ms and p95 is ~400 ms (log bins: within ±5 %)
    p50, p95 = percentile(histogram, 0.50), percentile(histogram, 0.95)
    assert p50 is not None and abs(p50 - 0.040) / 0.040 < 0.05
    assert p95 is not None and abs(p95 - 0.400) / 0.400 < 0.05
    # AND a bucket without calls has no percentile, and extremes land in the end bins
    assert percentile({}, 0.5) is None
    assert latency_bin(0.0) == 0 and latency_bin(1e9) == latency_bin(1e12)


def test_a_resumed_run_continues_the_timeline_and_keeps_the_gap(tmp_path: Path) -> None:
    # GIVEN a run that stopped after 50 s and saved its (unfinished) timeline
    path = tmp_path / "r.csv.timeline.json"
    first = Timeline(identity=IDENTITY, rows=100, max_buckets=16)
    first.start_run(1000.0, Reading())
    for s in range(1, 51):
        first.sample(1000.0 + s, Reading(sent=s, statuses={"updated": s}))
    first.finish(1051.0, Reading(sent=50, statuses={"updated": 50}), complete=False)
    first.save(path)
    # WHEN the same job is resumed an hour later and runs 10 s more
    second = open_timeline(path, IDENTITY, rows=100, resume=True)
    second.start_run(4651.0, Reading(statuses={"updated": 50}), resumed_rows=50)
    for s in range(1, 11):
        second.sample(4651.0 + s, Reading(sent=s, statuses={"updated": 50 + s}))
    # THEN it is the same timeline: both runs, all the calls, and the hour between them empty
    assert [r["start"] for r in second.runs] == [1000.0, 4651.0]
    assert second.runs[1]["resumed_rows"] == 50
    assert sum(b.sent for b in second.buckets) == 60
    assert sum(b.statuses.get("updated", 0) for b in second.buckets) == 60
    assert not [b for b in second.buckets if 1060.0 < b.t < 4640.0]
    # AND a finished timeline, another input's, or --fresh start afresh
    second.finish(4700.0, Reading(sent=10), complete=True)
    second.save(path)
    assert open_timeline(path, IDENTITY, rows=100, resume=True).runs == []
    first.save(path)
    assert open_timeline(path, {**IDENTITY, "input_sha256": "x"}, rows=1, resume=True).runs == []
    assert open_timeline(path, IDENTITY, rows=1, resume=False).runs == []


def test_an_unreadable_timeline_is_no_timeline(tmp_path: Path) -> None:
    # GIVEN a torn or foreign file where the timeline should be
    path = tmp_path / "x.timeline.json"
    path.write_text('{"timeline": 1, "buckets": [{"t"', encoding="utf-8")
    # THEN it is read as none (a picture of the run never stops a run)
    assert read_timeline(path) is None
    path.write_text('{"something": "else"}', encoding="utf-8")
    assert read_timeline(path) is None
    assert open_timeline(path, IDENTITY, rows=3, resume=True).rows == 3


def test_the_recorder_samples_on_its_clock_and_saves_owner_only(tmp_path: Path) -> None:
    # GIVEN a recorder on a manual clock, saving every 5 s
    clock = ManualClock(start=500.0)
    calls = [0]
    path = tmp_path / "r.csv.timeline.json"
    recorder = Recorder(Timeline(identity=IDENTITY), lambda: Reading(sent=calls[0]), path,
                        clock=clock, save_every=5.0)
    recorder.timeline.start_run(clock(), Reading())
    # WHEN 4 s pass, one tick a second: nothing is saved yet
    for _ in range(4):
        clock.now += 1.0
        calls[0] += 25
        recorder.tick()
    assert not path.exists()
    # AND the fifth second saves it
    clock.now += 1.0
    calls[0] += 25
    recorder.tick()
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert sum(b["sent"] for b in saved["buckets"]) == 125
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # AND closing takes a last sample and marks the run finished
    recorder.close(complete=True)
    final = read_timeline(path)
    assert final is not None and final.complete


def test_a_job_keeps_its_timeline_across_an_interruption_and_resume(tmp_path: Path) -> None:
    # GIVEN the demo job interrupted (as a signal does) at user0150
    fake = FakeCognito(seed_users())
    report = tmp_path / "demo.report.csv"
    config = job_config(report, workers=4)
    job = Job(config, gateway=fake, stream=io.StringIO())  # type: ignore[arg-type]

    def interrupt(username: str) -> None:
        if username == "user0150" and job.runner is not None:
            job.runner.stop("interrupted by SIGINT")

    fake.hook = interrupt
    first = job.run()
    after_first = read_timeline(timeline_path(report))
    assert after_first is not None and not after_first.complete
    # WHEN the same job runs again and finishes
    fake.hook = None
    second = Job(config, gateway=fake, stream=io.StringIO()).run()  # type: ignore[arg-type]
    # THEN its timeline holds both runs, every call of both, and every result each produced
    timeline = read_timeline(timeline_path(report))
    assert timeline is not None and timeline.complete
    assert len(timeline.runs) == 2
    assert timeline.runs[1]["resumed_rows"] == second.summary["resumed_rows"]
    assert sum(b.sent for b in timeline.buckets) == first.summary["calls"] + second.summary["calls"]
    results = sum(sum(b.statuses.values()) for b in timeline.buckets)
    assert results == 2 * first.summary["rows"] - second.summary["resumed_rows"]
    accepted = [user for _, user in fake.calls if user in fake.users]  # user9999 fails
    assert sum(b.accepted for b in timeline.buckets) == len(accepted)
    # AND the summary names it, with the exit code
    assert second.summary["timeline"] == str(timeline_path(report))
    assert second.summary["exit_code"] == 1


def test_the_progress_line_shows_the_finish_as_a_local_time_and_the_quota_share() -> None:
    from datetime import datetime

    from batch.models import RowResult, Status
    from batch.view.progress import Progress

    # GIVEN a 1000-row run whose quota is known (50/s), on manual clocks
    clock = ManualClock(start=0.0)
    wall = 1_800_000_000.0
    calls = [0]
    stream = io.StringIO()
    progress = Progress(1000, stream=stream, interval=10.0, clock=clock, wall=lambda: wall,
                        extra=lambda: {"rate": 25.0, "throttles": 0, "calls": calls[0],
                                       "quota": 50.0})
    # WHEN 250 rows (and calls) finish in the first 10 s
    for n in range(1, 251):
        clock.now = n * 0.04
        calls[0] = n
        progress.add(RowResult(n, f"u{n}", Status.UPDATED))
    line = stream.getvalue().strip().splitlines()[-1]
    # THEN the line says when it will be done (750 rows at 25/s: in 30 s) as a local time
    assert f"(done ~{datetime.fromtimestamp(wall + 30).strftime('%H:%M')})" in line
    # AND the job's 25 calls/s as a share of the 50/s quota
    assert "rate 25.0/s (50% of the 50/s quota)" in line
    # AND without a known quota, no share is claimed
    quiet = Progress(10, stream=io.StringIO(), extra=lambda: {"rate": 1.0, "calls": 5})
    assert "quota" not in quiet.line(5.0)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_resume_on_a_terminal_shows_carried_rows_before_the_runner_exists(
    tmp_path: Path,
) -> None:
    # GIVEN a run interrupted at user0150 (over 25 rows finished), on a terminal
    fake = FakeCognito(seed_users())
    report = tmp_path / "demo.report.csv"
    config = job_config(report, workers=4, quiet=False)
    job = Job(config, gateway=fake, stream=Terminal())  # type: ignore[arg-type]

    def interrupt(username: str) -> None:
        if username == "user0150" and job.runner is not None:
            job.runner.stop("interrupted by SIGINT")

    fake.hook = interrupt
    job.run()
    # WHEN it is resumed on a terminal (the bar's postfix is drawn for the carried rows)
    fake.hook = None
    terminal = Terminal()
    result = Job(config, gateway=fake, stream=terminal).run()  # type: ignore[arg-type]
    # THEN it finishes (no error while the carried rows are counted) and the bar was drawn
    assert result.summary["resumed_rows"] >= 25
    assert result.exit_code == 1 and "row" in terminal.getvalue()
