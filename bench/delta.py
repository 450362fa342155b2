"""Delta sync: --skip-unchanged against rewriting everything, at Cognito's default quotas.

    .venv/bin/python bench/delta.py                       # the full run (~15 min)
    .venv/bin/python bench/delta.py --rewrite-rows 2000   # (2) on 2,000 rows, extrapolated

The emulator runs in its own process at Cognito's default quotas (UserUpdate 25/s, UserList
30/s, UserRead 120/s, UserPoolRead 15/s), 20 ms latency, with 20,000 seeded users. The input
holds all 20,000 users; exactly 1 % (200) differ from the pool (100 in custom:tier, 100 in
custom:department).

  (1) cognito-batch run INPUT --skip-unchanged          (default --rate 25)
  (2) cognito-batch run INPUT --rate 25                 (rewrites every row)

Between them the 200 changed users are put back to their seeded values (a 200-row
cognito-batch run) and the emulator's stats and buckets are reset, so (2) starts from the same
pool as (1). For each run: whole-command wall seconds, AdminUpdateUserAttributes calls,
ListUsers / AdminGetUser calls (the emulator's counters), and rows updated / unchanged.
Check: (1) makes exactly 200 update calls.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import (
    RESULTS,
    EmulatorProcess,
    code_state,
    cognito_batch,
    machine,
    read_summary,
    run_measured,
    save_json,
    table,
    update_stats,
    versions,
    write_csv,
)

TIERS = ("bronze", "silver", "gold", "platinum")
DEPARTMENTS = ("sales", "engineering", "finance", "support", "legal", "marketing")
OPERATIONS = ("AdminUpdateUserAttributes", "AdminDeleteUserAttributes", "ListUsers",
              "AdminGetUser", "DescribeUserPool")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def seeded(i: int) -> tuple[str, str, str]:
    return f"user{i:06d}", TIERS[i % 4], DEPARTMENTS[i % 6]


def write_inputs(workdir: Path, users: int, changed: int) -> dict[str, Any]:
    """Seed, the delta input (``changed`` rows differ), and the restore input for them."""
    step = users // changed
    differing = set(range(0, step * changed, step))
    seed = workdir / "users.csv"
    write_csv(seed, ["username", "custom:tier", "custom:department"],
              (seeded(i) for i in range(users)))

    def row(i: int) -> tuple[str, str, str]:
        name, tier, dept = seeded(i)
        if i in differing:
            if (i // step) % 2 == 0:
                tier = TIERS[(i + 1) % 4]
            else:
                dept = DEPARTMENTS[(i + 1) % 6]
        return name, tier, dept

    source = workdir / "input.csv"
    write_csv(source, ["username", "tier", "department"], (row(i) for i in range(users)))
    restore = workdir / "restore.csv"
    write_csv(restore, ["username", "tier", "department"],
              (seeded(i) for i in sorted(differing)))
    return {"seed": seed, "input": source, "restore": restore, "differing": sorted(differing)}


def head(source: Path, rows: int, target: Path) -> Path:
    with source.open(encoding="utf-8") as src, target.open("w", encoding="utf-8") as dst:
        for i, line in enumerate(src):
            if i > rows:
                break
            dst.write(line)
    return target


def run_job(emu: EmulatorProcess, workdir: Path, label: str, source: Path,
            *extra: str) -> dict[str, Any]:
    assert emu.admin is not None
    report = workdir / f"{label}.report.csv"
    argv = cognito_batch("run", str(source), "--user-pool-id", emu.user_pool_id,
                         "--endpoint-url", emu.endpoint_url, "--yes", "--quiet", "--fresh",
                         "--report", str(report), *extra)
    emu.admin.reset()
    log(f"{label}: {' '.join(argv[3:5])} ... {' '.join(extra)}")
    m = run_measured(argv, workdir=workdir, label=label, timeout=3600)
    stats = emu.admin.stats()
    summary = read_summary(report)
    counts = summary.get("counts", {})
    ops = {op: update_stats(stats, op) for op in OPERATIONS}
    result = {
        "label": label, "argv": argv, "exit_code": m.returncode,
        "wall_s": round(m.wall_s, 2), "in_loop_s": summary.get("duration_s"),
        "rows": summary.get("rows"), "updated": int(counts.get("updated", 0)),
        "unchanged": int(counts.get("unchanged", 0)),
        "failed": int(counts.get("failed", 0)) + int(counts.get("skipped", 0)),
        "invalid": int(counts.get("invalid", 0)),
        "update_calls": ops["AdminUpdateUserAttributes"]["calls"],
        "update_accepted": ops["AdminUpdateUserAttributes"]["accepted"],
        "update_throttled": ops["AdminUpdateUserAttributes"]["throttled"],
        "list_calls": ops["ListUsers"]["calls"], "get_calls": ops["AdminGetUser"]["calls"],
        "describe_calls": ops["DescribeUserPool"]["calls"],
        "read_throttled": ops["ListUsers"]["throttled"] + ops["AdminGetUser"]["throttled"],
        "lookup": summary.get("lookup"), "read_calls_client": summary.get("read_calls"),
        "cpu_s": round(m.cpu_s, 2), "peak_rss_mb": round(m.maxrss_mb, 1),
        "operations": ops, "stderr_tail": m.stderr[-600:],
    }
    log(f"  exit {m.returncode} in {m.wall_s:.1f}s: updated {result['updated']}, unchanged "
        f"{result['unchanged']}, update calls {result['update_calls']}, ListUsers "
        f"{result['list_calls']}, AdminGetUser {result['get_calls']}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="--skip-unchanged against a rewrite of every row, on the local emulator at "
        "Cognito's default quotas (see bench/README.md)."
    )
    add = parser.add_argument
    add("--users", type=int, default=20_000, help="seeded users = input rows (default 20000)")
    add("--changed", type=int, default=200, help="rows that differ from the pool (default 200)")
    add("--latency-ms", type=float, default=20.0)
    add(
        "--rewrite-rows",
        type=int,
        default=0,
        metavar="N",
        help="run (2) on the first N rows only and extrapolate linearly to every row "
        "(default: the full run)",
    )
    add("--out", type=Path, default=RESULTS / "delta.json")
    add("--keep", action="store_true", help="keep the temporary folder (logs, reports)")
    args = parser.parse_args(argv)
    if not 0 < args.changed <= args.users:
        parser.error("--changed must be between 1 and --users")
    rewrite_rows = args.rewrite_rows if 0 < args.rewrite_rows < args.users else args.users

    started = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="cognito-batch-delta-")
    workdir = Path(tmp.name)
    payload: dict[str, Any] = {
        "benchmark": "delta", "machine": machine(), "versions": versions(),
        "code_at_start": code_state(),
        "settings": {"users": args.users, "changed": args.changed,
                     "latency_ms": args.latency_ms, "quotas": "emulator defaults",
                     "rewrite_rows": rewrite_rows},
    }
    try:
        files = write_inputs(workdir, args.users, args.changed)
        emu_args = ["--latency-ms", f"{args.latency_ms:g}", "--create-pool", "delta",
                    "--default-schema", "--users", str(files["seed"])]
        log(
            f"starting the emulator (default quotas, {args.latency_ms:g} ms, {args.users} "
            "users) ..."
        )
        with EmulatorProcess(emu_args, workdir) as emu:
            assert emu.admin is not None
            log(f"  ready in {emu.seconds_to_ready:.1f}s")
            payload["emulator_ready_s"] = round(emu.seconds_to_ready, 1)
            payload["emulator_config"] = emu.admin._request("GET", "/_emulator/config")
            delta = run_job(emu, workdir, "1-skip-unchanged", files["input"], "--skip-unchanged")
            payload["skip_unchanged"] = delta
            save_json(args.out, payload)

            restore = run_job(emu, workdir, "restore", files["restore"], "--rate", "25")
            payload["restore"] = {k: restore[k] for k in ("exit_code", "updated", "wall_s")}

            source = files["input"]
            if rewrite_rows < args.users:
                source = head(files["input"], rewrite_rows, workdir / "rewrite.csv")
            rewrite = run_job(emu, workdir, "2-rewrite", source, "--rate", "25")
            factor = args.users / rewrite_rows
            rewrite["extrapolated"] = factor != 1.0
            rewrite["factor"] = round(factor, 4)
            rewrite["measured_rows"] = rewrite_rows
            payload["rewrite"] = rewrite
    finally:
        payload["total_s"] = round(time.perf_counter() - started, 1)
        payload["code_at_end"] = code_state()
        save_json(args.out, payload)
        if args.keep:
            log(f"kept {workdir}")
        else:
            tmp.cleanup()

    d, r = payload["skip_unchanged"], payload["rewrite"]
    f = r["factor"]
    est = {k: r[k] * f for k in ("wall_s", "update_calls", "list_calls", "get_calls",
                                 "updated", "unchanged")}
    payload["rewrite_full"] = {k: round(v, 1) for k, v in est.items()}
    check = d["update_calls"] == args.changed and d["update_accepted"] == args.changed
    payload["check"] = {"update_calls_equal_changed": check}
    save_json(args.out, payload)

    print(
        f"delta sync: {args.users} users seeded, input of all {args.users} with "
        f"{args.changed} differing; emulator at default quotas (UserUpdate 25/s, UserList "
        f"30/s, UserRead 120/s), {args.latency_ms:g} ms latency"
    )
    label2 = "(2) rewrite, --rate 25"
    if r["extrapolated"]:
        label2 += f" [{rewrite_rows} rows x {f:g}, EXTRAPOLATED]"
    headers = ["run", "wall s", "update calls", "ListUsers", "AdminGetUser", "updated",
               "unchanged", "failed", "exit"]
    rows: list[list[Any]] = [
        ["(1) --skip-unchanged", d["wall_s"], d["update_calls"], d["list_calls"], d["get_calls"],
         d["updated"], d["unchanged"], d["failed"], d["exit_code"]],
    ]
    if r["extrapolated"]:
        rows.append([f"(2) rewrite, measured on {rewrite_rows} rows", r["wall_s"],
                     r["update_calls"], r["list_calls"], r["get_calls"], r["updated"],
                     r["unchanged"], r["failed"], r["exit_code"]])
    rows.append([label2, round(est["wall_s"], 1), round(est["update_calls"]),
                 round(est["list_calls"]), round(est["get_calls"]), round(est["updated"]),
                 round(est["unchanged"]), r["failed"] * f if r["failed"] else 0,
                 r["exit_code"]])
    print()
    print(table(headers, rows))
    print()
    if r["extrapolated"]:
        print(
            f"(2) ran on the first {rewrite_rows} rows; its wall seconds and call counts are "
            f"scaled linearly by {args.users}/{rewrite_rows} = {f:g} (start-up included, so "
            "the wall estimate is high by ~(factor-1) x start-up seconds)"
        )
    print(
        f"(1) lookup: {d['lookup']}; update calls throttled {d['update_throttled']}; "
        f"reads throttled {d['read_throttled']}; DescribeUserPool {d['describe_calls']}"
    )
    print(
        f"{'PASS' if check else 'FAIL'}  (1) update calls {d['update_calls']} (accepted "
        f"{d['update_accepted']}) == {args.changed}"
    )
    if d["wall_s"] > 0:
        print(
            f"(2)/(1): wall {est['wall_s'] / d['wall_s']:.1f}x, update calls "
            f"{est['update_calls'] / max(1, d['update_calls']):.0f}x"
        )
    start, end = payload["code_at_start"], payload["code_at_end"]
    print(
        f"\ncode: commit {start['commit']}, batch/ sha256 {start['batch_sha256']}"
        f"{' (uncommitted changes)' if start['batch_dirty'] == 'true' else ''}"
    )
    if start != end:
        print(
            f"WARNING: batch/ changed during the run (now {end['commit']}, {end['batch_sha256']})"
        )
    print(f"total {payload['total_s']:.0f}s; results in {args.out}")
    return 0 if check else 1


if __name__ == "__main__":
    sys.exit(main())
