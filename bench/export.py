"""Export memory: peak RSS of ``cognito-batch export`` at 2,000 and at 20,000 users.

    .venv/bin/python bench/export.py                  # 2,000 and 20,000 users (~3 min)
    .venv/bin/python bench/export.py --users 2000 50000

For each size an emulator process is seeded with that many users (username, tier, department,
given_name, email; the default schema), with the UserList quota off and no latency, and the
export runs as a measured child (``os.wait4``: its own wall, CPU and peak RSS). Each size is
exported to CSV and to Parquet. Flat memory means the peak RSS at 20,000 is within a few MB of
the peak at 2,000 (the ratio is printed): the users are streamed page by page, never held.
For scale, holding 20,000 users as Python dicts of five attributes costs ~20 MB.

    .venv/bin/python bench/export.py --convert 20000 1000000

measures only the last step of a Parquet export (the CSV spool to Parquet, 10,000 rows a row
group) on synthetic spools of those sizes, each in its own child: flat from one row group on.
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
    run_measured,
    save_json,
    table,
    update_stats,
    versions,
    write_csv,
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def seed_file(path: Path, users: int) -> Path:
    write_csv(path, ["username", "custom:tier", "custom:department", "given_name", "email"],
              ((f"user{i:06d}", ("bronze", "silver", "gold")[i % 3], f"department {i % 40}",
                f"Given {i}", f"user{i}@example.com") for i in range(users)))
    return path


def measure(users: int, workdir: Path) -> list[dict[str, Any]]:
    seed = seed_file(workdir / f"seed{users}.csv", users)
    emu_args = ["--quota", "UserList=off", "--quota", "UserPoolRead=off", "--create-pool",
                f"export{users}", "--default-schema", "--users", str(seed)]
    log(f"seeding an emulator with {users} users ...")
    out: list[dict[str, Any]] = []
    with EmulatorProcess(emu_args, workdir, label=f"emulator{users}") as emu:
        assert emu.admin is not None
        log(f"  ready in {emu.seconds_to_ready:.1f}s")
        for fmt in ("csv", "parquet"):
            target = workdir / f"export{users}.{fmt}"
            argv = cognito_batch("export", str(target), "--user-pool-id", emu.user_pool_id,
                                 "--endpoint-url", emu.endpoint_url, "--rate", "10000",
                                 "--quiet", "--fresh")
            emu.admin.reset()
            m = run_measured(argv, workdir=workdir, label=f"export{users}{fmt}", timeout=1800)
            if m.returncode != 0:
                raise RuntimeError(f"export exited {m.returncode}: {m.stderr[-800:]}")
            pages = update_stats(emu.admin.stats(), "ListUsers")["accepted"]
            row = {"users": users, "format": fmt, "wall_s": round(m.wall_s, 2),
                   "cpu_s": round(m.cpu_s, 2), "peak_rss_mb": round(m.maxrss_mb, 1),
                   "list_pages": pages, "bytes": target.stat().st_size,
                   "argv": argv}
            log(f"  {fmt}: {m.wall_s:.1f}s, {m.cpu_s:.1f} CPU s, peak RSS {m.maxrss_mb:.1f} MB, "
                f"{pages} pages")
            out.append(row)
    return out


CONVERT = """
import csv, sys
from pathlib import Path
from batch.commands.export import _csv_to_parquet
_csv_to_parquet(Path(sys.argv[1]), Path(sys.argv[2]))
"""


def convert(sizes: list[int], workdir: Path) -> list[dict[str, Any]]:
    out = []
    for n in sizes:
        spool = workdir / f"spool{n}.csv"
        write_csv(spool, ["username", "tier", "department", "given_name", "email",
                          *(f"c{i}" for i in range(20))],
                  ((f"user{i:07d}", "gold", f"department {i % 40}", f"Given {i}",
                    f"user{i}@example.com", *([""] * 20)) for i in range(n)))
        m = run_measured([sys.executable, "-c", CONVERT, str(spool), str(workdir / "o.parquet")],
                         workdir=workdir, label=f"convert{n}")
        if m.returncode != 0:
            raise RuntimeError(m.stderr[-800:])
        log(f"  convert {n} rows: {m.wall_s:.1f}s, peak RSS {m.maxrss_mb:.1f} MB")
        out.append({"rows": n, "wall_s": round(m.wall_s, 2), "peak_rss_mb": round(m.maxrss_mb, 1)})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="export's peak RSS at two pool sizes")
    parser.add_argument("--users", type=int, nargs=2, default=[2000, 20000])
    parser.add_argument("--out", type=Path, default=RESULTS / "export.json")
    parser.add_argument("--convert", type=int, nargs="+", metavar="ROWS",
                        help="only the spool-to-Parquet step, on synthetic spools")
    args = parser.parse_args(argv)
    if args.convert:
        with tempfile.TemporaryDirectory(prefix="cognito-batch-export-") as tmp:
            rows = convert(args.convert, Path(tmp))
        save_json(args.out.with_name("export-convert.json"), {
            "benchmark": "export-convert", "machine": machine(), "versions": versions(),
            "code": code_state(), "runs": rows})
        print(table(["rows", "wall s", "peak RSS MB"],
                    [[r["rows"], r["wall_s"], r["peak_rss_mb"]] for r in rows]))
        return 0
    started = time.perf_counter()
    payload: dict[str, Any] = {"benchmark": "export", "machine": machine(),
                               "versions": versions(), "code_at_start": code_state()}
    with tempfile.TemporaryDirectory(prefix="cognito-batch-export-") as tmp:
        rows = [r for n in args.users for r in measure(n, Path(tmp))]
    small, large = args.users
    ratios = {}
    for fmt in ("csv", "parquet"):
        a = next(r for r in rows if r["users"] == small and r["format"] == fmt)
        b = next(r for r in rows if r["users"] == large and r["format"] == fmt)
        ratios[fmt] = round(b["peak_rss_mb"] / a["peak_rss_mb"], 3)
    payload.update({"runs": rows, "rss_ratio_large_over_small": ratios,
                    "code_at_end": code_state(),
                    "seconds": round(time.perf_counter() - started, 1)})
    save_json(args.out, payload)
    print(table(["users", "format", "wall s", "CPU s", "peak RSS MB", "pages"],
                [[r["users"], r["format"], r["wall_s"], r["cpu_s"], r["peak_rss_mb"],
                  r["list_pages"]] for r in rows]))
    print(f"peak RSS {large} / {small} users: " +
          ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
