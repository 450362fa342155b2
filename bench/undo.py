"""What before-images cost: a run with them (the default) against ``--no-undo``, and the undo.

    .venv/bin/python bench/undo.py                    # 2,000 users at 200/s (~2 min)
    .venv/bin/python bench/undo.py --rate 1000 --workers 32

One emulator process, seeded with N users, 20 ms latency, no UserUpdate / UserRead quota (the
client's ``--rate`` is the limit). Three measured children, each its own process:

  (a) run A.csv --no-undo      every user's tier to A
  (b) run B.csv                every user's tier to B, before-images on (AdminGetUser per row,
                               one fsync'd record per row, group-committed)
  (c) undo (b)'s report        every user back to A

Printed: wall and CPU seconds, calls, and for (b) the records, fsyncs and fsync milliseconds
from its summary; the ratios (b)/(a) of wall and CPU. Checked: after (c) every user holds A.
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


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="before-images against --no-undo")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--rate", default="200")
    parser.add_argument("--workers", default="16")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "undo.json")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    payload: dict[str, Any] = {"benchmark": "undo", "machine": machine(), "versions": versions(),
                               "code_at_start": code_state(),
                               "settings": {"users": args.users, "rate": args.rate,
                                            "workers": args.workers,
                                            "latency_ms": args.latency_ms}}
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cognito-batch-undo-") as tmp:
        work = Path(tmp)
        names = [f"user{i:06d}" for i in range(args.users)]
        seed = work / "seed.csv"
        write_csv(seed, ["username", "custom:tier"], ((n, "seed") for n in names))
        inputs = {}
        for tier in ("A", "B"):
            inputs[tier] = work / f"{tier}.csv"
            write_csv(inputs[tier], ["username", "tier"], ((n, tier) for n in names))
        emu_args = ["--quota", "UserUpdate=off", "--quota", "UserRead=off", "--latency-ms",
                    f"{args.latency_ms:g}", "--create-pool", "undo", "--default-schema",
                    "--users", str(seed)]
        log(f"seeding an emulator with {args.users} users ...")
        with EmulatorProcess(emu_args, work) as emu:
            assert emu.admin is not None
            common = ["--user-pool-id", emu.user_pool_id, "--endpoint-url", emu.endpoint_url,
                      "--rate", args.rate, "--workers", args.workers, "--yes",
                      "--quiet"]
            steps = [
                ("a: --no-undo", cognito_batch("run", str(inputs["A"]), *common, "--no-undo",
                                               "--fresh", "--report", str(work / "a.csv"))),
                ("b: before-images", cognito_batch("run", str(inputs["B"]), *common, "--fresh",
                                                   "--report", str(work / "b.csv"))),
                ("c: undo b", cognito_batch("undo", str(work / "b.csv"), *common[2:],
                                            "--fresh")),
            ]
            for label, command in steps:
                emu.admin.reset()
                log(f"{label} ...")
                m = run_measured(command, workdir=work, label=label[0], timeout=3600)
                stats = emu.admin.stats()
                report = work / {"a": "a.csv", "b": "b.csv", "c": "b.undo.csv"}[label[0]]
                summary = read_summary(report)
                row = {"label": label, "exit_code": m.returncode, "wall_s": round(m.wall_s, 2),
                       "cpu_s": round(m.cpu_s, 2), "peak_rss_mb": round(m.maxrss_mb, 1),
                       "updated": summary.get("counts", {}).get("updated"),
                       "update_calls": update_stats(stats)["calls"],
                       "get_calls": update_stats(stats, "AdminGetUser")["calls"],
                       "undo": summary.get("undo"), "argv": command}
                log(f"  exit {m.returncode}, {m.wall_s:.1f}s, {m.cpu_s:.1f} CPU s")
                runs.append(row)
            # The check: after the undo every user holds A again (read straight from moto).
            sample = [names[0], names[len(names) // 2], names[-1]]
            export = work / "after.csv"
            run_measured(cognito_batch("export", str(export), "--user-pool-id",
                                       emu.user_pool_id, "--endpoint-url", emu.endpoint_url,
                                       "--attributes", "tier", "--rate", "1000", "--quiet"),
                         workdir=work, label="check")
            tiers = {line.split(",")[1].strip() for line in export.read_text().splitlines()[1:]}
            payload["after_undo_tiers"] = sorted(tiers)
            payload["sample"] = sample
    a, b = runs[0], runs[1]
    payload.update({
        "runs": runs,
        "ratio_wall_b_over_a": round(b["wall_s"] / a["wall_s"], 3),
        "ratio_cpu_b_over_a": round(b["cpu_s"] / a["cpu_s"], 3),
        "code_at_end": code_state(), "seconds": round(time.perf_counter() - started, 1),
    })
    save_json(args.out, payload)
    print(table(["run", "exit", "wall s", "CPU s", "updates", "AdminGetUser", "records",
                 "fsyncs", "fsync ms"],
                [[r["label"], r["exit_code"], r["wall_s"], r["cpu_s"], r["update_calls"],
                  r["get_calls"], (r["undo"] or {}).get("records", ""),
                  (r["undo"] or {}).get("fsyncs", ""), (r["undo"] or {}).get("fsync_ms", "")]
                 for r in runs]))
    print(f"(b)/(a): wall {payload['ratio_wall_b_over_a']:.2f}, CPU "
          f"{payload['ratio_cpu_b_over_a']:.2f}; tiers after the undo: "
          f"{payload['after_undo_tiers']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
