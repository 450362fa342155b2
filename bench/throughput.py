"""Throughput under Cognito's rate quota: cognito-batch against the loops a user would write.

    .venv/bin/python bench/throughput.py              # what `make bench` runs (~11 min)
    .venv/bin/python bench/throughput.py --skip-ceiling --rows 600   # a quick look

The emulator runs in its own process (quota Q = 50 UserUpdate/s, 20 ms latency, the default
schema, 3,000 seeded users). Each client is its own child process, reaped with os.wait4, so
its CPU seconds and peak RSS are its own:

  (a) cognito-batch --rate 50        (b) cognito-batch --rate auto
  (c) a sequential boto3 loop with a default client (legacy retries)
  (d) 16 threads sharing one client with retries={"mode": "adaptive", "max_attempts": 10}

all four on a clean emulator, then all four with 1 % HTTP 500s and 0.5 % dropped connections.
The emulator's stats and quota bucket are reset before every run. Then the ceiling (the
emulator answers AdminUpdateUserAttributes itself: no moto, no quota, no latency): cognito-batch
CPU per update against a bare boto3 loop's CPU per call. With ``--rss``: peak RSS on a small
and a large input at the ceiling.

Every comparison is a ratio against a baseline measured in the same run: the machine is shared
and noisy, so absolute seconds mean little from one run to the next. See bench/README.md.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sharing
from harness import (
    BENCH,
    PYTHON,
    RESULTS,
    EmulatorProcess,
    Measured,
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

CLIENTS_PY = str(BENCH / "clients.py")
CLIENTS = {
    "a": "(a) cognito-batch --rate Q",
    "b": "(b) cognito-batch --rate auto",
    "c": "(c) boto3 loop, default client",
    "d": "(d) boto3 16 threads, adaptive",
    # With --compare-algorithms: --rate auto with the other controllers (bench/controllers.py).
    "m": "(b') auto, AIMD controller",
    "u": '(b") auto, CUBIC controller',
}
ALGORITHMS = {"m": "aimd", "u": "cubic"}
PHASES: dict[str, dict[str, Any]] = {"clean": {"fault_rate": 0.0, "drop_rate": 0.0},
          "faults": {"fault_rate": 0.01, "drop_rate": 0.005}}
TIERS = ("bronze", "silver", "gold", "platinum")
DEPARTMENTS = ("sales", "engineering", "finance", "support", "legal", "marketing")
# Targets (judged against Q and against client (d) of the same phase).
FIXED_GOODPUT, FIXED_THROTTLED = 0.97, 0.005
AUTO_GOODPUT, AUTO_THROTTLED = 0.95, 0.01
CEILING_RATIO = 1.3
RSS_SECONDS = 180.0
RSS_RATIO = 1.15  # "flat": within the noise of allocator and import differences


def uptime() -> str:
    """`uptime`'s line: the machine is shared, and its load changes the figures."""
    import subprocess

    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- inputs ---------------------------------------------------------------------------------


def write_inputs(workdir: Path, rows: int) -> tuple[Path, Path]:
    """The seed (username, custom:tier, custom:department) and an input changing both."""
    users = workdir / "users.csv"
    write_csv(
        users,
        ["username", "custom:tier", "custom:department"],
        ([f"user{i:06d}", TIERS[i % 4], DEPARTMENTS[i % 6]] for i in range(rows)),
    )
    source = workdir / "input.csv"
    write_csv(source, ["username", "tier", "department"],
              ([f"user{i:06d}", TIERS[(i + 1) % 4], DEPARTMENTS[(i + 1) % 6]]
               for i in range(rows)))
    return users, source


def head(source: Path, path: Path, rows: int) -> Path:
    """The header and the first ``rows`` rows of ``source``."""
    with source.open() as src, path.open("w") as dst:
        for i, line in enumerate(src):
            if i > rows:
                break
            dst.write(line)
    return path


def write_ceiling_input(path: Path, rows: int) -> Path:
    """Users need not exist: at the ceiling the emulator answers without looking."""
    write_csv(
        path,
        ["username", "tier", "department"],
        ([f"ceiling{i:07d}", TIERS[i % 4], DEPARTMENTS[i % 6]] for i in range(rows)),
    )
    return path


# --- one run --------------------------------------------------------------------------------


