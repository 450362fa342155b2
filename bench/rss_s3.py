"""Peak RSS of a run over a Parquet dataset in S3, beside the same dataset on local disk and
the same rows as one local Parquet file, at the emulator's ceiling (updates answered at once).

    PYTHONPATH=$PWD .venv/bin/python bench/rss_s3.py --parts 20 --rows-per-part 10000 \\
        --out bench/results/rss_s3.json

Each run is its own child under ``/usr/bin/time`` (its peak RSS is its own: see the comment at
the call); the emulator (moto's Cognito and S3) runs in another process. Ratios are against
the local single file measured in the same run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (  # noqa: E402
    EmulatorProcess,
    child_env,
    code_state,
    cognito_batch,
    machine,
    run_measured,
    save_json,
    versions,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", type=int, default=20)
    parser.add_argument("--rows-per-part", type=int, default=10_000)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    import boto3
    import pyarrow as pa
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with EmulatorProcess(["--create-pool", "rss", "--default-schema", "--ceiling",
                              "--quota", "UserUpdate=off"], workdir) as emu:
            ready = json.loads((workdir / "emulator.ready.json").read_text())
            os.environ.update(child_env())
            os.environ["AWS_ENDPOINT_URL_S3"] = ready["s3_endpoint_url"]
            s3 = boto3.client("s3", region_name="us-east-1")
            s3.create_bucket(Bucket="rss")
            local = workdir / "ds"
            tables = []
            for part in range(args.parts):
                start = part * args.rows_per_part
                table = pa.table({
                    "username": [f"user{i:08d}" for i in range(start, start + args.rows_per_part)],
                    "tier": [("gold", "silver", "bronze")[i % 3]
                             for i in range(args.rows_per_part)],
                    "department": [f"dept-{i % 40}" for i in range(args.rows_per_part)],
                })
                tables.append(table)
                key = f"region=r{part % 4}/part-{part:05d}.parquet"
                sink = io.BytesIO()
                pq.write_table(table, sink)
                s3.put_object(Bucket="rss", Key=f"ds/{key}", Body=sink.getvalue())
                (local / key).parent.mkdir(parents=True, exist_ok=True)
                (local / key).write_bytes(sink.getvalue())
            single = workdir / "single.parquet"
            pq.write_table(pa.concat_tables(tables), single)
            job = workdir / "job.toml"
            job.write_text('exclude = ["region"]\n')
            plain = workdir / "plain.toml"
            plain.write_text("")
            runs = {}
            for label, source in (("local_file", str(single)), ("local_dataset", str(local)),
                                  ("s3_dataset", "s3://rss/ds/")):
                report = workdir / f"{label}.csv"
                argv = cognito_batch("run", source, "--job",
                                     str(plain if label == "local_file" else job), "--user-pool-id",
                                     emu.user_pool_id, "--endpoint-url", emu.endpoint_url,
                                     "--report", str(report), "--rate", "100000", "--yes",
                                     "--quiet", "--no-schema-check")
                # Through /usr/bin/time: Linux carries ru_maxrss across execve, so a child
                # spawned straight from this (large) process would report this one's RSS.
                measured = run_measured(["/usr/bin/time", "-f", "maxrss_kb=%M", *argv],
                                        workdir=workdir, label=label)
                rss_kb = int(measured.stderr.strip().splitlines()[-1].partition("=")[2])
                if measured.returncode != 0:
                    raise SystemExit(f"{label}: exit {measured.returncode}: {measured.stderr}")
                summary = json.loads((workdir / f"{label}.csv.summary.json").read_text())
                runs[label] = {"returncode": measured.returncode,
                               "wall_s": round(measured.wall_s, 2),
                               "cpu_s": round(measured.cpu_s, 2),
                               "peak_rss_mb": round(rss_kb / 1024, 1),
                               "updated": summary["counts"]["updated"]}
    base = runs["local_file"]["peak_rss_mb"]
    result = {
        "rows": args.parts * args.rows_per_part, "parts": args.parts, "runs": runs,
        "rss_ratio_vs_local_file": {k: round(v["peak_rss_mb"] / base, 3) for k, v in runs.items()},
        "command": " ".join(sys.argv), "machine": machine(), "code": code_state(),
        "versions": versions(),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        save_json(Path(args.out), result)


if __name__ == "__main__":
    main()
