"""Inputs in S3 (moto over HTTP, found through AWS_ENDPOINT_URL_S3) and Parquet datasets of
part files, applied to the emulator's pool through the CLI; errors before any write; resume
refuses a changed S3 input."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import report_rows

from batch.cli import main


def csv_bytes(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    return sink.getvalue()


def seed(n: int, prefix: str = "s") -> list[dict[str, str]]:
    return [{"username": f"{prefix}{i:04d}"} for i in range(1, n + 1)]


def run(pool: str, emulator: Any, source: str, report: Path, *extra: str) -> int:
    return main(["run", source, "--user-pool-id", pool, "--endpoint-url", emulator.endpoint_url,
                 "--report", str(report), "--rate", "500", "--quiet", "--yes", *extra])


def update_calls(emulator: Any) -> int:
    ops = emulator.stats()["operations"]
    return int(ops.get("AdminUpdateUserAttributes", {}).get("calls", 0))


def test_s3_csv_is_applied(
    make_pool: Any, make_bucket: Any, s3_client: Any, emulator: Any, tmp_path: Path
) -> None:
    # GIVEN 40 users and a CSV of their new tiers in S3
    pool = make_pool(users=seed(40))
    bucket = make_bucket()
    rows = [{"username": f"s{i:04d}", "tier": f"t{i}"} for i in range(1, 41)]
    s3_client.put_object(Bucket=bucket, Key="exports/users.csv", Body=csv_bytes(rows))
    # WHEN the job reads s3://bucket/exports/users.csv
    code = run(pool, emulator, f"s3://{bucket}/exports/users.csv", tmp_path / "r.csv")
    # THEN every row is updated, in order, and the summary names the S3 object
    assert code == 0
    report = list(report_rows(tmp_path / "r.csv").values())
    assert sorted(int(r["row"]) for r in report) == list(range(1, 41))
    assert {r["status"] for r in report} == {"updated"}
    assert emulator.get_user_attributes(pool, "s0007")["custom:tier"] == "t7"
    summary = json.loads((tmp_path / "r.csv.summary.json").read_text())
    assert summary["input"] == f"s3://{bucket}/exports/users.csv"
    assert summary["input_sha256"].startswith("parts:")


def test_s3_parquet_object_is_applied(
    make_pool: Any, make_bucket: Any, s3_client: Any, emulator: Any, tmp_path: Path
) -> None:
    # GIVEN a typed Parquet object in S3
    pool = make_pool(users=seed(10))
    bucket = make_bucket()
    rows = [{"username": f"s{i:04d}", "level": i % 9 + 1} for i in range(1, 11)]
    s3_client.put_object(Bucket=bucket, Key="u.parquet", Body=parquet_bytes(rows))
    # WHEN it is applied
    code = run(pool, emulator, f"s3://{bucket}/u.parquet", tmp_path / "r.csv")
    # THEN integers arrive as Cognito's strings
    assert code == 0
    assert emulator.get_user_attributes(pool, "s0003")["custom:level"] == "4"


def _write_dataset(
    s3_client: Any, bucket: str, root: Path, column: str = "dept"
) -> list[tuple[str, list[str]]]:
    """Five parts in hive folders (keys chosen so byte order differs from creation order),
    plus the markers and temporaries a Spark job leaves; the same files under ``root``."""
    layout = [
        (f"{column}=ops/part-1.parquet", ["s0009", "s0010"]),
        (f"{column}=eng/part-10.parquet", ["s0004", "s0005", "s0006"]),
        (f"{column}=eng/part-2.parquet", ["s0001", "s0002", "s0003"]),
        (f"{column}=%C3%A9t%C3%A9/part-0", ["s0011"]),  # no suffix, as Athena writes; encoded
        (f"{column}=ops/part-0.parquet", ["s0007", "s0008"]),
    ]
    for key, names in layout:
        body = parquet_bytes([{"username": n, "tier": f"tier-{n}"} for n in names])
        s3_client.put_object(Bucket=bucket, Key=f"ds/{key}", Body=body)
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(body)
    for junk in ("_SUCCESS", f"{column}=ops/.part-0.crc", "_temporary/0/part-9.parquet"):
        s3_client.put_object(Bucket=bucket, Key=f"ds/{junk}", Body=b"not parquet")
        (root / junk).parent.mkdir(parents=True, exist_ok=True)
        (root / junk).write_bytes(b"not parquet")
    return sorted(layout, key=lambda item: item[0].encode())


def test_hive_partitioned_dataset_in_s3_and_on_disk(
    make_pool: Any, make_bucket: Any, s3_client: Any, emulator: Any, tmp_path: Path
) -> None:
    # GIVEN a dataset of five part files in hive folders, in S3 and the same on disk
    pool = make_pool(users=seed(11))
    bucket = make_bucket()
    ordered = _write_dataset(s3_client, bucket, tmp_path / "ds")
    job = tmp_path / "job.toml"
    job.write_text('exclude = ["dept"]\n')
    # WHEN both are applied, the partition column dept excluded
    code = run(pool, emulator, f"s3://{bucket}/ds", tmp_path / "r.csv", "--job", str(job))
    code_local = run(pool, emulator, str(tmp_path / "ds"), tmp_path / "local.csv", "--dry-run",
                     "--job", str(job))
    code_s3 = run(pool, emulator, f"s3://{bucket}/ds/", tmp_path / "s3.csv", "--dry-run")
    assert (code, code_local, code_s3) == (0, 0, 2)  # dept not excluded: not an attribute
    # THEN rows are numbered dataset-wide in key byte order, markers skipped
    expected = [name for _, names in ordered for name in names]
    rows = list(report_rows(tmp_path / "r.csv").values())
    assert [r["username"] for r in sorted(rows, key=lambda r: int(r["row"]))] == expected
    assert {r["status"] for r in rows} == {"updated"}
    local_rows = list(report_rows(tmp_path / "local.csv").values())
    assert [(r["row"], r["username"]) for r in local_rows] == [
        (r["row"], r["username"]) for r in sorted(rows, key=lambda r: int(r["row"]))
    ]
    # AND the summary maps each part to its rows
    summary = json.loads((tmp_path / "r.csv.summary.json").read_text())
    parts = summary["input_parts"]
    assert [p["part"] for p in parts] == [key for key, _ in ordered]
    # ("%" sorts before "e": the encoded folder comes first, as S3 lists it)
    assert parts[1] == {"part": "dept=eng/part-10.parquet", "first_row": 2, "last_row": 4,
                        "rows": 3}
    assert parts[-1]["last_row"] == 11
    assert emulator.get_user_attributes(pool, "s0011")["custom:tier"] == "tier-s0011"


def test_partition_columns_are_columns(
    make_pool: Any, make_bucket: Any, s3_client: Any, emulator: Any, tmp_path: Path
) -> None:
    # GIVEN a dataset partitioned by department (a real attribute of the pool)
    pool = make_pool(users=seed(11))
    bucket = make_bucket()
    _write_dataset(s3_client, bucket, tmp_path / "ds", column="department")
    # WHEN it is applied
    code = run(pool, emulator, f"s3://{bucket}/ds/", tmp_path / "r.csv")
    # THEN the folder's value is written like any column (URL-decoded)
    assert code == 0
    assert emulator.get_user_attributes(pool, "s0011")["custom:department"] == "été"
    assert emulator.get_user_attributes(pool, "s0001")["custom:department"] == "eng"


@pytest.mark.parametrize(
    ("where", "message"),
    [("s3://no-such-bucket-z/u.csv", "NoSuchBucket"), ("s3://{b}/missing.csv", "NoSuchKey"),
     ("s3://{b}/denied/u.csv", "AccessDenied"), ("s3://{b}/denied/", "AccessDenied"),
     ("s3://{b}/empty/", "no part files")],
)
def test_s3_input_errors_exit_2_before_any_write(
    make_pool: Any, make_bucket: Any, s3_client: Any, emulator: Any, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], where: str, message: str,
) -> None:
    # GIVEN a bucket whose denied/ prefix the role may not read
    pool = make_pool(users=seed(3))
    bucket = make_bucket()
    s3_client.put_object(Bucket=bucket, Key="denied/u.csv", Body=csv_bytes(seed(3)))
    s3_client.put_object(Bucket=bucket, Key="empty/_SUCCESS", Body=b"")
    emulator.s3.deny(bucket, "denied/")
    capsys.readouterr()
    # WHEN the job is pointed at a missing or forbidden input
    code = run(pool, emulator, where.format(b=bucket), tmp_path / "r.csv")
    # THEN one line names the input and S3's code, exit 2, and nothing was written
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and message in err and where.format(b=bucket) in err
    assert update_calls(emulator) == 0
    assert not (tmp_path / "r.csv").exists()


def test_changed_s3_input_is_refused_on_resume(
    make_pool: Any, make_bucket: Any, s3_client: Any, emulator: Any, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a run over an S3 CSV stopped by a fatal error after 5 updates
    pool = make_pool(users=seed(20))
    bucket = make_bucket()
    rows = [{"username": f"s{i:04d}", "tier": "gold"} for i in range(1, 21)]
    s3_client.put_object(Bucket=bucket, Key="u.csv", Body=csv_bytes(rows))
    emulator.inject("AdminUpdateUserAttributes", after=5, code="NotAuthorizedException")
    report = tmp_path / "r.csv"
    assert run(pool, emulator, f"s3://{bucket}/u.csv", report) == 2
    emulator.reset()
    # WHEN the object is replaced and the same command runs again
    rows[3]["tier"] = "silver"
    s3_client.put_object(Bucket=bucket, Key="u.csv", Body=csv_bytes(rows))
    capsys.readouterr()
    code = run(pool, emulator, f"s3://{bucket}/u.csv", report)
    # THEN the resume is refused with one line, before any write
    err = capsys.readouterr().err.strip()
    assert code == 2 and "different input" in err and len(err.splitlines()) == 1
    assert update_calls(emulator) == 0
    # AND the original object resumes, writing only the rows not yet done
    rows[3]["tier"] = "gold"
    s3_client.put_object(Bucket=bucket, Key="u.csv", Body=csv_bytes(rows))
    assert run(pool, emulator, f"s3://{bucket}/u.csv", report) == 0
    assert update_calls(emulator) == 15
    assert sorted(report_rows(report)) == list(range(1, 21))