def client_argv(client: str, emu: EmulatorProcess, source: Path, workdir: Path, label: str,
                quota: float) -> tuple[list[str], Path]:
    if client in ("a", "b", *ALGORITHMS):
        report = workdir / f"{label}.report.csv"
        rate = f"{quota:g}" if client == "a" else "auto"
        argv = cognito_batch("run", str(source), "--user-pool-id", emu.user_pool_id,
                             "--endpoint-url", emu.endpoint_url, "--rate", rate, "--yes",
                             "--quiet", "--fresh", "--report", str(report))
        if client in ALGORITHMS:  # the same command, with bench's controller in the tool's place
            argv = [PYTHON, str(BENCH / "controllers.py"), ALGORITHMS[client], "--", *argv[3:]]
        return argv, report
    out = workdir / f"{label}.result.json"
    mode = "sequential" if client == "c" else "threaded"
    argv = [PYTHON, CLIENTS_PY, mode, str(source), "--endpoint-url", emu.endpoint_url,
            "--user-pool-id", emu.user_pool_id, "--out", str(out)]
    return argv, out


def outcome_counts(client: str, m: Measured, out: Path) -> dict[str, Any]:
    """rows / updated / failed (= not updated) and details, from the report or the result."""
    if client in ("a", "b", *ALGORITHMS):
        summary = read_summary(out)
        counts = summary.get("counts", {})
        rows = int(summary.get("rows", 0))
        updated = int(counts.get("updated", 0))
        return {"rows": rows, "updated": updated, "failed": rows - updated,
                "statuses": counts, "errors": summary.get("errors", {}),
                "client_calls": summary.get("calls"), "client_throttles": summary.get("throttles"),
                "client_faults": summary.get("faults"), "rate_final": summary.get("rate_final"),
                "rate_low": summary.get("rate_low"), "rate_high": summary.get("rate_high"),
                "in_loop_s": summary.get("duration_s")}
    import json

    data = json.loads(out.read_text()) if out.exists() else {}
    return {"rows": int(data.get("rows", 0)), "updated": int(data.get("updated", 0)),
            "failed": int(data.get("failed", 0)), "errors": data.get("errors", {}),
            "in_loop_s": data.get("loop_s")}


def run_client(client: str, phase: str, emu: EmulatorProcess, source: Path, workdir: Path,
               quota: float, expected_rows: int) -> dict[str, Any]:
    assert emu.admin is not None
    label = f"{phase}-{client}"
    argv, out = client_argv(client, emu, source, workdir, label, quota)
    emu.admin.reset()  # zero the stats, refill the quota bucket: runs are independent
    cpu_before = emu.cpu_seconds()
    log(f"  {label}: {CLIENTS[client]} ...")
    m = run_measured(argv, workdir=workdir, label=label, timeout=1200)
    emu_cpu = emu.cpu_seconds() - cpu_before
    stats = emu.admin.stats()
    upd = update_stats(stats)
    counts = outcome_counts(client, m, out)
    updated = counts["updated"]
    if counts["rows"] == 0:  # the client died before writing anything: every row failed
        counts["rows"] = expected_rows
        counts["failed"] = expected_rows - updated
    goodput = updated / m.wall_s if m.wall_s > 0 else 0.0
    row = {
        "phase": phase, "client": client, "name": CLIENTS[client], "argv": argv, "quota": quota,
        "exit_code": m.returncode, "timed_out": m.timed_out,
        **counts,
        "wall_s": round(m.wall_s, 3),
        "goodput": round(goodput, 3),
        "goodput_over_q": round(goodput / quota, 4),
        "calls": upd["calls"], "accepted": upd["accepted"], "throttled": upd["throttled"],
        "server_faults": upd["faults"], "server_dropped": upd["dropped"],
        "throttled_per_call": round(upd["throttled"] / upd["calls"], 5) if upd["calls"] else 0.0,
        "cpu_s": round(m.cpu_s, 3), "user_s": round(m.user_s, 3), "system_s": round(m.system_s, 3),
        "cpu_ms_per_update": round(1000 * m.cpu_s / updated, 4) if updated else None,
        "peak_rss_mb": round(m.maxrss_mb, 1),
        "context_switches_per_update": round(
            (m.voluntary_switches + m.involuntary_switches) / updated, 2) if updated else None,
        "emulator_cpu_s": round(emu_cpu, 2),
        "emulator_cpu_share": round(emu_cpu / m.wall_s, 3) if m.wall_s else 0.0,
        "emulator_accepted_per_s": round(upd["accepted"] / m.wall_s, 2) if m.wall_s else 0.0,
        "emulator_in_flight_peak": stats.get("in_flight_peak"),
        "stderr_tail": m.stderr[-600:],
    }
    log(f"    {updated}/{counts['rows']} updated in {m.wall_s:.1f}s = {goodput:.1f}/s, "
        f"{upd['throttled']}/{upd['calls']} throttled, exit {m.returncode}, "
        f"CPU {m.cpu_s:.1f}s, RSS {m.maxrss_mb:.0f} MB")
    return row


