"""No personal data left behind by an S3-report run (issue 20 item 3).

1. The spools that killed runs of the same report left on this machine are removed by the
   next run on that report, with its lease held: only folders of that report, owned by this
   user, never through a symlink; another report's spool stays.
   -> test_the_next_run_removes_a_killed_runs_spool
2. The end-of-run lines name the S3 objects, never a spool path removed a moment later.
   -> test_the_end_of_run_lines_name_s3_not_the_spool
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from test_checkpoint import command, keys, prepare

from batch.cli import main
from batch.remote.checkpoint import S3Report


def test_the_next_run_removes_a_killed_runs_spool(
    make_bucket: Any, s3_endpoint: str, tmp_path: Path
) -> None:
    # GIVEN the spool a killed run of s3://b/out/report.csv left (report, journal, images) ...
    bucket = make_bucket()
    uri = f"s3://{bucket}/out/report.csv"
    killed = S3Report(uri, spool_root=str(tmp_path))
    for name in ("report.csv", "report.csv.journal", "report.csv.undo.jsonl"):
        (killed.spool / name).write_text("u001,alice@example.com\n")
    # ... another report's spool, a symlink named like this report's spool pointing at a
    # folder elsewhere, and a folder of this report's name owned by another user
    other = S3Report(f"s3://{bucket}/out/other.csv", spool_root=str(tmp_path))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    prefix = killed.spool.name[: -8]
    link = tmp_path / f"{prefix}linkxxxx"
    link.symlink_to(elsewhere)
    foreign = tmp_path / f"{prefix}foreignx"
    foreign.mkdir()
    os.chown(foreign, os.getuid() + 4242, -1)  # the suite runs as root (CI too)
    # WHEN the next run on that report restores (its lease held)
    again = S3Report(uri, spool_root=str(tmp_path))
    again.restore()
    # THEN only the killed run's spool is gone
    assert not killed.spool.exists()
    assert other.spool.is_dir() and again.spool.is_dir()
    assert link.is_symlink() and (elsewhere / "keep.txt").read_text() == "keep"
    assert foreign.is_dir()
    again.remove_spool()
    other.remove_spool()




def test_the_end_of_run_lines_name_s3_not_the_spool(
    make_pool: Any, make_bucket: Any, s3_client: Any, emulator: Any, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a run with before-images and its report in S3, its spools under tmp_path
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    pool, bucket = prepare(make_pool, make_bucket, s3_client, 5)
    emulator.configure(quotas={"UserUpdate": 1000})
    args = [a for a in command(pool, emulator, bucket, "--rate", "500", "--undo")
            if a != "--quiet"]
    # WHEN it ends
    assert main(args) == 0
    err = capsys.readouterr().err
    # THEN no line names the (already removed) spool; the undo line names the S3 objects
    assert "cognito-batch-" not in err, err
    assert f"s3://{bucket}/out/report.csv.undo.jsonl" in err
    assert "out/report.csv.undo.jsonl" in keys(s3_client, bucket, "out/")
    assert not list(tmp_path.glob("cognito-batch-*"))
