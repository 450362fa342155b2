"""``make demo``: the main job, end to end, on the local emulator. No AWS account needed.

1. starts the emulator (moto behind the project's front) at Cognito's default quotas
   (25 user updates/s) with 30 ms of latency per call;
2. creates a pool with the demo schema and seeds it from sample_data/seed_users.csv;
3. runs ``cognito-batch run --job jobs/demo.toml --html reports/demo.report.html`` against it,
   as a user would (a subprocess);
4. prints what the emulator saw, stops it, and points to the run's HTML report.

Exit code: 0 when the job ended as the sample data says it must: exit code 1, because the
input holds six deliberately bad rows, one of them a user written twice (6 invalid, 1 failed:
user9999 does not exist); any other outcome is passed through.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from batch.emulator import DEFAULT_CUSTOM_SCHEMA, Emulator, EmulatorSettings
from batch.plan.mapping import attribute_name

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_EXIT = 1
HTML = ROOT / "reports" / "demo.report.html"


def seed_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return [
            {("username" if k == "username" else attribute_name(k, {})): v for k, v in r.items()}
            for r in csv.DictReader(handle)
        ]


def main() -> int:
    settings = EmulatorSettings(latency_ms=30.0)
    with Emulator(settings) as emulator:
        pool = emulator.create_pool(
            "cognito-batch-demo", custom_attributes=DEFAULT_CUSTOM_SCHEMA, auto_verified=["email"]
        )
        seeded = emulator.seed_users(pool, seed_rows(ROOT / "sample_data" / "seed_users.csv"))
        print(f"demo: emulator at {emulator.endpoint_url}, pool {pool} with {seeded} users, "
              "quota 25 updates/s", flush=True)
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo"}
        env.pop("AWS_PROFILE", None)
        command = [
            sys.executable,
            "-m",
            "batch",
            "run",
            "--job",
            str(ROOT / "jobs" / "demo.toml"),
            "--user-pool-id",
            pool,
            "--endpoint-url",
            emulator.endpoint_url,
            "--fresh",
            "--html",
            str(HTML.relative_to(ROOT)),
        ]
        print("demo: $ cognito-batch " + " ".join(command[3:]), flush=True)
        code = subprocess.call(command, env=env, cwd=ROOT)
        update = emulator.stats()["operations"].get("AdminUpdateUserAttributes", {})
        print(f"demo: the emulator accepted {update.get('accepted', 0)} updates and throttled "
              f"{update.get('throttled', 0)}", flush=True)
        sample = emulator.get_user_attributes(pool, "user0001")
        print(f"demo: user0001 now has custom:department={sample.get('custom:department')!r}, "
              f"custom:tier={sample.get('custom:tier')!r}")
    if code == EXPECTED_EXIT:
        print("demo: the job exited 1, as it must: the sample input holds deliberately bad rows "
              "(see the report); the demo itself succeeded")
        print(f"demo: open the run's one-file HTML report: {HTML.as_uri()}  (or: cognito-batch "
              f"report {HTML.relative_to(ROOT).with_suffix('.csv')})")
        return 0
    print(f"demo: unexpected exit code {code} from the job")
    return code or 3


if __name__ == "__main__":
    sys.exit(main())
