"""The end of an S3-report run survives a stop, and deleting is batched and optional (issue 20
items 7 and 10, the S3 parts). The emulator's moto S3 over HTTP; no boto3 mocking.

1. Segments are deleted with DeleteObjects, 1,000 keys a request, never one DELETE each.
   -> test_delete_many_sends_one_request_per_1000_keys, test_compaction_deletes_in_one_batch
2. SIGTERM while the end of a run is put in S3 is handled (recorded, not the default action):
   the puts finish, the deletes are left, the handler before it comes back.
   -> test_sigterm_during_publish_is_handled
3. Without s3:DeleteObject a first run works; its segments stay, said once as a warning.
   Replacing that finished run (--fresh) is refused naming s3:DeleteObject (not GetObject).
   -> test_without_delete_permission_a_run_works_and_warns_once
4. ``--fresh`` discards a damaged S3 checkpoint that a plain rerun refuses.
   -> test_fresh_clears_a_damaged_checkpoint
5. A run stopped while its end went to S3 (its compaction) is finished by the rerun with no
   call, and its before-images are kept (issue 20 item 5).
   -> test_a_finished_run_stopped_in_compaction_is_finished_not_redone
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from test_checkpoint import SEGMENTS, command, get, keys, prepare, s3_rows

from batch.cli import main
from batch.models import RowResult, Status
from batch.record.journal import Journal, JournalHeader, encode
from batch.record.report import summary_path
from batch.remote.checkpoint import Checkpoint, S3Report, segment_name
from batch.store.storage import Location, ObjectInfo, Storage, parse, storage_for


def test_delete_many_sends_one_request_per_1000_keys(
    make_bucket: Any, s3_client: Any, emulator: Any
) -> None:
    # GIVEN 1,001 objects
    bucket = make_bucket()
    for i in range(1001):
        s3_client.put_object(Bucket=bucket, Key=f"seg/{i:05d}", Body=b"x")
    emulator.s3.reset()
    # WHEN they are deleted together
    store = storage_for(parse(f"s3://{bucket}/seg/"))
    refused = store.delete_many([parse(f"s3://{bucket}/seg/{i:05d}") for i in range(1001)])
    # THEN two requests, none refused, nothing left
    assert refused == []
    assert emulator.s3.stats().get("POST") == 2 and "DELETE" not in emulator.s3.stats()
    assert keys(s3_client, bucket, "seg/") == []


def finished_run(report: S3Report, segments: int) -> Checkpoint:
    """A finished run's spool (report, summary, a complete journal) and its segments in S3."""
    report.local.write_text("row,username,status\n")
    summary_path(report.local).write_text("{}\n")
    checkpoint = Checkpoint(report.store, report.segments, report.journal, interval=60)
    journal = Journal(report.journal, JournalHeader("sha", "settings"))
    checkpoint.begin(resumed=False, restored_segments=0, clear=report.clear)
    for row in range(1, segments + 1):
        journal.write(RowResult(row, f"u{row}", Status.UPDATED, 1))
        journal.sync()
        checkpoint.upload()
    journal.complete()
    journal.close()
    return checkpoint


def test_compaction_deletes_in_one_batch(
    make_bucket: Any, s3_client: Any, emulator: Any, tmp_path: Path
) -> None:
    # GIVEN a finished run whose journal went to S3 as 12 segments
    bucket = make_bucket()
    report = S3Report(f"s3://{bucket}/out/report.csv", spool_root=str(tmp_path))
    checkpoint = finished_run(report, 12)
    assert len(keys(s3_client, bucket, SEGMENTS)) == 12
    emulator.s3.reset()
    # WHEN it is published
    report.publish(checkpoint)
    # THEN the journal is one object and its segments went in one DeleteObjects request
    assert keys(s3_client, bucket, SEGMENTS) == []
    assert "out/report.csv.journal" in keys(s3_client, bucket, "out/")
    assert "DELETE" not in emulator.s3.stats() and emulator.s3.stats().get("POST") == 1


class Signalling:
    """The real storage; the report's upload is where SIGTERM arrives."""

    def __init__(self, inner: Storage, at: str) -> None:
        self.inner, self.at = inner, at

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put_file(self, location: Location, path: Path) -> None:
        if location.key.endswith(self.at):
            signal.raise_signal(signal.SIGTERM)
        self.inner.put_file(location, path)

    def put(self, location: Location, data: bytes, **kwargs: Any) -> ObjectInfo:
        return self.inner.put(location, data, **kwargs)


