"""How long a job takes to give up on an endpoint that dies mid-run (issue 14).

    .venv/bin/python bench/giveup.py                      # default --give-up-after (60 s)
    .venv/bin/python bench/giveup.py --give-up-after 10

An in-process emulator with a pool of ROWS users; the job runs at Cognito's default 25/s. Once
the plan is made (the pre-flight checks passed), the endpoint goes away in one of two ways:
``drop`` (every connection is closed without an answer, like a refused or reset connection)
or ``freeze`` (every call hangs: 10 minutes of latency, so botocore's read timeout ends it).
Reported per mode: seconds from the endpoint's death to the job's return, its exit code,
calls made, and rows by status. Before the breaker, every remaining row made its 8 attempts
(52 rows: 257 s dropped; 26 rows: 580 s frozen).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from batch.commands.run import Job  # noqa: E402
from batch.config import build_config  # noqa: E402
from batch.emulator import Emulator, EmulatorSettings  # noqa: E402


def measure(mode: str, rows: int, give_up_after: float) -> dict[str, Any]:
    with Emulator(EmulatorSettings()) as emulator, tempfile.TemporaryDirectory() as tmp:
        pool = emulator.create_pool(f"giveup-{mode}")
        emulator.seed_users(pool, [{"username": f"u{i:05d}"} for i in range(rows)])
        source = Path(tmp) / "in.csv"
        source.write_text(
            "username,given_name\n" + "".join(f"u{i:05d},A\n" for i in range(rows)),
            encoding="utf-8",
        )
        config = build_config(None, {
            "input": str(source), "user_pool_id": pool, "report": f"{tmp}/out.csv",
            "endpoint_url": emulator.endpoint_url, "quiet": True, "give_up_after": give_up_after,
        })
        died: list[float] = []

        def die(plan: Any) -> bool:
            if mode == "drop":
                emulator.configure(drop_rate=1.0)
            else:
                emulator.configure(latency_ms=600_000.0)
            died.append(time.monotonic())
            return True

        result = Job(config, confirm=die, stream=io.StringIO()).run()
        seconds = time.monotonic() - died[0]
        emulator.configure(defaults=True)  # let frozen handler threads go
        return {
            "mode": mode,
            "seconds_to_give_up": round(seconds, 1),
            "exit": result.exit_code,
            "calls": result.summary["calls"],
            "counts": {k: v for k, v in result.summary["counts"].items() if v},
            "stopped": result.summary["stopped"],
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--give-up-after", type=float, default=60.0)
    parser.add_argument("--modes", default="drop,freeze")
    args = parser.parse_args()
    for mode in args.modes.split(","):
        print(measure(mode, args.rows, args.give_up_after), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
