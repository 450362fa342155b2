"""Reading Parquet from S3: batch.store.storage's ranged GETs (boto3) against pyarrow's
S3FileSystem.

Both read every row of the same object from the emulator's S3 (moto on 127.0.0.1) a record
batch at a time, the way the reader does; each runs in its own process so its peak RSS is its
own. Reported: seconds, GET requests and peak RSS, and the ratios boto3 / pyarrow measured in
the same run.

    PYTHONPATH=$PWD .venv/bin/python bench/s3_read.py --rows 200000 \
        --out bench/results/s3_read.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

FAKE = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true"}


def _read(how: str, endpoint: str, uri: str) -> dict[str, float]:
    import pyarrow.parquet as pq

    started = time.perf_counter()
    if how == "reader":  # the whole reader (InputRow per row) over batch.store.storage, for context
        from batch.inputs.reader import iter_rows, open_input

        rows = sum(1 for _ in iter_rows(open_input(uri)))
    elif how == "boto3":
        from batch.store.storage import parse, storage_for

        store = storage_for(parse(uri))
        rows = _consume(pq.ParquetFile(store.open_read(store.stat(parse(uri)))))
    else:
        import pyarrow.fs as pafs

        fs = pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", region="us-east-1")
        with fs.open_input_file(uri.removeprefix("s3://")) as handle:
            rows = _consume(pq.ParquetFile(handle))
    return {"seconds": time.perf_counter() - started, "rows": rows, "peak_rss_mb": peak_rss_mb()}


def _consume(pf: Any) -> int:
    """The reader's per-row work: every value in Cognito's string form."""
    from batch.inputs.reader import to_cognito_string

    rows = 0
    names = pf.schema_arrow.names
    for batch in pf.iter_batches(batch_size=2048):
        columns = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
        for values in zip(*columns, strict=True):
            {n: to_cognito_string(v) for n, v in zip(names, values, strict=True)}
            rows += 1
    return rows


def peak_rss_mb() -> float:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child started by a big
    # parent would report the parent's peak.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--out", default="")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_read(*args.child)))
        return
    os.environ.update(FAKE)
    import boto3
    import pyarrow as pa
    import pyarrow.parquet as pq

    from batch.emulator import Emulator

    with Emulator() as emu:
        os.environ["AWS_ENDPOINT_URL_S3"] = emu.s3_endpoint_url
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="bench")
        table = pa.table({
            "username": [f"user{i:08d}" for i in range(args.rows)],
            "email": [f"user{i}@example.com" for i in range(args.rows)],
            "department": [f"dept-{i % 50}" for i in range(args.rows)],
            "level": [i % 10 + 1 for i in range(args.rows)],
        })
        sink = io.BytesIO()
        pq.write_table(table, sink, row_group_size=50_000)
        s3.put_object(Bucket="bench", Key="users.parquet", Body=sink.getvalue())
        results: dict[str, dict[str, float]] = {}
        for how in ("boto3", "pyarrow", "reader"):
            before = emu.s3.stats().get("GET", 0)
            out = subprocess.run(
                [sys.executable, __file__, "--child", how, emu.s3_endpoint_url,
                 "s3://bench/users.parquet"],
                capture_output=True, text=True, check=True, env=dict(os.environ),
            )
            results[how] = json.loads(out.stdout)
            results[how]["gets"] = emu.s3.stats().get("GET", 0) - before
    report = {
        "rows": args.rows, "object_mb": round(len(sink.getvalue()) / 2**20, 2),
        "results": results,
        "ratio_seconds": round(results["boto3"]["seconds"] / results["pyarrow"]["seconds"], 3),
        "ratio_rss": round(results["boto3"]["peak_rss_mb"] / results["pyarrow"]["peak_rss_mb"], 3),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
