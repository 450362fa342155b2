"""--log-format json: every stderr line one JSON object with stable fields, never a value;
the text default; --version."""

from __future__ import annotations

import csv
import io
import json
import logging
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

import batch.view.progress
from batch.cli import main
from batch.models import RowResult, Status
from batch.view.logs import EventLog, route_logging
from batch.view.progress import Progress

REQUIRED = {"ts", "level", "event"}


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def json_lines(err: str) -> list[dict[str, Any]]:
    lines = err.splitlines()
    assert lines, "nothing on stderr"
    records = [json.loads(line) for line in lines]  # every line parses, or the test fails
    for record in records:
        assert REQUIRED <= set(record) and record["level"] in ("info", "warning", "error")
    return records


def test_json_run_every_line_parses_and_holds_no_value(
    make_pool: Any, emulator: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN users, and an input whose values are distinctive (some invalid, one unknown user)
    pool = make_pool(users=[{"username": f"u{i:03d}"} for i in range(1, 31)])
    rows = [{"username": f"u{i:03d}", "email": f"person{i}@hidden.example",
             "tier": f"secret-tier-{i}", "level": str(i % 9 + 1)}
            for i in range(1, 31)]
    rows[4]["email"] = "not-an-email-zqx"
    rows[5]["level"] = "99999"
    rows[6]["tier"] = "x" * 40
    rows.append({"username": "nobody-xq", "email": "nobody@hidden.example", "tier": "t",
                 "level": "1"})
    source = write_rows(tmp_path / "in.csv", rows)
    monkeypatch.setattr(batch.view.progress, "JSON_INTERVAL", 0.0)  # a progress event per result
    capsys.readouterr()
    # WHEN the job runs with --log-format json
    code = main(["run", str(source), "--user-pool-id", pool, "--endpoint-url",
                 emulator.endpoint_url, "--report", str(tmp_path / "r.csv"), "--rate", "500",
                 "--yes", "--log-format", "json"])
    err = capsys.readouterr().err
    # THEN every line is a JSON object, the run is told start to summary
    records = json_lines(err)
    events = [r["event"] for r in records]
    assert code == 1
    assert events[0] == "start" and events[-1] == "summary" and "plan" in events
    assert events.count("progress") >= 1
    summary = records[-1]
    assert summary["exit_code"] == 1 and summary["counts"]["updated"] == 27
    assert summary["counts"]["invalid"] == 3 and summary["counts"]["failed"] == 1
    progress = [r for r in records if r["event"] == "progress"][-1]
    assert {"done", "total", "percent", "rows_per_s", "eta_s", "throttles", "rate"} <= set(progress)
    # AND no line holds any of the input's attribute values
    values = {v for row in rows for k, v in row.items() if k != "username"}
    for line in err.splitlines():
        for value in values:
            if len(value) > 2:  # "1".."9" are levels and also appear as counts
                assert value not in line, (value, line)


def test_json_errors_are_one_event(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a missing input, and a flag argparse refuses
    capsys.readouterr()
    # WHEN each runs with --log-format json
    missing = main(["run", str(tmp_path / "nope.csv"), "--user-pool-id", "us-east-1_x",
                    "--log-format", "json"])
    first = capsys.readouterr().err
    usage = main(["run", "x.csv", "--log-format", "json", "--workers", "many"])
    second = capsys.readouterr().err
    # THEN each is exactly one error event with the exit code
    for code, err in ((missing, first), (usage, second)):
        records = json_lines(err)
        assert code == 2 and len(records) == 1
        assert records[0]["event"] == "error" and records[0]["exit_code"] == 2
    assert "nope.csv" in json_lines(first)[0]["message"]


def test_text_is_the_default(
    make_pool: Any, emulator: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a small job
    pool = make_pool(users=[{"username": "u1"}])
    source = write_rows(tmp_path / "in.csv", [{"username": "u1", "tier": "gold"}])
    capsys.readouterr()
    # WHEN it runs without --log-format
    code = main(["run", str(source), "--user-pool-id", pool, "--endpoint-url",
                 emulator.endpoint_url, "--report", str(tmp_path / "r.csv"), "--yes"])
    err = capsys.readouterr().err
    # THEN the summary is the human one, and no line is JSON
    assert code == 0
    assert err.startswith("cognito-batch: 1 rows in ")
    assert not any(line.startswith("{") for line in err.splitlines())


def test_progress_event_fields_with_an_injected_clock() -> None:
    # GIVEN a progress counter on a JSON log and a clock that moves 6 s per result
    out = io.StringIO()
    now = [0.0]
    progress = Progress(4, stream=out, log=EventLog(out, format="json"), clock=lambda: now[0],
                        extra=lambda: {"rate": 25.0, "throttles": 3})
    # WHEN two results arrive
    for row in (1, 2):
        now[0] += 6.0
        progress.add(RowResult(row, f"u{row}", Status.UPDATED))
    # THEN each made one progress event with the documented fields
    records = json_lines(out.getvalue())
    assert [r["done"] for r in records] == [1, 2]
    last = records[-1]
    assert (last["total"], last["percent"], last["throttles"], last["rate"]) == (4, 50.0, 3, 25.0)
    assert last["counts"] == {"updated": 2} and last["eta_s"] == 12.0


def test_library_warnings_become_warning_events() -> None:
    # GIVEN the logging module routed through a JSON log
    out = io.StringIO()
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        route_logging(EventLog(out, format="json"))
        # WHEN a library warns
        logging.getLogger("urllib3.connectionpool").warning("Connection pool is full")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    # THEN it is one warning event naming the logger
    (record,) = json_lines(out.getvalue())
    assert record["event"] == "warning" and record["logger"] == "urllib3.connectionpool"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN / WHEN --version is asked for
    code = main(["--version"])
    # THEN the installed package's version is printed
    assert code == 0
    assert capsys.readouterr().out.strip() == f"cognito-batch {metadata.version('cognito-batch')}"


def test_sigterm_on_an_s3_input_is_told_in_json(
    emulator: Any, make_pool: Any, make_bucket: Any, s3_client: Any, tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys
    import time

    # GIVEN a run in its own process over an S3 CSV, logging JSON
    n = 300
    pool = make_pool(users=[{"username": f"k{i:04d}"} for i in range(1, n + 1)])
    emulator.configure(quotas={"UserUpdate": 1000}, latency_ms=5)
    bucket = make_bucket()
    body = "username,tier\n" + "".join(f"k{i:04d},t{i % 7}\n" for i in range(1, n + 1))
    s3_client.put_object(Bucket=bucket, Key="in.csv", Body=body.encode())
    report = tmp_path / "out.csv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "batch", "run", f"s3://{bucket}/in.csv", "--user-pool-id", pool,
         "--endpoint-url", emulator.endpoint_url, "--report", str(report), "--rate", "100",
         "--yes", "--log-format", "json"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    journal = Path(str(report) + ".journal")
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if journal.exists() and journal.read_bytes().count(b"\n") >= 30:
            break
        time.sleep(0.01)
    # WHEN the scheduler sends SIGTERM
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    # THEN exit 143, and the stop is told in JSON lines like everything else
    assert proc.returncode == 143, err
    records = json_lines(err.decode())
    signals = [r for r in records if r["event"] == "warning" and r.get("signal")]
    assert len(signals) == 1 and "SIGTERM" in signals[0]["message"]
    assert records[-1]["event"] == "summary" and records[-1]["exit_code"] == 143
    assert records[-1]["stopped"] == "interrupted by SIGTERM"
