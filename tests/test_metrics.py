"""--metrics: CloudWatch EMF records checked against the published specification, and the
Prometheus textfile's last-success semantics, owner-only and never through a symlink."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from batch.cli import main
from batch.config import build_config
from batch.errors import UsageError
from batch.models import JobResult
from batch.view.metrics import (
    LAST_SUCCESS,
    EmfMetrics,
    PrometheusTextfile,
    RunMetrics,
    Snapshot,
    emf_record,
    snapshot_live,
    snapshot_of,
    split_metrics_flag,
)
from batch.view.progress import Tick

ROOT = Path(__file__).resolve().parent.parent

# -- the EMF specification, as rules ----------------------------------------------------------
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
    "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second",
    "Terabits/Second", "Count/Second", "None",
}


def _number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def emf_violations(line: str) -> list[str]:
    """Every rule of the specification a log line breaks (empty: a valid EMF record)."""
    errors: list[str] = []
    if line != line.strip() or not line.startswith("{"):
        return ["leading or trailing data around the JSON object"]
    try:
        root = json.loads(line)
    except ValueError as exc:
        return [f"not JSON: {exc}"]
    if not isinstance(root, dict):
        return ["root is not an object"]
    aws = root.get("_aws")
    if not isinstance(aws, dict):
        return ["no _aws metadata object"]
    ts = aws.get("Timestamp")
    if not (isinstance(ts, int) and not isinstance(ts, bool) and ts >= 0):
        errors.append("_aws.Timestamp is not a non-negative integer (ms since the epoch)")
    directives = aws.get("CloudWatchMetrics")
    if not isinstance(directives, list):
        return [*errors, "_aws.CloudWatchMetrics is not an array"]
    for d in directives:
        if not isinstance(d, dict):
            errors.append("a MetricDirective is not an object")
            continue
        ns = d.get("Namespace")
        if not (isinstance(ns, str) and 1 <= len(ns) <= 1024):
            errors.append("Namespace is not a string of 1-1024 characters")
        dims = d.get("Dimensions")
        if not (isinstance(dims, list) and len(dims) >= 1):
            errors.append("Dimensions is not a non-empty array of DimensionSets")
            dims = []
        for dset in dims:
            if not (isinstance(dset, list) and len(dset) <= 30):
                errors.append("a DimensionSet is not an array of at most 30 keys")
                continue
            for key in dset:
                if not (isinstance(key, str) and 1 <= len(key) <= 250):
                    errors.append(f"dimension reference {key!r} is not a 1-250 char string")
                elif not isinstance(root.get(key), str):
                    errors.append(f"dimension {key!r} is not a string member of the root")
                elif len(root[key]) > 1024:
                    errors.append(f"dimension {key!r} is longer than 1024 characters")
        metrics = d.get("Metrics")
        if not (isinstance(metrics, list) and len(metrics) <= 100):
            errors.append("Metrics is not an array of at most 100 MetricDefinitions")
            metrics = []
        for m in metrics:
            name = m.get("Name") if isinstance(m, dict) else None
            if not (isinstance(name, str) and 1 <= len(name) <= 1024):
                errors.append("a MetricDefinition has no Name of 1-1024 characters")
                continue
            value = root.get(name)
            if not (_number(value) or (isinstance(value, list) and 0 < len(value) <= 100
                                       and all(_number(v) for v in value))):
                errors.append(f"metric {name!r} is not a number (or array of numbers) member")
            if "Unit" in m and m["Unit"] not in UNITS:
                errors.append(f"metric {name!r} has unit {m['Unit']!r}")
            if "StorageResolution" in m and m["StorageResolution"] not in (1, 60):
                errors.append(f"metric {name!r} has StorageResolution {m['StorageResolution']}")
    return errors


def test_the_checker_catches_what_the_specification_forbids() -> None:
    # GIVEN a valid record, and copies each breaking one rule
    good = emf_record(Snapshot({"updated": 3}, 4, 1, 2.5, 1.2, 0), pool_id="us-east-1_A",
                      job_name="nightly", timestamp_ms=1_700_000_000_000)
    broken = []
    for change in (
        lambda r: r["_aws"].pop("Timestamp"),
        lambda r: r.update(PoolId=7),
        lambda r: r.pop("Calls"),
        lambda r: r.update(Calls="4"),
        lambda r: r["_aws"]["CloudWatchMetrics"][0]["Metrics"][0].update(Unit="Rows"),
        lambda r: r["_aws"]["CloudWatchMetrics"][0].update(Dimensions=[]),
    ):
        record = json.loads(json.dumps(good))
        change(record)
        broken.append(json.dumps(record))
    # THEN the valid one passes and every broken one is caught
    assert emf_violations(json.dumps(good)) == []
    assert all(emf_violations(line) for line in broken)
    assert emf_violations(" " + json.dumps(good))  # leading data


def test_every_emf_record_of_the_demo_run_follows_the_specification(
    emulator: Any, make_pool: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the demo pool seeded from the sample data
    from batch.commands.demo import seed_rows

    pool = make_pool(users=seed_rows(ROOT / "sample_data" / "seed_users.csv"),
                     auto_verified=["email"])
    emulator.configure(quotas={"UserUpdate": 1000})
    capsys.readouterr()
    # WHEN the demo job runs with --metrics emf, the flag before other options
    code = main(["run", "--metrics", "emf", "--job", str(ROOT / "jobs" / "demo.toml"),
                 "--user-pool-id", pool, "--endpoint-url", emulator.endpoint_url,
                 "--report", str(tmp_path / "demo.csv"), "--rate", "400", "--yes",
                 "--log-format", "json"])
    out, err = capsys.readouterr()
    # THEN stdout holds only EMF records, each valid; the logs stayed on stderr
    lines = out.splitlines()
    assert code == 1 and lines
    for line in lines:
        assert emf_violations(line) == [], line
    assert all('"_aws"' not in e for e in err.splitlines())
    last = json.loads(lines[-1])
    assert last["ExitCode"] == 1 and last["Phase"] == "end"
    assert (last["RowsUpdated"], last["RowsInvalid"], last["RowsFailed"]) == (299, 6, 1)
    assert last["PoolId"] == pool and last["JobName"] == "demo"
    assert last["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["PoolId", "JobName"]]
    # AND no attribute value of the input is anywhere in them
    with open(ROOT / "sample_data" / "demo_users.csv", encoding="utf-8") as handle:
        values = {v for row in csv.DictReader(handle) for k, v in row.items()
                  if k != "username" and v and len(v) > 3}
    assert values and not [v for v in values if v in out]


def test_a_progress_record_has_the_figures_and_no_exit_code() -> None:
    # GIVEN live counters at a progress tick
    tick = Tick(done=52, total=100, elapsed_s=10.0, counts={"updated": 50, "failed": 2},
                calls=60, throttles=3)
    lines: list[str] = []

    class Sink:
        def write(self, text: str) -> None:
            lines.append(text)

        def flush(self) -> None:
            pass

    emf = EmfMetrics(pool_id="eu-west-1_X", job_name="nightly", stream=Sink(),  # type: ignore[arg-type]
                     clock=lambda: 1234.5)
    # WHEN the lead's per-tick hook is called
    emf.progress(snapshot_live(tick))
    # THEN one valid line, with the figures so far and no ExitCode metric
    (line,) = lines
    assert line.endswith("\n") and emf_violations(line.rstrip("\n")) == []
    record = json.loads(line)
    assert record["_aws"]["Timestamp"] == 1234500
    assert (record["RowsUpdated"], record["RowsFailed"], record["Calls"]) == (50, 2, 60)
    assert record["AchievedRate"] == 5.0 and record["Phase"] == "progress"
    assert "ExitCode" not in record


def test_dimensions_are_bounded_printable_ascii() -> None:
    record = emf_record(snapshot_of({}, 2), pool_id="p", job_name="nuit-é\n" + "x" * 400,
                        timestamp_ms=0)
    assert emf_violations(json.dumps(record)) == []
    assert record["JobName"].isascii() and len(record["JobName"]) == 250
    assert record["ExitCode"] == 2 and record["RowsUpdated"] == 0


# -- Prometheus textfile ---------------------------------------------------------------------

SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-z_]+="[^"\n]*"(,[a-z_]+="[^"\n]*")*\})? '
                    r"-?[0-9.e+]+$")


def _value(text: str, name: str) -> float | None:
    match = re.search(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


def _finish(path: Path, code: int, now: float) -> str:
    sink = PrometheusTextfile(path, pool_id="us-east-1_A", job_name="nightly", clock=lambda: now)
    sink.finish(snapshot_of({"counts": {"updated": 5}, "calls": 6, "duration_s": 2.0}, code))
    return path.read_text(encoding="utf-8")


def test_last_success_moves_only_when_a_run_finished(tmp_path: Path) -> None:
    path = tmp_path / "textfile" / "cognito.prom"
    # GIVEN a run that finished at t=1000
    first = _finish(path, 0, 1000.0)
    assert _value(first, LAST_SUCCESS) == 1000.0
    # WHEN the next one stops with exit 2 at t=2000
    second = _finish(path, 2, 2000.0)
    # THEN the last success is kept, the last run and its exit code are new
    assert _value(second, LAST_SUCCESS) == 1000.0
    assert _value(second, "cognito_batch_last_run_timestamp_seconds") == 2000.0
    assert _value(second, "cognito_batch_last_exit_code") == 2.0
    # AND a finished run with failed rows (exit 1) is a success: every row was decided
    assert _value(_finish(path, 1, 3000.0), LAST_SUCCESS) == 3000.0
    for line in path.read_text().splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or SAMPLE.match(line)
    assert 'cognito_batch_last_rows{job_name="nightly",pool_id="us-east-1_A",status="updated"} 5' \
        in path.read_text()


def test_a_failed_first_run_has_no_last_success(tmp_path: Path) -> None:
    text = _finish(tmp_path / "c.prom", 143, 5.0)
    assert LAST_SUCCESS not in text
    assert _value(text, "cognito_batch_last_exit_code") == 143.0


def test_textfile_is_owner_only_and_replaces_a_symlink_never_its_target(tmp_path: Path) -> None:
    # GIVEN a symlink planted where the textfile goes, pointing at another file
    target = tmp_path / "other.txt"
    target.write_text(f'{LAST_SUCCESS}{{job_name="nightly",pool_id="us-east-1_A"}} 99\n')
    path = tmp_path / "c.prom"
    path.symlink_to(target)
    # WHEN a run that stopped writes the textfile
    text = _finish(path, 2, 10.0)
    # THEN the other file is untouched and not read; the textfile is a private regular file
    assert target.read_text().endswith(" 99\n")
    assert LAST_SUCCESS not in text
    mode = os.lstat(path).st_mode
    assert stat.S_ISREG(mode) and stat.S_IMODE(mode) == 0o600


def test_a_run_writes_the_textfile(emulator: Any, make_pool: Any, tmp_path: Path) -> None:
    # GIVEN two users and a file updating them
    pool = make_pool(users=[{"username": "alice"}, {"username": "bob"}])
    source = tmp_path / "in.csv"
    source.write_text("username,tier\nalice,gold\nbob,gold\n", encoding="utf-8")
    prom = tmp_path / "metrics" / "cognito.prom"
    # WHEN it runs with the flag's two words before INPUT
    code = main(["run", "--metrics", "prometheus-textfile", str(prom), str(source),
                 "--user-pool-id", pool, "--endpoint-url", emulator.endpoint_url,
                 "--report", str(tmp_path / "out.csv"), "--quiet", "--yes"])
    # THEN the run succeeded and says so in the file
    text = prom.read_text(encoding="utf-8")
    assert code == 0
    assert _value(text, LAST_SUCCESS) is not None
    assert f'pool_id="{pool}"' in text and 'job_name="cognito-batch"' in text
    # AND the summary does not record where metrics went (a retry replays the summary)
    summary = json.loads((tmp_path / "out.csv.summary.json").read_text())
    assert "metrics" not in summary["settings"]


def test_a_metrics_file_that_cannot_be_written_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "is-a-file"
    folder.write_text("")
    metrics = ("prometheus-textfile", str(folder / "c.prom"))
    config = build_config(None, {"input": "x.csv", "user_pool_id": "us-east-1_A",
                                 "metrics": metrics})
    run_metrics = RunMetrics.of(config, job_file=None)
    assert run_metrics is not None
    run_metrics.finish(JobResult(0, {}, tmp_path / "r.csv"))
    assert "metrics not written" in caplog.text


# -- the setting -------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "spec", "rest"), [
    (["emf"], ("emf",), []),
    (["emf", "in.csv"], ("emf",), ["in.csv"]),
    (["prometheus-textfile", "a.prom"], ("prometheus-textfile", "a.prom"), []),
    (["prometheus-textfile", "a.prom", "in.csv"], ("prometheus-textfile", "a.prom"), ["in.csv"]),
    (["prometheus-textfile=a.prom", "in.csv"], ("prometheus-textfile", "a.prom"), ["in.csv"]),
])
def test_the_flag_takes_as_many_words_as_its_kind(
    given: list[str], spec: tuple[str, ...], rest: list[str]
) -> None:
    assert split_metrics_flag(given) == (spec, rest)


@pytest.mark.parametrize("metrics", [
    ("statsd",), ("emf", "x"), ("prometheus-textfile",), ("prometheus-textfile", "s3://b/k"),
])
def test_bad_metrics_settings_are_usage_errors(metrics: tuple[str, ...]) -> None:
    with pytest.raises(UsageError, match="--metrics"):
        build_config(None, {"input": "x.csv", "user_pool_id": "p_1", "metrics": metrics})


def test_a_job_file_names_metrics_relative_to_itself(tmp_path: Path) -> None:
    job = tmp_path / "jobs" / "nightly.toml"
    job.parent.mkdir()
    job.write_text('input = "in.csv"\nuser_pool_id = "p_1"\n'
                   'metrics = ["prometheus-textfile", "../prom/c.prom"]\n')
    assert build_config(str(job), {}).metrics == (
        "prometheus-textfile", os.path.normpath(tmp_path / "prom" / "c.prom"))
    job.write_text('input = "in.csv"\nuser_pool_id = "p_1"\nmetrics = ["emf"]\n')
    assert build_config(str(job), {}).metrics == ("emf",)
    assert "metrics" not in build_config(str(job), {}).public()


def test_a_usage_error_in_the_flag_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "in.csv", "--metrics", "emf", "extra", "--user-pool-id", "p_1"]) == 2
    assert "--metrics" in capsys.readouterr().err


def test_a_textfile_path_holding_someone_elses_file_is_refused(tmp_path: Path) -> None:
    # GIVEN a file at the textfile's path that this tool did not write
    other = tmp_path / "node.prom"
    other.write_text("# HELP node_load1 1m load average.\nnode_load1 0.5\n")
    config = build_config(None, {"input": "x.csv", "user_pool_id": "us-east-1_A",
                                 "metrics": ("prometheus-textfile", str(other))})
    # WHEN the run's metrics are opened THEN refused before the run, the file kept
    with pytest.raises(UsageError, match="not a cognito-batch metrics file"):
        RunMetrics.of(config, job_file=None)
    assert other.read_text().startswith("# HELP node_load1")
    # AND a textfile this tool wrote is replaced as before
    ours = tmp_path / "ours.prom"
    metrics = RunMetrics.of(build_config(None, {"input": "x.csv", "user_pool_id": "us-east-1_A",
                            "metrics": ("prometheus-textfile", str(ours))}), job_file=None)
    assert metrics is not None
    metrics.finish(JobResult(0, {}, tmp_path / "r.csv"))
    assert RunMetrics.of(build_config(None, {"input": "x.csv", "user_pool_id": "us-east-1_A",
                         "metrics": ("prometheus-textfile", str(ours))}), job_file=None)
