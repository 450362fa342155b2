"""Shards for array jobs (--shard K/N, auto) and `merge`: every row exactly once across the
shard reports, no user in two shards, each shard at its share of the rate, one merged report
and summary."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import report_rows

from batch.cli import main
from batch.config import build_config
from batch.errors import UsageError
from batch.inputs.shard import Shard, shard_of


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.parametrize(
    ("spec", "env", "expected"),
    [("1/3", {}, Shard(1, 3)), ("0/1", {}, Shard(0, 1)),
     ("auto", {"AWS_BATCH_JOB_ARRAY_INDEX": "2", "AWS_BATCH_JOB_ARRAY_SIZE": "5"}, Shard(2, 5)),
     ("auto/5", {"AWS_BATCH_JOB_ARRAY_INDEX": "4"}, Shard(4, 5)),
     ("auto/4", {"JOB_COMPLETION_INDEX": "3"}, Shard(3, 4))],
)
def test_shard_specs(spec: str, env: dict[str, str], expected: Shard) -> None:
    # GIVEN / WHEN a spec is read with the scheduler's environment / THEN K and N are known
    assert Shard.parse(spec, env) == expected


@pytest.mark.parametrize(
    ("spec", "env", "message"),
    [("3/3", {}, "below N"), ("2", {}, "number of shards"), ("x/3", {}, "K/N"),
     ("auto", {}, "not an array job"), ("auto", {"JOB_COMPLETION_INDEX": "1"}, "auto/N"),
     ("auto/3", {"AWS_BATCH_JOB_ARRAY_INDEX": "1", "AWS_BATCH_JOB_ARRAY_SIZE": "4"}, "is 4"),
     ("auto", {"AWS_BATCH_JOB_ARRAY_INDEX": "one", "AWS_BATCH_JOB_ARRAY_SIZE": "2"}, "number")],
)
def test_bad_shard_specs_are_usage_errors(spec: str, env: dict[str, str], message: str) -> None:
    # GIVEN / WHEN a spec that cannot name one shard / THEN a usage error says why
    with pytest.raises(UsageError, match=message):
        Shard.parse(spec, env)


def test_shard_of_is_stable_casefolded_and_spread() -> None:
    # GIVEN 3,000 keys
    keys = [f"user{i}@example.com" for i in range(3000)]
    # WHEN each is given a shard of 3
    shards = [shard_of(key, 3) for key in keys]
    # THEN spellings of one user agree, the split is even, and the value is blake2b's
    assert shard_of("Alice@Example.com", 7) == shard_of("alice@example.com", 7)
    assert all(900 <= shards.count(k) <= 1100 for k in range(3))
    assert [shard_of(k, 1000) for k in ("alice", "bob", "")] == [729, 842, 876]


def test_a_shard_config_divides_every_rate_and_names_its_report(tmp_path: Path) -> None:
    # GIVEN a job at 30/s with the read rates at their defaults
    base = {"input": str(tmp_path / "in.csv"), "user_pool_id": "us-east-1_x", "rate": 30,
            "report": str(tmp_path / "out.csv")}
    # WHEN it is shard auto of an AWS Batch array of 3
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_BATCH_JOB_ARRAY_INDEX", "1")
        patch.setenv("AWS_BATCH_JOB_ARRAY_SIZE", "3")
        config = build_config(None, {**base, "shard": "auto"})
    plain = build_config(None, base)
    # THEN each rate is a third, the report is the shard's, and the settings fingerprint differs
    assert (config.shard, config.fixed_rate) == ("1/3", 10.0)
    assert config.list_rate == plain.list_rate / 3 and config.get_rate == plain.get_rate / 3
    assert config.report == str(tmp_path / "out.shard-1-of-3.csv")
    assert config.fingerprint() != plain.fingerprint()


def test_three_shards_then_merge(
    make_pool: Any, emulator: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN 90 users, an input with a case-variant duplicate and an unknown user
    pool = make_pool(users=[{"username": f"u{i:03d}"} for i in range(1, 91)])
    # (a quota above the shards' 3 x 200/s: at the default 25/s each shard is held to 8/s,
    # 11 s of waiting that no assertion here looks at)
    emulator.configure(quotas={"UserUpdate": 1000})
    rows = [{"username": f"u{i:03d}", "tier": f"t{i % 5}"} for i in range(1, 91)]
    rows.append({"username": "U007", "tier": "dup"})
    rows.append({"username": "ghost", "tier": "x"})
    source = write_rows(tmp_path / "in.csv", rows)
    report = tmp_path / "out" / "run.csv"
    # WHEN three shards run over it (as three array-job containers would), then merge
    codes = []
    for k in range(3):
        codes.append(main(["run", str(source), "--user-pool-id", pool, "--endpoint-url",
                           emulator.endpoint_url, "--report", str(report), "--rate", "600",
                           "--shard", f"{k}/3", "--yes", "--quiet"]))
    capsys.readouterr()
    merged_code = main(["merge", str(report)])
    err = capsys.readouterr().err
    # THEN each shard's report holds only its own rows, and every row is in exactly one
    by_shard = [list(report_rows(tmp_path / "out" / f"run.shard-{k}-of-3.csv").values())
                for k in range(3)]
    all_rows = sorted(int(r["row"]) for shard in by_shard for r in shard)
    assert all_rows == list(range(1, 93))
    for k, shard in enumerate(by_shard):
        assert shard and all(shard_of(r["username"], 3) == k for r in shard)
    users = [{r["username"].casefold() for r in shard} for shard in by_shard]
    assert not (users[0] & users[1] or users[0] & users[2] or users[1] & users[2])
    # AND each shard paced at a third of the rate
    summaries = [json.loads((tmp_path / "out" / f"run.shard-{k}-of-3.csv.summary.json")
                            .read_text()) for k in range(3)]
    assert [s["rate"] for s in summaries] == [200.0] * 3
    assert [s["shard"] for s in summaries] == ["0/3", "1/3", "2/3"]
    # AND the merged report has every row once, the merged summary sums the shards
    merged = list(report_rows(report).values())
    assert sorted(int(r["row"]) for r in merged) == list(range(1, 93))
    summary = json.loads((tmp_path / "out" / "run.csv.summary.json").read_text())
    assert summary["rows"] == 92
    # (moto's pool is case-sensitive: U007 is not u007 there, and fails like ghost)
    assert summary["counts"] == {"updated": 90, "unchanged": 0, "invalid": 0, "failed": 2,
                                 "skipped": 0}
    failing = {shard_of("ghost", 3), shard_of("U007", 3)}
    assert codes == [1 if k in failing else 0 for k in range(3)] and merged_code == 1
    assert shard_of("U007", 3) == shard_of("u007", 3)
    assert summary["calls"] == sum(s["calls"] for s in summaries)
    assert summary["calls"] == emulator.stats()["operations"]["AdminUpdateUserAttributes"]["calls"]
    assert summary["rate"] == 600.0 and len(summary["shards"]) == 3
    assert "92 rows" in err
    assert emulator.get_user_attributes(pool, "u042")["custom:tier"] == "t2"


def test_merge_refuses_a_missing_shard(
    make_pool: Any, emulator: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN two of three shards run
    pool = make_pool(users=[{"username": f"u{i}"} for i in range(1, 11)])
    source = write_rows(tmp_path / "in.csv", [{"username": f"u{i}", "tier": "a"}
                                              for i in range(1, 11)])
    report = tmp_path / "run.csv"
    for k in (0, 2):
        main(["run", str(source), "--user-pool-id", pool, "--endpoint-url",
              emulator.endpoint_url, "--report", str(report), "--shard", f"{k}/3", "--yes",
              "--quiet"])
    capsys.readouterr()
    # WHEN merge runs on the folder
    code = main(["merge", str(tmp_path)])
    # THEN it refuses in one line, naming the missing shard, and writes nothing
    err = capsys.readouterr().err.strip()
    assert code == 2 and "shard 1 of 3" in err and len(err.splitlines()) == 1
    assert not report.exists()


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_merge_keeps_the_report_format(
    make_pool: Any, emulator: Any, tmp_path: Path, suffix: str
) -> None:
    # GIVEN two shards of a run reporting JSONL or Parquet
    pool = make_pool(users=[{"username": f"u{i}"} for i in range(1, 13)])
    source = write_rows(tmp_path / "in.csv", [{"username": f"u{i}", "tier": "a"}
                                              for i in range(1, 13)])
    report = tmp_path / f"run{suffix}"
    for k in (0, 1):
        assert main(["run", str(source), "--user-pool-id", pool, "--endpoint-url",
                     emulator.endpoint_url, "--report", str(report), "--shard", f"{k}/2",
                     "--yes", "--quiet"]) == 0
    # WHEN they are merged
    code = main(["merge", str(report), "--quiet"])
    # THEN the merged report is in the same format and holds every row once
    assert code == 0 and sorted(report_rows(report)) == list(range(1, 13))


def test_merge_checks_the_shards_ran_one_run() -> None:
    from batch.commands.merge import _check_same_run as check_dicts
    from batch.record.summary import RunSummary

    def _check_same_run(paths: list[Path], summaries: list[dict[str, Any]]) -> None:
        check_dicts(paths, [RunSummary.from_json(s) for s in summaries])  # read as merge reads

    # GIVEN shard summaries that agree on what is written but not on how loud or fast
    def summary(**settings: Any) -> dict[str, Any]:
        base = {"user_pool_id": "p", "key": "username", "log_format": "text", "rate": "10"}
        return {"input_sha256": "abc", "settings": {**base, **settings}}

    paths = [Path("r.shard-0-of-2.csv"), Path("r.shard-1-of-2.csv")]
    # WHEN / THEN speed and log format may differ; the pool, the key or the input may not
    _check_same_run(paths, [summary(), summary(log_format="json", rate="5")])
    with pytest.raises(UsageError, match="different settings"):
        _check_same_run(paths, [summary(), summary(key="email")])
    with pytest.raises(UsageError, match="different input"):
        _check_same_run(paths, [summary(), {**summary(), "input_sha256": "def"}])
