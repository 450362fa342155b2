"""Scale: peak RSS and time of each phase at 100 k, 1 M (and 10 M) rows; run, SIGTERM and resume
at 2 M rows; the journal's bytes a row and fsync cost, old format against new.

Every phase runs in its own child process (``python bench/scale.py child PHASE ...``), reaped
with ``os.wait4``, so its peak RSS (``ru_maxrss``) and CPU are its own. Nothing talks to the
network: the children use an in-process fake gateway (``NullCognito``: DescribeUserPool
answers a schema, every update succeeds at once), and the inputs are mostly invalid rows (a
bad email: planned ``invalid``, no call), one row in ``--valid-every`` a real update, so the
quota does not stretch 2 M rows into a day.

    .venv/bin/python bench/scale.py                                  # 100k, 1M; 2M run/resume
    .venv/bin/python bench/scale.py --sizes 10000000 --skip-run      # the 10 M pre-write phases
    .venv/bin/python bench/scale.py --baseline /work/main --run-rows 200000   # old code too

Phases: ``scan`` (the key scan: row count and duplicates), ``plan`` (read, map and check every
row: the plan's pass), ``dry`` (``--dry-run``: the planned CSV report written), ``run`` (a run
stopped by SIGTERM when half its rows are journaled: SIGTERM-to-exit is measured), ``resume``
(the same command again: time to the first update call, and the whole resume). ``journal``:
200,000 results written through the old JSON-lines encoding (version 1) and the new line, with
the old fsync policy (every 64 lines) and the new (every second), in one process, one after
the other, so the ratio is of the same machine at the same moment.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

T0 = time.monotonic()  # a child's start, before any import of the tool

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
POOL = "us-east-1_scale"


# -- the child ------------------------------------------------------------------------------


class NullCognito:
    """The calls a run makes, answered at once: the cost measured is the tool's own."""

    region = "us-east-1"

    def __init__(self) -> None:
        self.first_write: float | None = None
        self.writes = 0

    def describe_user_pool(self, user_pool_id: str) -> dict[str, Any]:
        return {"Id": user_pool_id, "Name": "scale", "EstimatedNumberOfUsers": 0,
                "SchemaAttributes": [
                    {"Name": "sub", "AttributeDataType": "String", "Mutable": False},
                    {"Name": "email", "AttributeDataType": "String", "Mutable": True},
                    {"Name": "email_verified", "AttributeDataType": "Boolean", "Mutable": True},
                ]}

    def update_user_attributes(self, *args: Any, **kwargs: Any) -> None:
        if self.first_write is None:
            self.first_write = time.monotonic()
        self.writes += 1

    def delete_user_attributes(self, *args: Any, **kwargs: Any) -> None:
        self.update_user_attributes()


def child(phase: str, source: str, report: str) -> int:
    sys.path.insert(0, os.environ.get("SCALE_CODE", str(ROOT)))
    from batch.commands.run import Job
    from batch.config import build_config
    from batch.inputs.reader import iter_column

    if phase == "journal":
        sys.stdout.write(json.dumps(journal_bench(int(source), Path(report))) + "\n")
        return 0
    settings = {"input": source, "user_pool_id": POOL, "report": report, "rate": "100000",
                "workers": 4, "quiet": True, "confirm": False, "undo": False,
                "dry_run": phase == "dry"}
    config = build_config(None, settings)
    fake = NullCognito()
    job = Job(config, gateway=fake, handle_signals=phase == "run",  # type: ignore[arg-type]
              stream=io.StringIO())
    out: dict[str, Any] = {"phase": phase}
    if phase == "scan":
        from batch.inputs.scan import scan_column

        scan = scan_column(lambda: iter_column(job.source, config.username_column))
        out["rows"] = scan.rows
    elif phase == "plan":
        from batch.inputs.scan import scan_column

        scan = scan_column(lambda: iter_column(job.source, config.username_column))
        job.load_schema()
        plan = job.plan_summary(scan, frozenset())
        out["rows"], out["to_apply"] = plan.rows, plan.to_apply
    else:
        result = job.run()
        out["job_exit_code"] = result.exit_code
        out["counts"] = result.summary.get("counts")
        out["resumed_rows"] = result.summary.get("resumed_rows")
    out["first_write_s"] = None if fake.first_write is None else round(fake.first_write - T0, 3)
    out["writes"] = fake.writes
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


# -- the parent -----------------------------------------------------------------------------


def write_input(path: Path, n: int, valid_every: int) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("username,email\n")
        for start in range(1, n + 1, 100_000):
            handle.write("".join(
                f"user{i},u{i}@example.com\n" if i % valid_every == 0 else f"user{i},bad\n"
                for i in range(start, min(start + 100_000, n + 1))
            ))
    return path


def env(code: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    out.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                "AWS_EC2_METADATA_DISABLED": "true", "PYTHONPATH": str(code),
                "SCALE_CODE": str(code), "PYTHONDONTWRITEBYTECODE": "1"})
    return out