def probe_capacity(emu: EmulatorProcess, source: Path, workdir: Path, rows: int,
                   quota: float) -> dict[str, Any]:
    """Can the emulator (moto behind the front) accept more than Q updates/s at all?

    The UserUpdate quota is lifted and cognito-batch pushes as fast as 16 workers go; the
    accepted rate is a lower bound on what the emulator sustains (the client shares the CPU).
    """
    assert emu.admin is not None
    probe = workdir / "probe.csv"
    with source.open() as src, probe.open("w") as dst:
        for i, line in enumerate(src):
            if i > rows:
                break
            dst.write(line)
    emu.admin.configure(quotas={"UserUpdate": None})
    try:
        emu.admin.reset()
        report = workdir / "probe.report.csv"
        cpu_before = emu.cpu_seconds()
        m = run_measured(cognito_batch("run", str(probe), "--user-pool-id", emu.user_pool_id,
                                       "--endpoint-url", emu.endpoint_url, "--rate", "10000",
                                       "--workers", "16", "--yes", "--quiet", "--fresh",
                                       "--report", str(report)),
                         workdir=workdir, label="probe")
        emu_cpu = emu.cpu_seconds() - cpu_before
        upd = update_stats(emu.admin.stats())
        summary = read_summary(report)
        loop_s = float(summary.get("duration_s") or m.wall_s)
    finally:
        emu.admin.configure(quotas={"UserUpdate": quota})
    accepted_rate = upd["accepted"] / loop_s if loop_s else 0.0
    return {"rows": rows, "accepted": upd["accepted"], "loop_s": round(loop_s, 2),
            "accepted_per_s": round(accepted_rate, 1),
            "emulator_cpu_ms_per_call": round(1000 * emu_cpu / max(1, upd["calls"]), 2),
            "sustains_q": accepted_rate >= 1.5 * quota}


# --- checks ---------------------------------------------------------------------------------


