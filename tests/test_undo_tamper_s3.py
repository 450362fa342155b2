"""A tampered undo object in S3 cannot aim the undo (issue 20 item 1: "the same for an S3
report prefix, where anyone with PutObject could plant records today").

End to end: the emulator's Cognito and moto S3 over HTTP, the run a real process. A run with
``--report s3://b/out/report.csv --undo`` puts its before-images beside the report
(``report.csv.undo.jsonl``); its journal is the compacted ``report.csv.journal`` once finished,
or the segments ``report.csv.journal.d/seg-*`` when stopped. The undo object is then rewritten
as someone with ``s3:PutObject`` on the prefix (not the journal) would, and
``cognito-batch undo s3://b/out/report.csv`` must refuse (exit 2) before any Cognito write;
the object as the run wrote it still undoes.

1. A finished run: a record planted for another user, a changed value, a record dropped,
   another pool in the header, a record added -> refused, no write; the original undoes.
   -> test_a_tampered_s3_undo_object_is_refused_before_any_write[finished]
2. A run stopped by SIGTERM (journal in segments): the same four edits -> refused; a record
   added for a row the run never journaled restores nothing; the original undoes every row
   the report says was updated.
   -> test_a_tampered_s3_undo_object_is_refused_before_any_write[stopped]
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for
from test_checkpoint import SEGMENTS, command, get, input_csv, keys, s3_rows, start

from batch.cli import main

UNDO = "out/report.csv.undo.jsonl"
WRITES = ("AdminUpdateUserAttributes", "AdminDeleteUserAttributes")
Edit = Callable[[list[dict[str, Any]], str], list[dict[str, Any]]]


def writes(emulator: Any) -> int:
    stats = emulator.stats()["operations"]
    return sum(int(stats.get(op, {}).get("calls", 0)) for op in WRITES)


def planted_for_another_user(lines: list[dict[str, Any]], other: str) -> list[dict[str, Any]]:
    lines[1]["username"] = "victim"  # in the pool, never in the run's input
    lines[1]["before"]["custom:tier"] = "admin"
    return lines


def changed_value(lines: list[dict[str, Any]], other: str) -> list[dict[str, Any]]:
    lines[2]["before"]["custom:tier"] = "admin"
    return lines


def dropped_record(lines: list[dict[str, Any]], other: str) -> list[dict[str, Any]]:
    del lines[3]
    return lines


def another_pool(lines: list[dict[str, Any]], other: str) -> list[dict[str, Any]]:
    lines[0]["pool"] = other
    return lines


def added_record(lines: list[dict[str, Any]], other: str) -> list[dict[str, Any]]:
    lines.insert(2, {"row": 9999, "username": "victim", "before": {"custom:tier": "admin"},
                     "wrote": {"custom:tier": "basic"}})
    return lines


EDITS: list[Edit] = [planted_for_another_user, changed_value, dropped_record, another_pool]


def undo(bucket: str, emulator: Any) -> int:
    return int(main(["undo", f"s3://{bucket}/out/report.csv", "--endpoint-url",
                     emulator.endpoint_url, "--yes", "--quiet", "--rate", "500"]))


@pytest.mark.parametrize("how", ["finished", "stopped"])
def test_a_tampered_s3_undo_object_is_refused_before_any_write(
    how: str, make_pool: Any, make_bucket: Any, s3_client: Any, emulator: Any,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN an S3-report run with before-images over 200 users of a pool that also holds
    # ``victim``, finished or stopped with SIGTERM part way (its journal then in segments)
    n = 200
    pool = make_pool(users=[{"username": f"c{i:04d}"} for i in range(1, n + 1)]
                     + [{"username": "victim", "custom:tier": "basic"}])
    other = make_pool(users=[{"username": "victim", "custom:tier": "basic"}])
    bucket = make_bucket()
    s3_client.put_object(Bucket=bucket, Key="in/users.csv", Body=input_csv(n))
    emulator.configure(quotas={"UserUpdate": 1000}, latency_ms=5)
    if how == "finished":
        assert main(command(pool, emulator, bucket, "--rate", "500", "--undo")) == 0
        assert "out/report.csv.journal" in keys(s3_client, bucket, "out/")
    else:
        proc = start(command(pool, emulator, bucket, "--undo", "--rate", "50",
                             "--checkpoint-seconds", "0.2"), tmp_path / "m1")
        assert wait_for(lambda: len(keys(s3_client, bucket, SEGMENTS)) >= 3, proc)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        assert proc.returncode == 143
        assert "out/report.csv.journal" not in keys(s3_client, bucket, "out/")
    original = get(s3_client, bucket, UNDO)
    lines = [json.loads(line) for line in original.splitlines()]
    assert len(lines) > 6
    capsys.readouterr()

    # WHEN the undo object is rewritten (the journal untouched) and the run undone
    edits = EDITS + [added_record] if how == "finished" else EDITS
    for edit in edits:
        edited = edit(json.loads(json.dumps(lines)), other)
        s3_client.put_object(Bucket=bucket, Key=UNDO,
                             Body="".join(json.dumps(x) + "\n" for x in edited).encode())
        emulator.reset()
        code = undo(bucket, emulator)

        # THEN each is refused (exit 2) in a line naming the object, before any write
        err = capsys.readouterr().err
        assert code == 2, (edit.__name__, err)
        assert f"s3://{bucket}/{UNDO}: changed after the run wrote it" in err, edit.__name__
        assert writes(emulator) == 0, edit.__name__
    assert emulator.get_user_attributes(pool, "victim")["custom:tier"] == "basic"
    assert emulator.get_user_attributes(other, "victim")["custom:tier"] == "basic"

    if how == "stopped":
        # ... a record added for a row the stopped run never journaled cannot be checked:
        # it restores nothing (the victim keeps its value)
        edited = added_record(json.loads(json.dumps(lines)), other)
        s3_client.put_object(Bucket=bucket, Key=UNDO,
                             Body="".join(json.dumps(x) + "\n" for x in edited).encode())
        undo(bucket, emulator)
        assert emulator.get_user_attributes(pool, "victim")["custom:tier"] == "basic"
        planted = [r for r in s3_rows(s3_client, bucket, "out/report.undo.csv")
                   if r["username"] == "victim"]
        assert [r["status"] for r in planted] == ["skipped"]

    # AND the object as the run wrote it undoes every row the run updated
    s3_client.put_object(Bucket=bucket, Key=UNDO, Body=original)
    emulator.reset()
    code = undo(bucket, emulator)
    assert code == 0 if how == "finished" else code in (0, 1)
    updated = [r["username"] for r in s3_rows(s3_client, bucket) if r["status"] == "updated"]
    assert updated and (len(updated) == n) == (how == "finished")
    assert all("custom:tier" not in emulator.get_user_attributes(pool, name)
               for name in updated)
    assert emulator.get_user_attributes(pool, "victim")["custom:tier"] == "basic"
    assert "out/report.undo.csv" in keys(s3_client, bucket, "out/")


def test_the_undo_of_an_s3_incremental_run_removes_its_state(
    make_pool: Any, make_bucket: Any, s3_client: Any, emulator: Any
) -> None:
    # GIVEN a finished --incremental run reporting to S3: its state object says what it applied
    n = 30
    pool = make_pool(users=[{"username": f"c{i:04d}"} for i in range(1, n + 1)])
    bucket = make_bucket()
    s3_client.put_object(Bucket=bucket, Key="in/users.csv", Body=input_csv(n))
    emulator.configure(quotas={"UserUpdate": 1000})
    args = command(pool, emulator, bucket, "--rate", "500", "--undo", "--incremental")
    assert main(args) == 0
    assert "out/report.csv.state.parquet" in keys(s3_client, bucket, "out/")
    # WHEN the run is undone
    assert undo(bucket, emulator) == 0
    # THEN the state is gone (it no longer says what the pool holds), and the next
    # --incremental run is a full one: every user gets its values back
    assert "out/report.csv.state.parquet" not in keys(s3_client, bucket, "out/")
    assert main([*args, "--fresh"]) == 0
    assert all(r["status"] == "updated" for r in s3_rows(s3_client, bucket))