def measured(
    phase: str, source: Path, report: Path, code: Path, *, stop_at_lines: int = 0
) -> dict[str, Any]:
    """One phase in its own process; with ``stop_at_lines``, SIGTERM once the journal has that
    many lines, and the seconds from the signal to the exit."""
    argv = [sys.executable, str(Path(__file__).resolve()), "child", phase, str(source), str(report)]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(code),
                            stdin=subprocess.DEVNULL)
    signalled = None
    reaped: tuple[int, int, Any] = (0, 0, None)
    if stop_at_lines:
        journal = report.with_name(report.name + ".journal")
        lines = offset = 0
        # wait4(WNOHANG), not poll(): the child must be reaped here for its rusage.
        while lines < stop_at_lines and not (reaped := os.wait4(proc.pid, os.WNOHANG))[0]:
            time.sleep(0.05)
            try:
                with open(journal, "rb") as handle:
                    handle.seek(offset)
                    data = handle.read()
            except FileNotFoundError:
                continue
            offset += len(data)
            lines += data.count(b"\n")
        if not reaped[0]:
            proc.send_signal(signal.SIGTERM)
            signalled = time.perf_counter()
    _, status, usage = reaped if reaped[0] else os.wait4(proc.pid, 0)
    ended = time.perf_counter()
    stdout = proc.stdout.read().decode() if proc.stdout else ""
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    code_ = os.waitstatus_to_exitcode(status)
    result: dict[str, Any] = {
        "phase": phase, "rows_file": source.name, "exit_code": code_,
        "wall_s": round(ended - started, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }
    if signalled is not None:
        result["sigterm_to_exit_s"] = round(ended - signalled, 2)
    try:
        result.update(json.loads(stdout.strip().splitlines()[-1]))
    except (IndexError, ValueError):
        result["stderr"] = stderr[-2000:]
        print(f"  {phase}: no result from the child:\n{stderr[-2000:]}", file=sys.stderr)
    result["exit_code"] = code_
    print(f"  {phase:7s} {source.name:>16s}: {result['wall_s']:8.1f} s  "
          f"{result['peak_rss_mb']:7.1f} MB" + (f"  SIGTERM->exit {result['sigterm_to_exit_s']} s"
                                               if signalled else ""), file=sys.stderr, flush=True)
    return result


def journal_bench(n: int, folder: Path) -> dict[str, Any]:
    """Old (v1: JSON object a line, text file, flush, fsync every 64) against new (v2 line,
    unbuffered write, fsync every second), same results, same process."""
    sys.path.insert(0, str(ROOT))
    from batch.models import RowResult, Status
    from batch.record.journal import Journal, JournalHeader, encode

    results = [RowResult(i, f"user{i:07d}", Status.UPDATED, attempts=1, elapsed_ms=23)
               for i in range(1, n + 1)]
    header = JournalHeader("ab" * 32, "0" * 16)
    fsyncs: list[float] = []
    real_fsync = os.fsync

    def timed_fsync(fd: int) -> None:
        t = time.perf_counter()
        real_fsync(fd)
        fsyncs.append(time.perf_counter() - t)

    def v1(path: Path, every: int) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(json.dumps({"journal": 1, **header.as_record()}) + "\n")
            for k, r in enumerate(results, 1):
                handle.write(json.dumps(r.as_record(), ensure_ascii=False) + "\n")
                handle.flush()
                if k % every == 0:
                    os.fsync(handle.fileno())

    def v2(path: Path, every: int) -> None:
        journal = Journal(path, header, fsync_every=every)
        for r in results:
            journal.write(r)
        journal.close()

    out: dict[str, Any] = {"rows": n}
    os.fsync = timed_fsync  # type: ignore[assignment]
    try:
        for name, fn, every in (("v1_json_fsync64", v1, 64), ("v2_line_fsync64", v2, 64),
                                ("v2_line_fsync1s", v2, 0)):
            path = folder / f"{name}.journal"
            fsyncs.clear()
            t = time.perf_counter()
            fn(path, every)
            wall = time.perf_counter() - t
            out[name] = {"bytes_per_row": round(path.stat().st_size / n, 1),
                         "us_per_row": round(wall / n * 1e6, 2), "fsyncs": len(fsyncs),
                         "fsync_ms_mean": round(1000 * sum(fsyncs) / max(1, len(fsyncs)), 3),
                         "fsync_share": round(sum(fsyncs) / wall, 3)}
            path.unlink()
    finally:
        os.fsync = real_fsync
    out["encode_us_v1"] = _time(lambda: [json.dumps(r.as_record()) for r in results[:50_000]])
    out["encode_us_v2"] = _time(lambda: [encode(r) for r in results[:50_000]])
    v1_, v2_ = out["v1_json_fsync64"], out["v2_line_fsync1s"]
    out["bytes_ratio_v2_over_v1"] = round(v2_["bytes_per_row"] / v1_["bytes_per_row"], 3)
    out["time_ratio_v2_over_v1"] = round(v2_["us_per_row"] / v1_["us_per_row"], 3)
    return out


def v1_size(journal: Path, sample: int = 100_000) -> float:
    """Bytes a row the same results took as version 1 (a JSON object a line), from a sample."""
    sys.path.insert(0, str(ROOT))
    from batch.record.journal import read_journal

    state = read_journal(journal)
    total = count = 0
    for result in state.records() if state else ():
        total += len((json.dumps(result.as_record(), ensure_ascii=False) + "\n").encode())
        count += 1
        if count >= sample:
            break
    return round(total / max(1, count), 1)


def _time(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return round((time.perf_counter() - t) / 50_000 * 1e6, 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="rows for scan/plan/dry")
    parser.add_argument("--run-rows", type=int, default=2_000_000)
    parser.add_argument("--valid-every", type=int, default=100)
    parser.add_argument("--skip-run", action="store_true")
    parser.add_argument("--skip-prewrite", action="store_true")
    parser.add_argument("--baseline", help="also run run/resume with the code at this path")
    parser.add_argument("--out", default=str(RESULTS / "scale.json"))
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="scale-"))
    record: dict[str, Any] = {
        "benchmark": "scale", "command": " ".join(["bench/scale.py", *sys.argv[1:]]),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "loadavg_at_start": os.getloadavg(),
                    "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        "commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True).stdout.strip(),
        "valid_every": args.valid_every, "phases": [],
    }
    started = time.perf_counter()
    try:
        if not args.skip_prewrite:
            for n in (int(s) for s in args.sizes.split(",") if s):
                source = write_input(folder / f"in-{n}.csv", n, args.valid_every)
                for phase in ("scan", "plan", "dry"):
                    report = folder / f"{phase}-{n}.csv"
                    record["phases"].append({"rows": n, **measured(phase, source, report, ROOT)})
                    for p in folder.glob(f"{phase}-{n}.csv*"):
                        p.unlink()
                source.unlink()
        if not args.skip_run:
            codes = [("new", ROOT)] + ([("baseline", Path(args.baseline))] if args.baseline
                                       else [])
            n = args.run_rows
            source = write_input(folder / f"in-{n}.csv", n, args.valid_every)
            for label, code in codes:
                report = folder / f"run-{label}-{n}.csv"
                run = measured("run", source, report, code, stop_at_lines=n // 2)
                resume = measured("resume", source, report, code)
                record["phases"] += [{"rows": n, "code": label, **run},
                                     {"rows": n, "code": label, **resume}]
                journal = report.with_name(report.name + ".journal")
                lines = sum(1 for _ in open(journal, "rb")) - 1
                record.setdefault("runs", {})[label] = {
                    "journal_bytes_per_row": round(journal.stat().st_size / max(1, lines), 1),
                    "journal_v1_bytes_per_row": v1_size(journal) if label == "new" else None,
                    "report_rows": sum(1 for _ in open(report, "rb")) - 1,
                }
        # In a child too: the parent stays small (a child's ru_maxrss starts at the size of
        # the parent it was forked from).
        jb = subprocess.run([sys.executable, str(Path(__file__).resolve()), "child", "journal",
                             "200000", str(folder)], env=env(ROOT), capture_output=True, text=True)
        record["journal"] = json.loads(jb.stdout.strip().splitlines()[-1]) if jb.stdout else {
            "error": jb.stderr[-2000:]}
        j = record["journal"]
        if "v1_json_fsync64" in j:
            print(f"  journal: v1 {j['v1_json_fsync64']} / v2 {j['v2_line_fsync1s']}",
                  file=sys.stderr)
    finally:
        record["total_s"] = round(time.perf_counter() - started, 1)
        RESULTS.mkdir(exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
        if not args.keep:
            for p in folder.iterdir():
                p.unlink()
            folder.rmdir()
    print(table(record))
    return 0


def table(record: dict[str, Any]) -> str:
    lines = ["| phase | rows | code | wall s | peak RSS MB | notes |", "|---|---|---|---|---|---|"]
    for p in record["phases"]:
        notes = []
        if "sigterm_to_exit_s" in p:
            notes.append(f"SIGTERM at half -> exit {p['sigterm_to_exit_s']} s")
        if p["phase"] == "resume" and p.get("first_write_s") is not None:
            notes.append(f"first write {p['first_write_s']} s, resumed {p.get('resumed_rows')}")
        notes.append(f"exit {p.get('job_exit_code', p['exit_code'])}")
        lines.append(f"| {p['phase']} | {p['rows']:,} | {p.get('code', 'new')} | {p['wall_s']} | "
                     f"{p['peak_rss_mb']} | {'; '.join(notes)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        sys.exit(child(*sys.argv[2:5]))
    sys.exit(main())
