"""How long ``cognito-batch report`` takes on a big run, and how big its page is.

    .venv/bin/python bench/report.py [--rows 1000000] [--rounds 3] [--keep]

Writes a synthetic finished run of ``--rows`` rows (the report CSV with 1 % of rows failed or
invalid under three error codes, its summary, and its timeline: one sample a second at 25
calls/s, a throttle every 50 s, so 1 M rows is an 11-hour night), then times, as a user runs
them (child processes), ``report REPORT --html OUT`` and ``report REPORT``, against a baseline
measured in the same run: a bare ``csv.reader`` pass over the same report in a child process
(what reading the file costs at the least). Prints medians of ``--rounds``: wall seconds, CPU
seconds and the ratios to the baseline, and the sizes of the page and the timeline.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from batch.record.timeline import Reading, Timeline, timeline_path  # noqa: E402

CODES = ("UserNotFoundException", "InvalidValue", "AliasExistsException")


def write_run(report: Path, rows: int) -> None:
    counts = {"updated": 0, "unchanged": 0, "invalid": 0, "failed": 0, "skipped": 0}
    errors: dict[str, int] = {}
    with open(report, "w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["row", "username", "key", "status", "attempts", "error_code",
                      "error_message", "elapsed_ms"])
        for n in range(1, rows + 1):
            if n % 100 == 0:
                code = CODES[n // 100 % 3]
                status = "invalid" if code == "InvalidValue" else "failed"
                out.writerow([n, f"user{n:07d}", "", status, 1, code, "synthetic", 40])
                errors[code] = errors.get(code, 0) + 1
            else:
                status = "updated"
                out.writerow([n, f"user{n:07d}", "", status, 1, "", "", 40])
            counts[status] += 1
    start, seconds = 1.7e9, rows // 25
    timeline = Timeline(identity={"input_sha256": "synthetic"}, rows=rows)
    timeline.start_run(start, Reading())
    for s in range(1, seconds + 1):
        for k in range(25):
            timeline.record_call(0.035 + 0.002 * ((s + k) % 11))
        done = 25 * s
        timeline.sample(start + s, Reading(
            sent=done + s // 50, throttled=s // 50, rate=25.0, in_flight=3 + s % 3,
            statuses={"updated": done * 99 // 100, "failed": done * 2 // 300,
                      "invalid": done // 300}))
    timeline.finish(start + seconds, Reading(sent=25 * seconds + seconds // 50,
                                             throttled=seconds // 50, rate=25.0),
                    complete=True)
    timeline.save(timeline_path(report))
    summary = {
        "rows": rows, "counts": counts, "errors": errors, "calls": rows + seconds // 50,
        "throttles": seconds // 50, "faults": 0, "duration_s": float(seconds),
        "achieved_rate": round(counts["updated"] / seconds, 2), "rate": 25.0,
        "rate_final": 25.0, "rate_low": 25.0, "rate_high": 25.0, "stopped": "",
        "report": str(report), "exit_code": 1, "settings": {"rate": "25", "workers": 8},
        "pool": {"id": "us-east-1_synthetic", "region": "us-east-1"},
    }
    report.with_name(report.name + ".summary.json").write_text(json.dumps(summary))


def measure(command: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(command)}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cognito-batch-bench-report-"))
    try:
        report, page = folder / "night.report.csv", folder / "night.report.html"
        print(f"writing a synthetic run of {args.rows:,} rows in {folder} ...", file=sys.stderr)
        write_run(report, args.rows)
        python = sys.executable
        commands = {
            "baseline: csv.reader pass": [python, "-c", "import csv,sys; n = sum(1 for _ in "
                                          "csv.reader(open(sys.argv[1], newline='')))",
                                          str(report)],
            "report REPORT --html OUT": [python, "-m", "batch", "report", str(report),
                                         "--html", str(page)],
            "report REPORT": [python, "-m", "batch", "report", str(report)],
        }
        results: dict[str, tuple[float, float]] = {}
        for name, command in commands.items():
            runs = [measure(command) for _ in range(args.rounds)]
            results[name] = (statistics.median(w for w, _ in runs),
                             statistics.median(c for _, c in runs))
        base_wall, base_cpu = results["baseline: csv.reader pass"]
        print(f"| {args.rows:,} rows (report {report.stat().st_size / 1e6:.1f} MB) "
              f"| wall s | CPU s | × baseline wall | × baseline CPU |")
        print("|---|---|---|---|---|")
        for name, (wall, cpu) in results.items():
            print(f"| {name} | {wall:.2f} | {cpu:.2f} | {wall / base_wall:.1f} | "
                  f"{cpu / base_cpu:.1f} |")
        timeline = timeline_path(report)
        print(f"\nHTML page: {page.stat().st_size:,} bytes; timeline: "
              f"{timeline.stat().st_size:,} bytes "
              f"({len(json.loads(timeline.read_text())['buckets'])} samples)")
        print(f"medians of {args.rounds} rounds; load average {os.getloadavg()[0]:.1f}")
    finally:
        if args.keep:
            print(f"kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
