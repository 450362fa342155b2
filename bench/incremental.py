"""Incremental runs: peak RSS and time of the state's diff at N rows (issue 22 item 5(d)).

Each phase runs in its own child process, reaped with ``os.wait4`` so its ``ru_maxrss`` is its
own. Nothing talks to the network: the children drive ``record.state`` directly with synthetic
keys and desired hashes (0.1 % of them changed), the way ``--incremental`` does after planning
each row, so the figure is the diff's (spill, join, new state), not the CSV reader's.

    .venv/bin/python bench/incremental.py --rows 10000000

Phases: ``first`` (no state: spill, diff, write the state), ``next`` (today's input against
that state: spill, diff, write the new state).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def child(phase: str, rows: int, folder: str) -> int:
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from batch.inputs.scan import key_hash
    from batch.record.state import diff, open_spill, write_state

    started = time.perf_counter()
    state = Path(folder) / "out.csv.state.parquet"
    spill = open_spill(Path(folder), rows)
    changed = 0
    for i in range(1, rows + 1):
        key = f"user{i:09d}"
        bump = 1 if phase == "next" and i % 1000 == 0 else 0  # 0.1 % changed
        changed += bump
        spill.add(i, key_hash(key), 1000 + (i * 7919) % 1_000_003 + bump, key)
    spill.close()
    spilled = time.perf_counter()
    found = diff(spill, state if state.exists() else None, np.empty(0, np.uint64), rows)
    diffed = time.perf_counter()
    write_state(spill, state, settings="bench", applied=lambda r: np.ones(r.size, dtype=bool))
    spill.remove()
    sys.stdout.write(json.dumps({
        "phase": phase, "rows": rows, "changed_expected": changed if phase == "next" else rows,
        "changed_found": found.changed, "spill_s": round(spilled - started, 2),
        "diff_s": round(diffed - spilled, 2), "state_s": round(time.perf_counter() - diffed, 2),
        "state_mb": round(state.stat().st_size / 1e6, 1),
    }) + "\n")
    return 0


def measured(phase: str, rows: int, folder: Path) -> dict[str, Any]:
    argv = [sys.executable, str(Path(__file__).resolve()), "child", phase, str(rows), str(folder)]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    result: dict[str, Any] = {"wall_s": round(time.perf_counter() - started, 1),
                              "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
                              "exit": os.waitstatus_to_exitcode(status)}
    try:
        result.update(json.loads(out.strip().splitlines()[-1]))
    except (IndexError, ValueError):
        result["stderr"] = err[-2000:]
    print(json.dumps(result), file=sys.stderr, flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "incremental.json"))
    args = parser.parse_args()
    record: dict[str, Any] = {"command": " ".join(["bench/incremental.py", *sys.argv[1:]]),
                              "loadavg_at_start": os.getloadavg(), "phases": []}
    with tempfile.TemporaryDirectory(prefix="incremental-") as folder:
        for phase in ("first", "next"):
            record["phases"].append(measured(phase, args.rows, Path(folder)))
    record["loadavg_at_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print("| phase | rows | changed found | spill s | diff s | state s | wall s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for p in record["phases"]:
        print(f"| {p['phase']} | {p['rows']:,} | {p.get('changed_found')} | {p.get('spill_s')} | "
              f"{p.get('diff_s')} | {p.get('state_s')} | {p['wall_s']} | {p['peak_rss_mb']} |")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        sys.exit(child(sys.argv[2], int(sys.argv[3]), sys.argv[4]))
    sys.exit(main())
