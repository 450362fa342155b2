"""What `merge` reads and what `undo` does with what it wrote: merging ``s3://…/x.csv`` copies
only x.csv's shards' reports and summaries (not every run's reported under the prefix); a
merged report has no before-images of its own, and `undo` of it names the shards to undo."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from batch.cli import main
from batch.store.storage import parse, storage_for


def _users(n: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["username", "tier"])
    writer.writerows([f"u{i}", "a"] for i in range(1, n + 1))
    return out.getvalue().encode()


def _shards(pool: str, emulator: Any, source: str, report: str, count: int) -> None:
    for k in range(count):
        assert main(["run", source, "--user-pool-id", pool, "--endpoint-url",
                     emulator.endpoint_url, "--report", report, "--rate", "500",
                     "--shard", f"{k}/{count}", "--yes", "--quiet"]) == 0


def test_merging_an_s3_report_reads_only_its_own_shards(
    make_pool: Any, make_bucket: Any, s3_client: Any, emulator: Any
) -> None:
    # GIVEN two shards of a run reporting to s3://…/out/report.csv
    pool = make_pool(users=[{"username": f"u{i}"} for i in range(1, 7)])
    bucket = make_bucket()
    emulator.configure(quotas={"UserUpdate": 1000})
    s3_client.put_object(Bucket=bucket, Key="in/users.csv", Body=_users(6))
    _shards(pool, emulator, f"s3://{bucket}/in/users.csv", f"s3://{bucket}/out/report.csv", 2)
    # AND another run's shard report and summary under the same prefix
    for key in ("out/other.shard-0-of-2.csv", "out/other.shard-0-of-2.csv.summary.json"):
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"another run's")
    got: list[str] = []
    client = storage_for(parse(f"s3://{bucket}/out/report.csv")).gateway._client  # type: ignore[attr-defined]
    client.meta.events.register("before-send.s3.GetObject",
                                lambda request, **_: got.append(request.url))
    # WHEN the report is merged where it is
    assert main(["merge", f"s3://{bucket}/out/report.csv", "--quiet"]) == 0
    # THEN its shards' reports and summaries were read, and nothing of the other run
    assert got and all("/out/report.shard-" in url for url in got), got
    # AND a prefix holding two runs is refused in one line before anything is read
    got.clear()
    assert main(["merge", f"s3://{bucket}/out/", "--quiet"]) == 2
    assert got == []


def test_undo_of_a_merged_report_names_its_shards(
    make_pool: Any, emulator: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN three shards of a run, merged
    pool = make_pool(users=[{"username": f"u{i}"} for i in range(1, 10)])
    emulator.configure(quotas={"UserUpdate": 1000})
    source = tmp_path / "in.csv"
    source.write_bytes(_users(9))
    report = tmp_path / "run.csv"
    _shards(pool, emulator, str(source), str(report), 3)
    assert main(["merge", str(report), "--quiet"]) == 0
    capsys.readouterr()
    # WHEN its undo is asked for
    code = main(["undo", str(report), "--endpoint-url", emulator.endpoint_url, "--yes",
                 "--quiet"])
    # THEN it is refused in one line naming each shard's report to undo, and nothing is written
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "merged report" in err
    for k in range(3):
        assert f"cognito-batch undo {tmp_path / f'run.shard-{k}-of-3.csv'}" in err
    assert not (tmp_path / "run.undo.csv").exists()
