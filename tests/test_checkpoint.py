"""Reports and checkpoints in S3 (the emulator's moto S3 over HTTP, no boto3 mocking): a run
killed with SIGKILL resumes on a "fresh machine" from its S3 segments; SIGTERM leaves the
checkpoint, report and summary in S3; the lease keeps one run per report; an upload that fails
is retried and loses no row; S3 errors stop the run before any Cognito write."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import report_rows, wait_for

from batch.cli import main
from batch.errors import ResumeError, StorageError
from batch.models import RowResult, Status
from batch.plan.in_doubt import HELD
from batch.record.journal import Journal, JournalHeader, encode, read_journal
from batch.record.lock import LockedError
from batch.remote.checkpoint import Checkpoint, S3Report, segment_name
from batch.remote.lease import CLOCK_SKEW_SECONDS, Lease, LeaseLost
from batch.remote.segments import segment_header
from batch.store.storage import Location, ObjectInfo, Storage, parse, storage_for

ROOT = Path(__file__).resolve().parent.parent
SEGMENTS = "out/report.csv.journal.d/"


def input_csv(n: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["username", "tier"])
    for i in range(1, n + 1):
        writer.writerow([f"c{i:04d}", f"t{i % 7}"])
    return out.getvalue().encode()


def prepare(make_pool: Any, make_bucket: Any, s3_client: Any, n: int) -> tuple[str, str]:
    pool = make_pool(users=[{"username": f"c{i:04d}"} for i in range(1, n + 1)])
    bucket = make_bucket()
    s3_client.put_object(Bucket=bucket, Key="in/users.csv", Body=input_csv(n))
    return pool, bucket


def command(pool: str, emulator: Any, bucket: str, *extra: str) -> list[str]:
    return ["run", f"s3://{bucket}/in/users.csv", "--user-pool-id", pool, "--endpoint-url",
            emulator.endpoint_url, "--report", f"s3://{bucket}/out/report.csv", "--yes",
            "--quiet", *extra]


def start(args: list[str], home: Path) -> subprocess.Popen[bytes]:
    """A real process on a "machine" whose only disk is ``home`` (cwd, HOME and TMPDIR)."""
    for name in ("cwd", "home", "tmp"):
        (home / name).mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "HOME": str(home / "home"),
        "TMPDIR": str(home / "tmp"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen([sys.executable, "-m", "batch", *args], cwd=home / "cwd", env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def keys(s3_client: Any, bucket: str, prefix: str = "") -> list[str]:
    answer = s3_client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for item in answer.get("Contents", [])]


def get(s3_client: Any, bucket: str, key: str) -> bytes:
    body: bytes = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def s3_rows(s3_client: Any, bucket: str, key: str = "out/report.csv") -> list[dict[str, str]]:
    """The report at ``key``, read through the tool's reader from a local copy."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / key.rpartition("/")[2]
        local.write_bytes(get(s3_client, bucket, key))
        return list(report_rows(local).values())


def finished_in(data: bytes, tmp: Path) -> set[int]:
    path = tmp / "j.journal"
    path.write_bytes(data)
    state = read_journal(path)
    return rows_of(state.finished) if state is not None else set()


def rows_of(rows: Any, up_to: int = 1000) -> set[int]:
    return {r for r in range(1, up_to + 1) if r in rows}


def s3_journal(s3_client: Any, bucket: str) -> bytes:
    """The journal the segments hold (each without its header line)."""
    parts = [get(s3_client, bucket, k) for k in sorted(keys(s3_client, bucket, SEGMENTS))]
    return b"".join(part[part.find(b"\n") + 1 :] for part in parts)


def accepted(emulator: Any) -> int:
    ops = emulator.stats()["operations"].get("AdminUpdateUserAttributes", {})
    return int(ops.get("accepted", 0))