def check_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PASS/FAIL per target, with the numbers."""
    by = {(r["phase"], r["client"]): r for r in runs}
    checks = []
    for phase in PHASES:
        a, b, d = by.get((phase, "a")), by.get((phase, "b")), by.get((phase, "d"))
        if a is not None:
            # Strict pacing at Q spends a slot on every retry, and start-up is outside the loop:
            # the best goodput this run could have had.
            outside = a["wall_s"] - float(a.get("in_loop_s") or 0.0)
            bound = a["updated"] / (a["calls"] / a["quota"] + outside) / a["quota"]
            a["pacing_bound_over_q"] = round(bound, 4)
            checks.append(_check(f"(a) fixed rate, {phase}", [
                (f"goodput {a['goodput_over_q']:.3f}·Q >= {FIXED_GOODPUT}·Q",
                 a["goodput_over_q"] >= FIXED_GOODPUT),
                (f"throttled {100 * a['throttled_per_call']:.2f}% <= {100 * FIXED_THROTTLED:g}%",
                 a["throttled_per_call"] <= FIXED_THROTTLED),
                (f"failed rows {a['failed']} == 0", a["failed"] == 0),
            ], note=f"bound for strict pacing: {a['calls']} calls / Q + {outside:.1f}s outside "
                    f"the loop = {bound:.3f}·Q"))
        if b is not None:
            parts = [
                (f"goodput {b['goodput_over_q']:.3f}·Q >= {AUTO_GOODPUT}·Q",
                 b["goodput_over_q"] >= AUTO_GOODPUT),
                (f"throttled {100 * b['throttled_per_call']:.2f}% <= {100 * AUTO_THROTTLED:g}%",
                 b["throttled_per_call"] <= AUTO_THROTTLED),
            ]
            if d is not None:
                parts += [
                    (f"goodput {b['goodput']:.2f}/s > (d) {d['goodput']:.2f}/s",
                     b["goodput"] > d["goodput"]),
                    (f"throttled {100 * b['throttled_per_call']:.2f}% < (d) "
                     f"{100 * d['throttled_per_call']:.2f}%",
                     b["throttled_per_call"] < d["throttled_per_call"]),
                ]
            checks.append(_check(f"(b) auto rate, {phase}", parts))
    return checks


def _check(name: str, parts: list[tuple[str, bool]], note: str = "") -> dict[str, Any]:
    return {"target": name, "pass": all(ok for _, ok in parts), "note": note,
            "parts": [{"what": what, "pass": ok} for what, ok in parts]}


def format_checks(checks: list[dict[str, Any]]) -> str:
    lines = []
    for c in checks:
        verdict = "PASS" if c["pass"] else "FAIL"
        detail = "; ".join(("" if p["pass"] else "NOT ") + p["what"] for p in c["parts"])
        lines.append(f"{verdict}  {c['target']}: {detail}")
        if c.get("note"):
            lines.append(f"      ({c['note']})")
    return "\n".join(lines)


def format_runs(runs: list[dict[str, Any]], checks: list[dict[str, Any]]) -> str:
    verdicts = {}
    for c in checks:
        client = c["target"][1]
        phase = c["target"].rsplit(", ", 1)[1]
        verdicts[(phase, client)] = "PASS" if c["pass"] else "FAIL"
    headers = ["phase", "client", "rows", "updated", "failed", "wall s", "goodput/s",
               "/Q", "calls", "thr/call %", "CPU ms/upd", "RSS MB", "emu acc/s", "emu CPU",
               "target"]
    rows = []
    for r in runs:
        rows.append([
            r["phase"], r["name"], r["rows"], r["updated"], r["failed"], r["wall_s"],
            r["goodput"], r["goodput_over_q"], r["calls"], 100 * r["throttled_per_call"],
            r["cpu_ms_per_update"], r["peak_rss_mb"], r["emulator_accepted_per_s"],
            f"{100 * r['emulator_cpu_share']:.0f}%",
            verdicts.get((r["phase"], r["client"]), "-"),
        ])
    return table(headers, rows)


# --- the ceiling ----------------------------------------------------------------------------


def ceiling(emu: EmulatorProcess, workdir: Path, rows: int, bare_calls: int,
            startup_repeats: int, rounds: int) -> dict[str, Any]:
    """CPU per update of cognito-batch vs a bare boto3 loop, with no quota and no latency.

    The runs interleave, bare / cognito-batch / bare / ... / bare, and each cognito-batch run
    is judged against the mean of the bare runs either side of it: the machine is shared, and
    its speed drifts by more than the difference being measured. The verdict is the median
    of the rounds' ratios.
    """
    assert emu.admin is not None
    emu.admin.configure(ceiling=True, latency_ms=0, fault_rate=0, drop_rate=0)
    source = write_ceiling_input(workdir / "ceiling.csv", rows)
    result: dict[str, Any] = {"rows": rows, "bare_calls": bare_calls, "rounds": rounds,
                              "emulator": "ceiling: true, latency 0 ms"}

    def bare(calls: int, label: str) -> Measured:
        assert emu.admin is not None
        emu.admin.reset()
        out = workdir / f"{label}.json"
        m = run_measured([PYTHON, CLIENTS_PY, "bare", "--calls", str(calls), "--endpoint-url",
                          emu.endpoint_url, "--user-pool-id", emu.user_pool_id, "--out",
                          str(out)], workdir=workdir, label=label)
        if m.returncode != 0:
            raise RuntimeError(f"the bare loop failed ({m.returncode}): {m.stderr[-800:]}")
        return m

    log("ceiling: start-up CPU (python -m batch --help; bare loop with 0 calls) ...")
    helps = [run_measured(cognito_batch("--help"), workdir=workdir, label=f"help{i}")
             for i in range(startup_repeats)]
    bare0 = [bare(0, f"bare0-{i}") for i in range(startup_repeats)]
    startup_cb = statistics.median(m.cpu_s for m in helps)
    startup_bare = statistics.median(m.cpu_s for m in bare0)

    report = workdir / "ceiling.report.csv"
    rate = "100000"
    argv = cognito_batch("run", str(source), "--user-pool-id", emu.user_pool_id,
                         "--endpoint-url", emu.endpoint_url, "--rate", rate, "--workers",
                         "8", "--yes", "--quiet", "--fresh", "--report", str(report))
    log(f"ceiling: bare boto3 loop, {bare_calls} calls ...")
    bares = [bare(bare_calls, "bare-0")]
    runs: list[dict[str, Any]] = []
    for i in range(rounds):
        emu.admin.reset()
        log(f"ceiling: round {i + 1}/{rounds}: cognito-batch --rate {rate} --workers 8, "
            f"{rows} rows; then the bare loop again ...")
        m = run_measured(argv, workdir=workdir, label=f"ceiling-cb-{i}")
        stats = update_stats(emu.admin.stats())
        summary = read_summary(report)
        updated = int(summary.get("counts", {}).get("updated", 0))
        bares.append(bare(bare_calls, f"bare-{i + 1}"))
        around = (bares[-2].cpu_s + bares[-1].cpu_s) / 2
        bare_per = around / bare_calls
        bare_net = (around - startup_bare) / bare_calls
        cb_per = m.cpu_s / updated if updated else float("nan")
        cb_net = (m.cpu_s - startup_cb) / updated if updated else float("nan")
        runs.append({
            "exit_code": m.returncode, "updated": updated, "server_calls": stats["calls"],
            "wall_s": round(m.wall_s, 3), "in_loop_s": summary.get("duration_s"),
            "updates_per_s": round(updated / m.wall_s, 1) if m.wall_s else 0.0,
            "updates_per_s_in_loop": summary.get("achieved_rate"),
            "concurrency": summary.get("concurrency"),
            "cb_cpu_s": round(m.cpu_s, 3), "cb_user_s": round(m.user_s, 3),
            "cb_system_s": round(m.system_s, 3), "cb_peak_rss_mb": round(m.maxrss_mb, 1),
            "bare_cpu_s_around": [round(bares[-2].cpu_s, 3), round(bares[-1].cpu_s, 3)],
            "cb_cpu_ms_per_update": round(1000 * cb_per, 4),
            "bare_cpu_ms_per_call": round(1000 * bare_per, 4),
            "ratio_raw": round(cb_per / bare_per, 3),
            "ratio_net": round(cb_net / bare_net, 3),
        })
        log(f"  ratio net {runs[-1]['ratio_net']:.2f} (raw {runs[-1]['ratio_raw']:.2f}); "
            f"concurrency {runs[-1]['concurrency']}")

    def median(key: str) -> float:
        return round(statistics.median(r[key] for r in runs), 3)

    bare_walls = [b.wall_s for b in bares]
    result.update({
        "rate": rate, "runs": runs,
        "exit_codes": sorted({r["exit_code"] for r in runs}),
        "updated": min(r["updated"] for r in runs),
        "updates_per_s": median("updates_per_s"),
        "updates_per_s_in_loop": statistics.median(
            float(r["updates_per_s_in_loop"] or 0) for r in runs),
        "bare_calls_per_s": round(bare_calls * len(bares) / sum(bare_walls), 1),
        "bare_cpu_s": [round(b.cpu_s, 3) for b in bares],
        "startup_cpu_s_batch_help": round(startup_cb, 3),
        "startup_cpu_s_bare_0_calls": round(startup_bare, 3),
        "startup_samples": {"batch_help": [round(x.cpu_s, 3) for x in helps],
                            "bare_0_calls": [round(x.cpu_s, 3) for x in bare0]},
        "cb_cpu_ms_per_update": median("cb_cpu_ms_per_update"),
        "bare_cpu_ms_per_call": median("bare_cpu_ms_per_call"),
        "ratio_raw": median("ratio_raw"),
        "ratio_net_own_startup": median("ratio_net"),
        "ratios_net": [r["ratio_net"] for r in runs],
        "target_ratio": CEILING_RATIO,
    })
    result["pass"] = result["ratio_net_own_startup"] <= CEILING_RATIO
    return result


def format_ceiling(c: dict[str, Any]) -> str:
    lines = [
        f"Ceiling (emulator {c['emulator']}; cognito-batch --rate {c['rate']} --workers 8 on "
        f"{c['rows']} rows, {c['rounds']} rounds, each between two runs of a bare boto3 loop "
        f"of {c['bare_calls']} calls):",
        f"  cognito-batch: {c['updates_per_s']:.0f} updates/s whole command "
        f"({c['updates_per_s_in_loop']:.0f} in its own loop), "
        f"{c['cb_cpu_ms_per_update']:.3f} ms CPU/update (medians), exit {c['exit_codes']}, "
        f"concurrency {[r['concurrency'] for r in c['runs']]}",
        f"  bare boto3:    {c['bare_calls_per_s']:.0f} calls/s, "
        f"{c['bare_cpu_ms_per_call']:.3f} ms CPU/call (median; CPU s {c['bare_cpu_s']})",
        f"  start-up CPU:  python -m batch --help {c['startup_cpu_s_batch_help']:.2f}s; bare "
        f"loop with 0 calls {c['startup_cpu_s_bare_0_calls']:.2f}s (medians)",
        f"  ratio RAW (whole-process CPU per update / per call, start-up included): "
        f"{c['ratio_raw']:.2f} (median)",
        f"  ratio NET (each side minus its own start-up: `batch --help` for cognito-batch, "
        f"0-call loop for boto3): {c['ratio_net_own_startup']:.2f} (median of "
        f"{c['ratios_net']})",
        f"  {'PASS' if c['pass'] else 'FAIL'}  ceiling CPU ratio (NET) "
        f"{c['ratio_net_own_startup']:.2f} <= {c['target_ratio']}",
    ]
    return "\n".join(lines)


# --- peak RSS -------------------------------------------------------------------------------


def rss(emu: EmulatorProcess, workdir: Path, small: int, large: int) -> dict[str, Any]:
    assert emu.admin is not None
    emu.admin.configure(ceiling=True, latency_ms=0, fault_rate=0, drop_rate=0)

    def one(rows: int) -> dict[str, Any]:
        assert emu.admin is not None
        source = write_ceiling_input(workdir / f"rss{rows}.csv", rows)
        report = workdir / f"rss{rows}.report.csv"
        emu.admin.reset()
        log(f"rss: cognito-batch at the ceiling, {rows} rows ...")
        m = run_measured(cognito_batch("run", str(source), "--user-pool-id", emu.user_pool_id,
                                       "--endpoint-url", emu.endpoint_url, "--rate", "10000",
                                       "--workers", "8", "--yes", "--quiet", "--fresh",
                                       "--report", str(report)),
                         workdir=workdir, label=f"rss{rows}", timeout=3600)
        summary = read_summary(report)
        return {"rows": rows, "exit_code": m.returncode, "wall_s": round(m.wall_s, 1),
                "updated": int(summary.get("counts", {}).get("updated", 0)),
                "peak_rss_mb": round(m.maxrss_mb, 1)}

    first = one(small)
    rate = first["updated"] / first["wall_s"] if first["wall_s"] else 0.0
    estimate_s = large / rate if rate else float("inf")
    chosen = large
    if estimate_s > RSS_SECONDS * 1.1:
        chosen = max(small * 2, int(rate * RSS_SECONDS) // 1000 * 1000)
    second = one(chosen)
    return {"small": first, "large": second, "asked_rows": large,
            "estimate_s_for_asked": round(estimate_s), "rate_small": round(rate, 1),
            "ratio": round(second["peak_rss_mb"] / first["peak_rss_mb"], 3),
            "pass": second["peak_rss_mb"] <= RSS_RATIO * first["peak_rss_mb"]}


def format_rss(r: dict[str, Any]) -> str:
    s, g = r["small"], r["large"]
    lines = ["Peak RSS at the ceiling (cognito-batch --rate 10000 --workers 8):"]
    if g["rows"] != r["asked_rows"]:
        lines.append(
            f"  NOTE {r['asked_rows']} rows would take ~{r['estimate_s_for_asked']}s "
            f"at {r['rate_small']}/s; used {g['rows']} rows (~{RSS_SECONDS:.0f}s)"
        )
    lines += [
        f"  {s['rows']:>7} rows: peak RSS {s['peak_rss_mb']:.1f} MB ({s['wall_s']}s, exit "
        f"{s['exit_code']})",
        f"  {g['rows']:>7} rows: peak RSS {g['peak_rss_mb']:.1f} MB ({g['wall_s']}s, exit "
        f"{g['exit_code']})",
        f"  {'PASS' if r['pass'] else 'FAIL'}  ratio {r['ratio']:.2f} (target: the same within "
        f"noise, <= {RSS_RATIO})",
    ]
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="cognito-batch throughput, throttles and CPU against hand-written boto3 "
        "loops, on the local emulator (see bench/README.md)."
    )
    add = parser.add_argument
    add("--rows", type=int, default=3000, help="input rows and seeded users (default 3000)")
    add("--quota", type=float, default=50.0, help="UserUpdate quota Q, requests/s (default 50)")
    add("--latency-ms", type=float, default=20.0, help="emulator latency (default 20)")
    add("--clients", default="abcd", help="which of a, b, c, d to run (default abcd)")
    add("--phases", default="clean,faults", help="clean, faults or both (default both)")
    add(
        "--compare-algorithms",
        action="store_true",
        help="also run --rate auto with bench/controllers.py's AIMD and CUBIC (+~4 min)",
    )
    add("--skip-probe", action="store_true", help="skip the emulator capacity probe")
    add("--scenarios", default="idle,shared,raised",
        help="idle (the clients above on an idle quota), shared (Q=50 with a live app), raised "
        "(Q=150 at 100 ms); default all three")
    add("--sharing-rounds", type=int, default=5, help="rounds of shared and raised (median)")
    add("--shared-seed", type=int, default=1,
        help="the neighbour's seed in the first shared round; round i uses seed + i")
    add("--shared-clients", default="default,auto,quota,old,pool",
        help=f"of {','.join(sharing.SHARED_CLIENTS)}")
    add("--shared-rows", type=int, default=2300, help="rows per shared run (~80 s)")
    add("--raised-rows", type=int, default=6000, help="rows per raised run (~40 s)")
    add("--raised-latencies", default="100",
        help="emulator latencies (ms) of the raised scenario, e.g. 1000,100 (issue 22 (b))")
    add("--raised-clients", default=",".join(sharing.RAISED_CLIENTS),
        help=f"of {','.join(sharing.RAISED_CLIENTS)}")
    add("--raised-undo", action="store_true",
        help="raised: cognito-batch with --undo (before-images on, a real pool's default)")
    add("--pool-rows", type=int, default=0,
        help="raised: rows for the plain boto3 loop, when fewer (0: the same)")
    add("--skip-ceiling", action="store_true", help="skip the ceiling (CPU per update)")
    add("--ceiling-rows", type=int, default=10000, help="rows per ceiling round (10000)")
    add("--ceiling-rounds", type=int, default=3, help="cognito-batch runs at the ceiling (3)")
    add("--bare-calls", type=int, default=5000)
    add("--startup-repeats", type=int, default=3)
    add("--rss", action="store_true", help="also measure peak RSS on a small and large input")
    add(
        "--rss-rows",
        type=int,
        default=300_000,
        help=f"the large input (default 300000; shrunk to what finishes in ~{RSS_SECONDS:.0f}s)",
    )
    add("--out", type=Path, default=RESULTS / "throughput.json")
    add("--keep", action="store_true", help="keep the temporary folder (logs, reports)")
    args = parser.parse_args(argv)
    clients = [c for c in args.clients if c in CLIENTS]
    if args.compare_algorithms:
        clients += [c for c in ALGORITHMS if c not in clients]
    phases = [p.strip() for p in args.phases.split(",") if p.strip() in PHASES]
    scenarios = {s.strip() for s in args.scenarios.split(",")}
    if "idle" not in scenarios:
        clients, phases = [], []
    seeded = max(args.rows, args.shared_rows if "shared" in scenarios else 0,
                 args.raised_rows if "raised" in scenarios else 0)

    started = time.perf_counter()
    # mkdtemp, not TemporaryDirectory: the latter's finalizer removed a --keep folder at exit.
    workdir = Path(tempfile.mkdtemp(prefix="cognito-batch-bench-"))
    payload: dict[str, Any] = {
        "benchmark": "throughput", "machine": machine(), "versions": versions(),
        "uptime": uptime(),
        "code_at_start": code_state(),
        "settings": {"quota": args.quota, "latency_ms": args.latency_ms, "rows": args.rows,
                     "users": args.rows, "phases": {p: PHASES[p] for p in phases},
                     "clients": {c: CLIENTS[c] for c in clients}},
    }
    try:
        users, all_rows = write_inputs(workdir, seeded)
        source = head(all_rows, workdir / "input.idle.csv", args.rows)
        emu_args = [
            "--quota",
            f"update={args.quota:g}",
            "--latency-ms",
            f"{args.latency_ms:g}",
            "--create-pool",
            "bench",
            "--default-schema",
            "--users",
            str(users),
        ]
        log(f"starting the emulator (Q={args.quota:g}/s, {args.latency_ms:g} ms, "
            f"{args.rows} users) ...")
        with EmulatorProcess(emu_args, workdir) as emu:
            assert emu.admin is not None
            log(f"  ready in {emu.seconds_to_ready:.1f}s at {emu.endpoint_url}")
            payload["emulator_ready_s"] = round(emu.seconds_to_ready, 2)
            if not args.skip_probe:
                log("probe: can the emulator accept more than Q updates/s? ...")
                payload["probe"] = probe_capacity(emu, source, workdir, min(args.rows, 1000),
                                                  args.quota)
                log(f"  {payload['probe']}")
            runs = []
            for phase in phases:
                emu.admin.configure(**PHASES[phase])
                log(f"phase {phase}: {PHASES[phase]}")
                for client in clients:
                    runs.append(run_client(client, phase, emu, source, workdir, args.quota,
                                           args.rows))
                    payload["runs"] = runs
                    save_json(args.out, payload)
            checks = check_runs(runs)
            payload["checks"] = checks
            if "shared" in scenarios:
                shared_source = head(all_rows, workdir / "input.shared.csv", args.shared_rows)
                payload["shared"] = sharing.shared(
                    emu, workdir, shared_source, args.sharing_rounds,
                    [c for c in args.shared_clients.split(",") if c in sharing.SHARED_CLIENTS],
                    seed=args.shared_seed)
                save_json(args.out, payload)
            if "raised" in scenarios:
                raised_source = head(all_rows, workdir / "input.raised.csv", args.raised_rows)
                raised_clients = [c for c in args.raised_clients.split(",")
                                  if c in sharing.RAISED_CLIENTS]
                payload["raised_runs"] = [sharing.raised(
                    emu, workdir, raised_source, args.sharing_rounds, raised_clients,
                    latency_ms=float(ms), extra=("--undo",) if args.raised_undo else (),
                    pool_rows=args.pool_rows) for ms in args.raised_latencies.split(",")]
                payload["raised"] = payload["raised_runs"][-1]
                save_json(args.out, payload)
                emu.admin.configure(quotas={"UserUpdate": args.quota},
                                    latency_ms=args.latency_ms)
            if not args.skip_ceiling:
                payload["ceiling"] = ceiling(emu, workdir, args.ceiling_rows, args.bare_calls,
                                             args.startup_repeats, args.ceiling_rounds)
                save_json(args.out, payload)
            if args.rss:
                payload["rss"] = rss(emu, workdir, 3000, args.rss_rows)
    finally:
        payload["total_s"] = round(time.perf_counter() - started, 1)
        payload["uptime_at_end"] = uptime()
        payload["code_at_end"] = code_state()
        save_json(args.out, payload)
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    q = args.quota
    print(
        f"cognito-batch throughput: Q = {q:g} UserUpdate/s, {args.latency_ms:g} ms latency, "
        f"{args.rows} rows, emulator in its own process; each client its own process"
    )
    print(
        "goodput = rows updated / whole-command wall seconds (start-up and drain included); "
        "thr/call = throttled / calls (emulator); CPU and RSS of the client process; "
        "emu acc/s = updates the emulator accepted per wall second; emu CPU = emulator CPU "
        "seconds / wall seconds"
    )
    if "probe" in payload:
        p = payload["probe"]
        verdict = "sustains" if p["sustains_q"] else "CANNOT clearly sustain"
        print(
            f"emulator capacity probe (no quota, cognito-batch 16 workers, {p['rows']} rows): "
            f"{p['accepted_per_s']:.0f} updates/s accepted, emulator CPU "
            f"{p['emulator_cpu_ms_per_call']:.2f} ms/call: it {verdict} Q = {q:g}/s"
        )
    print()
    print(format_runs(payload.get("runs", []), payload.get("checks", [])))
    print()
    print(format_checks(payload.get("checks", [])))
    if "shared" in payload:
        print()
        print(sharing.format_shared(payload["shared"]))
    for result in payload.get("raised_runs", [payload["raised"]] if "raised" in payload else []):
        print()
        print(sharing.format_raised(result))
    if "ceiling" in payload:
        print()
        print(format_ceiling(payload["ceiling"]))
    print()
    if "rss" in payload:
        print(format_rss(payload["rss"]))
    else:
        print(
            "Peak RSS flat: not run (--rss; at the ceiling rate 300,000 rows take ~15-20 min, "
            "so by default it is off; --rss shrinks the large input to ~3 min)"
        )
    start, end = payload["code_at_start"], payload["code_at_end"]
    print(
        f"\ncode: commit {start['commit']}, batch/ sha256 {start['batch_sha256']}"
        f"{' (uncommitted changes)' if start['batch_dirty'] == 'true' else ''}"
    )
    if start != end:
        print(
            f"WARNING: batch/ changed during the run (now {end['commit']}, "
            f"{end['batch_sha256']}): later runs used different code than earlier ones"
        )
    print(f"uptime at start: {payload['uptime']}\nuptime at end:   {payload['uptime_at_end']}")
    print(f"total {payload['total_s']:.0f}s; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
