"""After kill -9, what a resume writes again: the rows that may have been in flight (issue 20
item 6).

A real job process applies ``--rows`` rows at UserUpdate ``--quota``/s (20 ms answers, the
report in S3 or local); once ``--after`` seconds have passed (and S3 holds a checkpoint
segment) it gets SIGKILL; its disk is removed (a lost container) and the same command runs on
a fresh one. Measured, per report kind and per code (this checkout, and ``--baseline DIR``, an
older checkout, on its own pool in the same run): the rows written twice (Cognito's accepted
updates beyond one per row), the reads the resume made (AdminGetUser), and the resume's
summary figures (``in_doubt``: rows read first, and how many already held their values).

    PYTHONPATH=$PWD .venv/bin/python bench/in_doubt.py --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import child_env, table

ROOT = Path(__file__).resolve().parent.parent


def csv_body(rows: int) -> bytes:
    lines = ["username,tier"] + [f"d{i:06d},t{i % 7}" for i in range(1, rows + 1)]
    return ("\n".join(lines) + "\n").encode()


def job(args: list[str], home: Path, code: Path) -> subprocess.Popen[bytes]:
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TMPDIR": str(home), "PYTHONPATH": str(code)}
    return subprocess.Popen([sys.executable, "-m", "batch", *args], cwd=home, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--quota", type=float, default=100.0)
    parser.add_argument("--after", type=float, default=8.0)
    parser.add_argument("--checkpoint-seconds", type=float, default=5.0)
    parser.add_argument("--baseline", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    opts = parser.parse_args()
    os.environ.clear()
    os.environ.update({**child_env(), "AWS_DEFAULT_REGION": "us-east-1"})
    import boto3

    from batch.emulator import DEFAULT_CUSTOM_SCHEMA, Emulator, EmulatorSettings

    codes = {"this": ROOT} | ({"baseline": opts.baseline} if opts.baseline else {})
    results: list[dict[str, Any]] = []
    with Emulator(EmulatorSettings()) as emu:
        os.environ["AWS_ENDPOINT_URL_S3"] = emu.s3_endpoint_url
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        s3.put_object(Bucket="bench", Key="in/users.csv", Body=csv_body(opts.rows))
        for kind in ("s3", "local"):
            for name, code in codes.items():
                emu.configure(quotas={"UserUpdate": opts.quota, "UserRead": 120},
                              latency_ms=20)
                pool = emu.create_pool(f"doubt-{kind}-{name}",
                                       custom_attributes=DEFAULT_CUSTOM_SCHEMA)
                emu.seed_users(pool, [{"username": f"d{i:06d}"}
                                      for i in range(1, opts.rows + 1)])
                base = Path(tempfile.mkdtemp(prefix=f"in-doubt-{kind}-{name}-"))
                report = (f"s3://bench/{kind}-{name}/report.csv" if kind == "s3"
                          else str(base / "disk" / "report.csv"))
                (base / "disk").mkdir()
                args = ["run", "s3://bench/in/users.csv", "--user-pool-id", pool,
                        "--endpoint-url", emu.endpoint_url, "--report", report, "--rate",
                        f"{opts.quota:g}", "--checkpoint-seconds",
                        f"{opts.checkpoint_seconds:g}", "--yes", "--quiet"]
                before = emu.stats()["operations"]
                proc = job(args, base / "m1", code)
                started = time.monotonic()
                while time.monotonic() - started < opts.after:
                    if proc.poll() is not None:
                        raise SystemExit(proc.stderr.read().decode()[-500:])  # type: ignore[union-attr]
                    time.sleep(0.05)
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                if kind == "s3":
                    shutil.rmtree(base / "m1")  # the container is gone with its disk
                mid = emu.stats()["operations"]
                again = job(args, base / "m2", code)
                _, err = again.communicate(timeout=600)
                if again.returncode != 0:
                    raise SystemExit(err.decode()[-800:])
                after = emu.stats()["operations"]

                def count(ops: dict[str, Any], op: str, what: str) -> int:
                    return int(ops.get(op, {}).get(what, 0))

                accepted = count(after, "AdminUpdateUserAttributes", "accepted") - count(
                    before, "AdminUpdateUserAttributes", "accepted")
                reads = count(after, "AdminGetUser", "calls") - count(mid, "AdminGetUser",
                                                                      "calls")
                if kind == "s3":
                    key = f"{kind}-{name}/report.csv.summary.json"
                    summary = json.loads(s3.get_object(Bucket="bench", Key=key)["Body"].read())
                else:
                    summary = json.loads(Path(report + ".summary.json").read_text())
                doubt = summary.get("in_doubt") or {}
                results.append({
                    "report": kind, "code": name, "rows": opts.rows,
                    "carried": summary.get("resumed_rows"),
                    "written_twice": accepted - opts.rows, "resume_reads": reads,
                    "read_first": doubt.get("read", 0), "held": doubt.get("held", 0),
                })
                shutil.rmtree(base, ignore_errors=True)
    print(table(["report", "code", "rows", "carried", "written twice", "resume reads",
                 "read first", "held"],
                [[r["report"], r["code"], r["rows"], r["carried"], r["written_twice"],
                  r["resume_reads"], r["read_first"], r["held"]] for r in results]))
    if opts.out:
        opts.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