def test_sigkill_then_a_fresh_machine_resumes_from_s3(
    make_pool: Any, make_bucket: Any, s3_client: Any, emulator: Any, tmp_path: Path
) -> None:
    # GIVEN 300 rows in S3, a report in S3, segments every 0.2 s
    n, workers = 300, 4
    pool, bucket = prepare(make_pool, make_bucket, s3_client, n)
    emulator.configure(quotas={"UserUpdate": 1000}, latency_ms=5)
    args = command(pool, emulator, bucket, "--rate", "100", "--workers", str(workers),
                   "--checkpoint-seconds", "0.2", "--lease-seconds", "1")
    first = tmp_path / "machine-1"
    proc = start(args, first)
    # WHEN it is killed (SIGKILL) once S3 holds a few segments
    assert wait_for(lambda: len(keys(s3_client, bucket, SEGMENTS)) >= 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    spool = next((first / "tmp").glob("cognito-batch-*"))
    local_done = finished_in((spool / "report.csv.journal").read_bytes(), tmp_path)
    s3_done = finished_in(s3_journal(s3_client, bucket), tmp_path)
    assert s3_done and s3_done <= local_done and len(s3_done) < n
    # ... the machine's working directory, HOME and TMPDIR are gone
    shutil.rmtree(first)
    # WHEN the same command runs at once on another machine with nothing on its disk (it
    # waits out the killed run's lease: nobody renews it)
    again = start(args[:-4] + ["--rate", "1000"], tmp_path / "machine-2")
    _, err = again.communicate(timeout=120)
    # THEN it finishes, and the S3 report holds every row exactly once: updated, or (a row
    # the killed run had sent, not yet checkpointed) read and found holding its values
    assert again.returncode == 0, err.decode()
    rows = s3_rows(s3_client, bucket)
    assert sorted(int(r["row"]) for r in rows) == list(range(1, n + 1))
    held = {int(r["row"]) for r in rows if r["status"] == "unchanged"}
    assert {r["status"] for r in rows} <= {"updated", "unchanged"}
    assert all(r["error_message"] == HELD for r in rows if r["status"] == "unchanged")
    # ... every row the killed run finished but S3 never heard of was among them
    assert local_done - s3_done <= held
    # ... the users hold the input's values
    for i in (1, 77, 150, n):
        assert emulator.get_user_attributes(pool, f"c{i:04d}")["custom:tier"] == f"t{i % 7}"
    # ... and none was written twice: the rows after the last checkpoint were read first
    # (issue 20 item 6; before, every one of them was written again)
    assert accepted(emulator) == n
    reads = emulator.stats()["operations"].get("AdminGetUser", {}).get("calls", 0)
    assert len(held) <= reads
    # ... the summary is in S3 and names the S3 report; the journal is compacted to one object
    summary = json.loads(get(s3_client, bucket, "out/report.csv.summary.json"))
    assert summary["report"] == f"s3://{bucket}/out/report.csv"
    assert summary["resumed_rows"] == len(s3_done)
    assert keys(s3_client, bucket, SEGMENTS) == []
    state_bytes = get(s3_client, bucket, "out/report.csv.journal")
    assert finished_in(state_bytes, tmp_path) == set(range(1, n + 1))
    print(
        f"\ns3 kill test: rows={n} checkpointed_at_kill={len(s3_done)} "
        f"journaled_locally_at_kill={len(local_done)} accepted={accepted(emulator)}"
    )


def test_sigterm_puts_checkpoint_report_and_summary_in_s3(
    make_pool: Any, make_bucket: Any, s3_client: Any, emulator: Any, tmp_path: Path
) -> None:
    # GIVEN a run under a throttling quota (20 updates/s enforced), the checkpoint in S3
    n = 300
    pool, bucket = prepare(make_pool, make_bucket, s3_client, n)
    emulator.configure(quotas={"UserUpdate": 20}, latency_ms=5)
    proc = start(command(pool, emulator, bucket, "--rate", "auto", "--checkpoint-seconds", "0.5"),
                 tmp_path / "m")
    # WHEN SIGTERM arrives once a segment is in S3
    assert wait_for(lambda: len(keys(s3_client, bucket, SEGMENTS)) >= 1, proc)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    # THEN exit 143; the report (every row once, the rest skipped), summary and segments are in S3
    assert proc.returncode == 143, err.decode()
    rows = s3_rows(s3_client, bucket)
    assert sorted(int(r["row"]) for r in rows) == list(range(1, n + 1))
    assert any(r["status"] == "skipped" for r in rows)
    summary = json.loads(get(s3_client, bucket, "out/report.csv.summary.json"))
    assert summary["exit_code"] == 143
    done_in_report = {int(r["row"]) for r in rows if r["status"] == "updated"}
    assert finished_in(s3_journal(s3_client, bucket), tmp_path) == done_in_report
    assert "out/report.csv.journal" not in keys(s3_client, bucket)  # not finished: no compaction
    print(f"\ns3 sigterm test: SIGTERM->exit {took:.2f}s, rows done {len(done_in_report)}")


def test_fresh_never_replaces_an_unfinished_s3_runs_before_images(
    make_pool: Any, make_bucket: Any, s3_client: Any, emulator: Any, tmp_path: Path
) -> None:
    # GIVEN an S3-report run with before-images, stopped (SIGTERM) part way: its images in S3
    n = 300
    pool, bucket = prepare(make_pool, make_bucket, s3_client, n)
    emulator.configure(quotas={"UserUpdate": 1000}, latency_ms=5)
    args = command(pool, emulator, bucket, "--undo", "--rate", "50",
                   "--checkpoint-seconds", "0.2")
    proc = start(args, tmp_path / "m1")
    assert wait_for(lambda: len(keys(s3_client, bucket, SEGMENTS)) >= 2, proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 143
    images = get(s3_client, bucket, "out/report.csv.undo.jsonl")
    # WHEN the same command runs with --fresh on another machine
    again = start(args + ["--fresh"], tmp_path / "m2")
    _, err = again.communicate(timeout=60)
    # THEN it is refused before any write, and the images in S3 are the stopped run's
    assert again.returncode == 2, err.decode()
    assert "before-images" in err.decode() and "--fresh" in err.decode()
    assert get(s3_client, bucket, "out/report.csv.undo.jsonl") == images


def test_report_in_s3_lands_beside_it(
    make_pool: Any, make_bucket: Any, s3_client: Any, emulator: Any, tmp_path: Path
) -> None:
    # GIVEN 30 rows and a .jsonl report in S3
    n = 30
    pool, bucket = prepare(make_pool, make_bucket, s3_client, n)
    emulator.configure(quotas={"UserUpdate": 1000})  # the run's pace is not looked at here
    args = command(pool, emulator, bucket, "--rate", "500")
    args[args.index("--report") + 1] = f"s3://{bucket}/out/report.jsonl"
    # WHEN the run ends
    assert main(args) == 0
    # THEN the report, summary, timeline and compacted journal are there; the lease released
    names = set(keys(s3_client, bucket, "out/"))
    assert {"out/report.jsonl", "out/report.jsonl.summary.json", "out/report.jsonl.journal",
            "out/report.jsonl.timeline.json", "out/report.jsonl.lease"} == names
    rows = s3_rows(s3_client, bucket, "out/report.jsonl")
    assert sorted(int(r["row"]) for r in rows) == list(range(1, n + 1))
    assert json.loads(get(s3_client, bucket, "out/report.jsonl.lease"))["expires"] == 0
    # WHEN it runs again: a finished run is replaced, as for a local report
    assert main(args) == 0
    assert sorted(keys(s3_client, bucket, "out/")) == sorted(names)


def test_a_second_run_is_refused_by_the_lease(
    make_pool: Any, make_bucket: Any, s3_client: Any, emulator: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a live run's lease on the report, renewed as a running job renews it
    pool, bucket = prepare(make_pool, make_bucket, s3_client, 5)
    where = parse(f"s3://{bucket}/out/report.csv.lease")
    holder = Lease(storage_for(where), where, ttl=2.0)
    holder.acquire()
    stop = threading.Event()
    renewer = threading.Thread(target=lambda: [holder.renew() for _ in iter(
        lambda: stop.wait(0.1), True)])
    renewer.start()
    try:
        # WHEN the same command starts elsewhere
        code = main(command(pool, emulator, bucket))
    finally:
        stop.set()
        renewer.join()
    # THEN it exits 2 naming the holder, before any Cognito write
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another run is using this report" in err[0]
    assert f"pid {os.getpid()}" in err[0]
    assert accepted(emulator) == 0


def test_an_expired_lease_is_taken_over_and_the_old_holder_learns_it(
    make_bucket: Any, s3_endpoint: str
) -> None:
    # GIVEN run A's lease (10 s) and a clock that the runs' waits move on
    bucket = make_bucket()
    where = parse(f"s3://{bucket}/r.csv.lease")
    now = [1000.0]
    renewing = [True]
    a = Lease(storage_for(where), where, ttl=10, clock=lambda: now[0])

    def sleep(seconds: float) -> None:
        now[0] += seconds
        if renewing[0]:
            a.renew()  # A is alive: it renews while B watches

    b = Lease(storage_for(where), where, ttl=10, clock=lambda: now[0], sleep=sleep)
    a.acquire()
    # WHEN B starts while A renews, THEN it is refused after one look
    with pytest.raises(LockedError, match="renews its lease"):
        b.acquire()
    assert now[0] <= 1001.25
    # WHEN A was killed (no renewal), THEN B waits out its expiry and takes it over
    renewing[0] = False
    started = now[0]
    b.acquire()
    assert b.held and now[0] - started <= 10 + CLOCK_SKEW_SECONDS + 0.5
    # ... C, then, is refused (B renews) ...
    c = Lease(storage_for(where), where, ttl=10, clock=lambda: now[0],
              sleep=lambda s: (now.__setitem__(0, now[0] + s), b.renew()))
    with pytest.raises(LockedError):
        c.acquire()
    # ... and A, if it was only paused, learns on its next renewal that it lost it
    with pytest.raises(LeaseLost):
        a.renew()


@pytest.mark.parametrize("expires", ['"soon"', "null", "1e12", "NaN", '[1]', "1e400"])
def test_a_tampered_lease_is_taken_over_after_the_ttl_never_a_traceback_or_forever(
    make_bucket: Any, s3_endpoint: str, s3_client: Any, expires: str
) -> None:
    # GIVEN a lease object edited by hand: an expiry that is not a time a run writes
    bucket = make_bucket()
    s3_client.put_object(Bucket=bucket, Key="r.csv.lease",
                         Body=f'{{"holder": "x", "expires": {expires}, "ttl": 4}}'.encode())
    where = parse(f"s3://{bucket}/r.csv.lease")
    now, said = [1000.0], []

    def sleep(seconds: float) -> None:
        now[0] += seconds
        assert now[0] < 1000 + 10 * 10, "waited past any ttl"  # instead of forever

    # WHEN a run (ttl 10 s) starts on the report
    lease = Lease(storage_for(where), where, ttl=10, clock=lambda: now[0], sleep=sleep,
                  warn=said.append)
    lease.acquire()
    # THEN it waited the ttl and the assumed skew from when it first saw it, took it over,
    # and said so once
    assert lease.held
    assert 10 + CLOCK_SKEW_SECONDS <= now[0] - 1000 <= 10 + CLOCK_SKEW_SECONDS + 1.5
    assert len(said) == 1 and "cannot be read" in said[0]
    assert json.loads(get(s3_client, bucket, "r.csv.lease"))["holder"] == lease.holder


class Flaky:
    """The real S3 storage, with puts that fail ``failures`` times first (one of them after
    the object was written: the answer lost on the way back)."""

    def __init__(self, inner: Storage, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.puts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put(self, location: Location, data: bytes, **kwargs: Any) -> ObjectInfo:
        self.puts += 1
        if self.failures:
            self.failures -= 1
            if self.failures == 0:  # written, but the caller never hears so
                self.inner.put(location, data, **kwargs)
            raise StorageError("InternalError: try again", uri=str(location), code="InternalError")
        return self.inner.put(location, data, **kwargs)


def test_an_upload_failing_twice_then_succeeding_loses_no_row(
    make_bucket: Any, s3_endpoint: str, tmp_path: Path
) -> None:
    # GIVEN a journal of 50 results and S3 puts that fail twice (the second after writing)
    bucket = make_bucket()
    report = S3Report(f"s3://{bucket}/out/report.csv", spool_root=str(tmp_path))
    flaky = Flaky(report.store, failures=2)
    sleeps: list[float] = []
    checkpoint = Checkpoint(flaky, report.segments, report.journal, interval=60,
                            sleep=sleeps.append)  # type: ignore[arg-type]
    header = JournalHeader("sha", "settings")
    journal = Journal(report.journal, header)
    checkpoint.begin(resumed=False, restored_segments=0, clear=report.clear)
    checkpoint.start()
    for row in range(1, 51):
        journal.write(RowResult(row, f"u{row}", Status.UPDATED, 1))
    # WHEN the checkpoint uploads, at each tick (botocore retries each put: one layer, so a
    # failed segment stays pending and the next tick puts the same bytes)
    for _ in range(2):
        with pytest.raises(StorageError):
            checkpoint.upload()
    checkpoint.upload()
    checkpoint.close()
    journal.close()
    # THEN the segment holds every row once (the lost answer's retry found its own bytes
    # there and counted it done)
    assert sleeps == [] and flaky.puts == 3
    assert checkpoint.next_seq == 1
    # ... and a fresh machine rebuilds exactly those rows from S3
    fresh = S3Report(f"s3://{bucket}/out/report.csv", spool_root=str(tmp_path))
    fresh.restore()
    state = read_journal(fresh.journal)
    assert state is not None and state.header == header
    assert rows_of(state.finished) == set(range(1, 51)) and fresh.restored_segments == 1


def test_a_damaged_last_segment_is_cut_and_an_earlier_gap_refused(
    make_bucket: Any, s3_client: Any, tmp_path: Path
) -> None:
    # GIVEN segment 0 (header + 2 rows) and segment 1 (one row and half a line)
    bucket = make_bucket()
    header = json.dumps(JournalHeader("sha", "s").as_record()).encode() + b"\n"
    line = [encode(RowResult(r, f"u{r}", Status.UPDATED, 1)) for r in (1, 2, 3, 4)]
    mark = [segment_header("run1", n, "holder") for n in range(4)]
    s3_client.put_object(Bucket=bucket, Key=SEGMENTS + segment_name(0),
                         Body=mark[0] + header + line[0] + line[1])
    s3_client.put_object(Bucket=bucket, Key=SEGMENTS + segment_name(1),
                         Body=mark[1] + line[2] + line[3][:9])
    # WHEN a fresh machine restores
    report = S3Report(f"s3://{bucket}/out/report.csv", spool_root=str(tmp_path))
    report.restore()
    # THEN the whole lines are kept and the segment is put back cut to them
    state = read_journal(report.journal)
    assert state is not None and rows_of(state.finished) == {1, 2, 3}
    assert get(s3_client, bucket, SEGMENTS + segment_name(1)) == mark[1] + line[2]
    # WHEN a segment before the last is missing, THEN the checkpoint is refused
    s3_client.put_object(Bucket=bucket, Key=SEGMENTS + segment_name(3), Body=mark[3] + line[3])
    with pytest.raises(ResumeError, match="seg-000002 is missing"):
        S3Report(f"s3://{bucket}/out/report.csv", spool_root=str(tmp_path)).restore()


def test_planted_renumbered_or_foreign_segments_are_refused(
    make_bucket: Any, s3_client: Any, tmp_path: Path
) -> None:
    # GIVEN a run's checkpoint: segment 0 (header + rows 1, 2) and segment 1 (row 3)
    bucket = make_bucket()
    header = json.dumps(JournalHeader("sha", "s").as_record()).encode() + b"\n"
    line = {r: encode(RowResult(r, f"u{r}", Status.UPDATED, 1)) for r in range(0, 101)}
    put = lambda n, body: s3_client.put_object(  # noqa: E731
        Bucket=bucket, Key=SEGMENTS + segment_name(n), Body=body)
    put(0, segment_header("run1", 0, "h1") + header + line[1] + line[2])
    put(1, segment_header("run1", 1, "h2") + line[3])

    def restore() -> S3Report:
        report = S3Report(f"s3://{bucket}/out/report.csv", spool_root=str(tmp_path))
        report.restore()
        return report

    report = restore()
    state = read_journal(report.journal)
    assert state is not None and rows_of(state.finished) == {1, 2, 3} and report.run == "run1"
    plants = {
        # CRC-valid result lines put as the next segment by PutObject alone (no header)
        "without its header": b"".join(line[r] for r in range(4, 101)),
        # a header guessed without the run's id
        "of another run": segment_header("guess", 2, "x") + line[4],
        # a segment of this run copied under the next number
        "numbered 1": segment_header("run1", 1, "h2") + line[3],
        # a row no input has
        "out of the input's range": segment_header("run1", 2, "h2") + line[0],
    }
    for why, body in plants.items():
        put(2, body)
        # WHEN a resume restores, THEN the checkpoint is refused in one line, saying why
        with pytest.raises(ResumeError, match=why) as refused:
            restore()
        assert "\n" not in str(refused.value) and "--fresh" in str(refused.value)


def test_a_checkpoint_of_another_input_is_refused(
    make_pool: Any, make_bucket: Any, s3_client: Any, emulator: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN segments in S3 of an unfinished run of another input
    pool, bucket = prepare(make_pool, make_bucket, s3_client, 5)
    header = json.dumps(JournalHeader("another", "s").as_record()).encode() + b"\n"
    row = encode(RowResult(1, "c0001", Status.UPDATED, 1))
    s3_client.put_object(Bucket=bucket, Key=SEGMENTS + segment_name(0),
                         Body=segment_header("run1", 0, "holder") + header + row)
    # WHEN the command runs, THEN it is refused in one line naming the S3 checkpoint
    assert main(command(pool, emulator, bucket)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"s3://{bucket}/{SEGMENTS}" in err[0]
    assert "different input" in err[0]
    assert accepted(emulator) == 0


def test_a_missing_bucket_stops_before_any_write(
    make_pool: Any, make_bucket: Any, s3_client: Any, emulator: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a report in a bucket that does not exist
    pool, bucket = prepare(make_pool, make_bucket, s3_client, 5)
    args = command(pool, emulator, bucket)
    args[args.index("--report") + 1] = "s3://no-such-bucket-here/out/report.csv"
    # WHEN it runs, THEN one line, exit 2, no Cognito write
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NoSuchBucket" in err[0], err
    assert accepted(emulator) == 0


def test_a_shard_of_an_s3_report_is_named_beside_it() -> None:
    # GIVEN an S3 report and --shard 2/3, WHEN the config is built
    from batch.config import build_config

    settings = {"input": "s3://b/in.csv", "user_pool_id": "p", "report": "s3://b/out/r.csv",
                "shard": "2/3", "rate": "25"}
    config = build_config(None, settings)
    # THEN the shard's report is an object beside it (not a local folder named "s3:")
    assert config.report == "s3://b/out/r.shard-2-of-3.csv"


def test_shards_reporting_to_s3_merge_there(
    make_pool: Any, make_bucket: Any, s3_client: Any, emulator: Any
) -> None:
    # GIVEN an array job of 2 shards, each reporting under the same S3 prefix
    n = 40
    pool, bucket = prepare(make_pool, make_bucket, s3_client, n)
    emulator.configure(quotas={"UserUpdate": 1000})  # not each shard at half of 25/s
    for k in (0, 1):
        args = command(pool, emulator, bucket, "--rate", "500", "--shard", f"{k}/2")
        assert main(args) == 0
    # WHEN the shard reports are merged where they are
    assert main(["merge", f"s3://{bucket}/out/report.csv", "--quiet"]) == 0
    # THEN one report in S3 holds every row exactly once, with a summary beside it
    rows = s3_rows(s3_client, bucket)
    assert sorted(int(r["row"]) for r in rows) == list(range(1, n + 1))
    summary = json.loads(get(s3_client, bucket, "out/report.csv.summary.json"))
    assert summary["report"] == f"s3://{bucket}/out/report.csv"
    assert summary["counts"]["updated"] == n and len(summary["shards"]) == 2
    # AND a prefix names the same run
    assert main(["merge", f"s3://{bucket}/out/", "--quiet"]) == 0