def test_sigterm_during_publish_is_handled(
    make_bucket: Any, s3_client: Any, tmp_path: Path
) -> None:
    # GIVEN a finished run about to publish, and SIGTERM arriving during the report's upload
    # (the handler installed before stands for the default action: the process killed)
    bucket = make_bucket()
    report = S3Report(f"s3://{bucket}/out/report.csv", spool_root=str(tmp_path))
    checkpoint = finished_run(report, 3)
    warnings: list[str] = []
    checkpoint.store = report.store = Signalling(report.store, "out/report.csv")  # type: ignore[assignment]
    checkpoint.warn = warnings.append
    killed: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: killed.append(signum))
    try:
        # WHEN it publishes
        report.publish(checkpoint)
        after = signal.getsignal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    # THEN the signal was handled by the publish, which put everything but left the deletes
    assert killed == []
    names = set(keys(s3_client, bucket, "out/report.csv"))
    assert {"out/report.csv", "out/report.csv.summary.json", "out/report.csv.journal"} <= names
    assert len(keys(s3_client, bucket, SEGMENTS)) == 4  # 3 + the =complete line's
    assert len(warnings) == 1 and warnings[0].startswith("SIGTERM")
    # ... and the handler from before is back
    assert after is not None and after != signal.SIG_DFL and callable(after)


def test_without_delete_permission_a_run_works_and_warns_once(
    make_pool: Any, make_bucket: Any, s3_client: Any, emulator: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a role without s3:DeleteObject on the report's prefix
    pool, bucket = prepare(make_pool, make_bucket, s3_client, 20)
    emulator.configure(quotas={"UserUpdate": 1000})
    emulator.s3.deny(bucket, "out/", action="DeleteObject")
    args = command(pool, emulator, bucket, "--rate", "500", "--checkpoint-seconds", "0.05")
    # WHEN a first run runs, THEN it finishes; the segments stay, said once
    assert main(args) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "s3:DeleteObject" in err[0] and "harmless" in err[0], err
    assert len(s3_rows(s3_client, bucket)) == 20
    assert keys(s3_client, bucket, SEGMENTS)
    # WHEN the finished run is replaced (--fresh: a plain rerun finishes it, no call), THEN
    # one line naming the permission it lacks
    assert main([*args, "--fresh"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "s3:DeleteObject" in err[0] and "GetObject" not in err[0], err


def test_fresh_clears_a_damaged_checkpoint(
    make_pool: Any, make_bucket: Any, s3_client: Any, emulator: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a checkpoint in S3 with a segment missing before the last
    pool, bucket = prepare(make_pool, make_bucket, s3_client, 10)
    emulator.configure(quotas={"UserUpdate": 1000})
    header = json.dumps(JournalHeader("another", "s").as_record()).encode() + b"\n"
    line = encode(RowResult(1, "c0001", Status.UPDATED, 1))
    s3_client.put_object(Bucket=bucket, Key=SEGMENTS + segment_name(0), Body=header + line)
    s3_client.put_object(Bucket=bucket, Key=SEGMENTS + segment_name(2), Body=line)
    args = command(pool, emulator, bucket, "--rate", "500")
    # WHEN rerun as it is, THEN refused, saying --fresh
    assert main(args) == 2
    assert "--fresh" in capsys.readouterr().err
    # WHEN rerun with --fresh, THEN it runs every row and the damaged segments are gone
    assert main([*args, "--fresh"]) == 0
    rows = s3_rows(s3_client, bucket)
    assert sorted(int(r["row"]) for r in rows) == list(range(1, 11))
    assert {r["status"] for r in rows} == {"updated"}
    assert keys(s3_client, bucket, SEGMENTS) == []


def test_a_finished_run_stopped_in_compaction_is_finished_not_redone(
    make_pool: Any, make_bucket: Any, s3_client: Any, emulator: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a run with before-images that finished, its segments left in S3 as a stop during
    # the compaction leaves them (here: the deletes denied)
    pool, bucket = prepare(make_pool, make_bucket, s3_client, 20)
    emulator.configure(quotas={"UserUpdate": 1000})
    emulator.s3.deny(bucket, "out/", action="DeleteObject")
    args = command(pool, emulator, bucket, "--rate", "500", "--undo")
    assert main(args) == 0
    assert keys(s3_client, bucket, SEGMENTS)
    images = get(s3_client, bucket, "out/report.csv.undo.jsonl")
    emulator.s3.reset()
    emulator.reset()
    capsys.readouterr()
    # WHEN the scheduler retries it
    code = main(args)
    # THEN it finishes the compaction with no Cognito call, the run's exit code, and the
    # before-images in S3 are the run's
    assert code == 0
    assert emulator.stats()["operations"].get("AdminUpdateUserAttributes", {}).get("calls", 0) == 0
    assert keys(s3_client, bucket, SEGMENTS) == []
    assert get(s3_client, bucket, "out/report.csv.undo.jsonl") == images
    assert len(s3_rows(s3_client, bucket)) == 20
