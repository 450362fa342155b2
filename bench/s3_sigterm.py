"""SIGTERM to exit with the report and checkpoint in S3, beside the same run with a local report.

A real job process reads ``--rows`` rows from the emulator's S3 (moto over HTTP) and applies
them at a throttling quota (UserUpdate ``--quota``/s enforced, a neighbour taking a share of
it); once its checkpoint has a segment in S3 and ``--after`` seconds have passed it gets
SIGTERM. Measured: the seconds from SIGTERM to exit, for a local report (the baseline, same
run, same machine) and for an ``s3://`` report (the last segment, the report of every row --
the unreached ones reported skipped -- and the summary put to S3 before the exit).

    PYTHONPATH=$PWD .venv/bin/python bench/s3_sigterm.py                 # 2,000,000 rows
    PYTHONPATH=$PWD .venv/bin/python bench/s3_sigterm.py --rows 200000
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import child_env


def csv_body(rows: int) -> bytes:
    lines = ["username,tier"] + [f"b{i:07d},t{i % 7}" for i in range(1, rows + 1)]
    return ("\n".join(lines) + "\n").encode()


def one_run(args: list[str], ready: Any, after: float, home: Path) -> tuple[int, float]:
    env = {**os.environ, "TMPDIR": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "batch", *args], cwd=home, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    started = time.monotonic()
    while not ready() or time.monotonic() - started < after:
        if proc.poll() is not None:
            raise SystemExit(f"the job ended early: {proc.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
        time.sleep(0.05)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    return proc.returncode, time.monotonic() - sent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--quota", type=float, default=50.0)
    parser.add_argument("--after", type=float, default=8.0)
    opts = parser.parse_args()
    # Dummy credentials and nothing that could reach AWS, for this process (boto3, the
    # emulator) and the job it starts.
    os.environ.clear()
    os.environ.update({**child_env(), "AWS_DEFAULT_REGION": "us-east-1"})
    import boto3

    from batch.emulator import DEFAULT_CUSTOM_SCHEMA, Emulator, EmulatorSettings

    with Emulator(EmulatorSettings()) as emu:
        os.environ["AWS_ENDPOINT_URL_S3"] = emu.s3_endpoint_url
        emu.configure(quotas={"UserUpdate": opts.quota},
                      neighbours={"UserUpdate": f"{opts.quota * 0.3:g}"}, latency_ms=5)
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        s3.put_object(Bucket="bench", Key="in/users.csv", Body=csv_body(opts.rows))
        figures = {}
        for kind in ("local", "s3"):
            pool = emu.create_pool(f"sigterm-{kind}", custom_attributes=DEFAULT_CUSTOM_SCHEMA)
            emu.seed_users(pool, [{"username": f"b{i:07d}"} for i in range(1, opts.users + 1)])
            home = Path(tempfile.mkdtemp(prefix=f"s3-sigterm-{kind}-"))
            report = (f"s3://bench/{kind}/report.csv" if kind == "s3"
                      else str(home / "report.csv"))
            args = ["run", "s3://bench/in/users.csv", "--user-pool-id", pool, "--endpoint-url",
                    emu.endpoint_url, "--report", report, "--rate", "auto", "--yes",
                    "--quiet"]

            def ready(kind: str = kind, home: Path = home) -> bool:
                if kind == "local":
                    return (home / "report.csv.journal").exists()
                listed = s3.list_objects_v2(Bucket="bench", Prefix="s3/report.csv.journal.d/")
                return bool(listed.get("Contents"))

            code, took = one_run(args, ready, opts.after, home)
            if kind == "s3":
                head = s3.head_object(Bucket="bench", Key="s3/report.csv")
                s3.head_object(Bucket="bench", Key="s3/report.csv.summary.json")
                size = int(head["ContentLength"])
                print(f"s3 report object: {size / 1e6:.1f} MB")
            figures[kind] = took
            print(f"{kind:5} report: exit {code}, SIGTERM->exit {took:.2f} s")
        print(f"rows={opts.rows} quota={opts.quota:g}/s (30% taken by a neighbour): "
              f"s3/local = {figures['s3'] / figures['local']:.2f}x")


if __name__ == "__main__":
    main()
