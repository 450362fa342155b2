"""The nightly sync at Cognito's default quotas, with a live application on UserUpdate
(issue 21 item 7).

    .venv/bin/python bench/sync.py                 # 10,000 rows (~4 min)
    .venv/bin/python bench/sync.py --rows 2000     # a quicker look

One emulator process at Cognito's default quotas (UserUpdate 25/s, UserCreation 50/s,
UserList 30/s, UserRead 120/s, UserResourceRead 50/s, UserPoolResourceRead 20/s), 20 ms a
call, and a live application drawing ``--neighbour`` calls/s (Poisson) from UserUpdate. The
input is the whole population of N rows: 5 % joiners (not in the pool: created, into
``staff``), 10 % movers (a new department, from ``staff`` to ``sales``), the rest unchanged;
2 % of N more users are in the pool and absent from the file (leavers: ``--disable-missing``).

Judged against what no client can beat: the busiest category's lower bound (its minimum calls
over its quota; with the live app's share taken out of UserUpdate too), and the minimum calls
per operation. Checked: every row's status, and the pool's end state read back.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
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

DEFAULTS = {"UserUpdate": 25.0, "UserCreation": 50.0, "UserList": 30.0, "UserRead": 120.0,
            "UserResourceRead": 50.0, "UserPoolResourceRead": 20.0}
OPERATIONS = ("AdminCreateUser", "AdminUpdateUserAttributes", "AdminAddUserToGroup",
              "AdminRemoveUserFromGroup", "AdminDisableUser", "AdminEnableUser",
              "AdminGetUser", "ListUsers", "ListUsersInGroup", "AdminListGroupsForUser",
              "ListGroups")
CATEGORY = {"AdminCreateUser": "UserCreation", "AdminUpdateUserAttributes": "UserUpdate",
            "AdminAddUserToGroup": "UserUpdate", "AdminRemoveUserFromGroup": "UserUpdate",
            "AdminDisableUser": "UserUpdate", "AdminEnableUser": "UserUpdate"}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def population(rows: int) -> dict[str, list[str]]:
    """Usernames by role: joiners, movers, stayers (unchanged), leavers."""
    joiners, movers, leavers = rows * 5 // 100, rows * 10 // 100, rows * 2 // 100
    names = [f"user{i:06d}" for i in range(rows + leavers)]
    return {"joiners": names[:joiners], "movers": names[joiners:joiners + movers],
            "stayers": names[joiners + movers:rows], "leavers": names[rows:]}


def seed_groups(emu: EmulatorProcess, movers: list[str]) -> None:
    """The two groups, and every mover in ``staff`` (quotas are off while seeding)."""
    import boto3

    client = boto3.client("cognito-idp", endpoint_url=emu.endpoint_url, region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench")
    pool = emu.user_pool_id
    for group in ("staff", "sales"):
        client.create_group(UserPoolId=pool, GroupName=group)
    with ThreadPoolExecutor(8) as pool_threads:
        list(pool_threads.map(lambda u: client.admin_add_user_to_group(
            UserPoolId=pool, Username=u, GroupName="staff"), movers))


def minimum_calls(people: dict[str, list[str]]) -> dict[str, int]:
    """The fewest writes that make the pool match: a joiner's create and group; a mover's
    attribute write, its remove and its add; a leaver's disable."""
    j, m, leave = (len(people[k]) for k in ("joiners", "movers", "leavers"))
    return {"AdminCreateUser": j, "AdminUpdateUserAttributes": m,
            "AdminAddUserToGroup": j + m, "AdminRemoveUserFromGroup": m,
            "AdminDisableUser": leave}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the nightly sync at the default quotas")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--neighbour", type=float, default=5.0,
                        help="the live application's UserUpdate calls/s")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "sync.json")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    people = population(args.rows)
    payload: dict[str, Any] = {"benchmark": "sync", "machine": machine(), "versions": versions(),
                               "code_at_start": code_state(),
                               "settings": {"rows": args.rows, "neighbour": args.neighbour,
                                            "latency_ms": args.latency_ms,
                                            "quotas": DEFAULTS},
                               "population": {k: len(v) for k, v in people.items()}}
    with tempfile.TemporaryDirectory(prefix="cognito-batch-sync-") as tmp:
        work = Path(tmp)
        seed = work / "seed.csv"
        existing = people["movers"] + people["stayers"] + people["leavers"]
        write_csv(seed, ["username", "custom:department"], ((n, "ops") for n in existing))
        source = work / "sync.csv"
        rows = [(n, "ops", "staff") for n in people["joiners"]]
        rows += [(n, "sales", "sales") for n in people["movers"]]
        rows += [(n, "ops", "") for n in people["stayers"]]
        write_csv(source, ["username", "department", "groups"], rows)
        emu_args = ["--latency-ms", "0", "--create-pool", "sync", "--default-schema",
                    "--users", str(seed)] + [a for c in DEFAULTS for a in ("--quota", f"{c}=off")]
        log(f"seeding an emulator with {len(existing)} users ...")
        with EmulatorProcess(emu_args, work) as emu:
            assert emu.admin is not None
            seed_groups(emu, people["movers"])
            emu.admin.configure(quotas=DEFAULTS, latency_ms=args.latency_ms,
                                neighbours={"UserUpdate": f"{args.neighbour:g}"})
            emu.admin.reset()
            report = work / "report.csv"
            command = cognito_batch("run", str(source), "--user-pool-id", emu.user_pool_id,
                                    "--endpoint-url", emu.endpoint_url, "--create-missing",
                                    "--disable-missing", "--yes", "--quiet", "--no-undo",
                                    "--report", str(report))
            log("sync ...")
            m = run_measured(command, workdir=work, label="sync", timeout=3600)
            stats = emu.admin.stats()
            emu.admin.configure(neighbours={})
            summary = read_summary(report)
            statuses = summary.get("counts", {})
    calls = {op: update_stats(stats, op) for op in OPERATIONS}
    minimum = minimum_calls(people)
    by_category: dict[str, int] = {}
    for op, n in minimum.items():
        by_category[CATEGORY[op]] = by_category.get(CATEGORY[op], 0) + n
    bounds = {c: n / DEFAULTS[c] for c, n in by_category.items()}
    busiest = max(bounds, key=lambda c: bounds[c])
    with_app = by_category["UserUpdate"] / (DEFAULTS["UserUpdate"] - args.neighbour)
    neighbour = stats.get("neighbours", {}).get("UserUpdate", {})
    payload.update({
        "exit_code": m.returncode, "wall_s": round(m.wall_s, 2), "cpu_s": round(m.cpu_s, 2),
        "peak_rss_mb": round(m.maxrss_mb, 1), "duration_s": summary.get("duration_s"),
        "statuses": statuses, "calls": calls, "minimum_calls": minimum,
        "lower_bound_s": {c: round(b, 1) for c, b in bounds.items()}, "busiest": busiest,
        "lower_bound_with_app_s": round(with_app, 1),
        "neighbour": {"calls": int(neighbour.get("calls", 0)),
                      "throttled": int(neighbour.get("throttled", 0))},
        "argv": command, "code_at_end": code_state(),
        "seconds": round(time.perf_counter() - started, 1),
    })
    save_json(args.out, payload)
    print(render(payload))
    return 0 if m.returncode == 0 else 1


def render(p: dict[str, Any]) -> str:
    bound = p["lower_bound_s"][p["busiest"]]
    lines = [f"sync of {p['settings']['rows']} rows ({p['population']}), default quotas, "
             f"{p['settings']['latency_ms']:g} ms, live app {p['settings']['neighbour']:g} "
             f"UserUpdate/s; exit {p['exit_code']}", "",
             table(["", "seconds", "x bound"], [
                 ["wall (whole command)", p["wall_s"], round(p["wall_s"] / bound, 2)],
                 [f"lower bound: {p['busiest']} at its quota", bound, 1.0],
                 ["lower bound, the live app's share taken out", p["lower_bound_with_app_s"],
                  round(p["lower_bound_with_app_s"] / bound, 2)]]), "",
             table(["operation", "calls", "accepted", "throttled", "minimum"], [
                 [op, c["calls"], c["accepted"], c["throttled"],
                  p["minimum_calls"].get(op, "-")]
                 for op, c in p["calls"].items() if c["calls"]]), "",
             f"statuses: {p['statuses']}",
             f"live app: {p['neighbour']['throttled']} of {p['neighbour']['calls']} calls "
             "throttled"]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
