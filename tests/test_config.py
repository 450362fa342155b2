"""The job definition: job file keys, paths, flag overrides, validation, the fingerprint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from batch.config import (
    DEFAULT_RATE,
    JobConfig,
    build_config,
    load_job_file,
    parse_pairs,
    replayable,
)
from batch.errors import UsageError

BASE = {"input": "in.csv", "user_pool_id": "us-east-1_test"}


def job_file(tmp_path: Path, text: str, name: str = "jobs/job.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def config(**overrides: Any) -> JobConfig:
    return build_config(None, {**BASE, **overrides})


def test_job_file_keys_become_settings(tmp_path: Path) -> None:
    # GIVEN a job file using most keys
    path = job_file(tmp_path, """
input = "/data/in.csv"
user_pool_id = "eu-west-1_X"
report = "/data/out.jsonl"
delimiter = ";"
username_column = "login"
rate = 12.5
workers = 3
max_attempts = 4
empty = "delete"
on_duplicate = "last"
mark_verified = true
exclude = ["password_hash"]
[columns]
mail = "email"
[client_metadata]
source = "test"
""")

    # WHEN it is loaded
    cfg = build_config(str(path), {})

    # THEN each key is a setting of the same name
    assert cfg.input == "/data/in.csv"
    assert cfg.user_pool_id == "eu-west-1_X"
    assert cfg.report == "/data/out.jsonl"
    assert (cfg.delimiter, cfg.username_column) == (";", "login")
    assert cfg.rate == "12.5" and cfg.fixed_rate == 12.5 and not cfg.auto_rate
    assert (cfg.workers, cfg.max_attempts) == (3, 4)
    assert (cfg.empty, cfg.on_duplicate, cfg.mark_verified) == ("delete", "last", True)
    assert cfg.exclude == ("password_hash",)
    assert cfg.columns == {"mail": "email"}
    assert cfg.client_metadata == {"source": "test"}


def test_relative_paths_are_resolved_against_the_job_files_folder(tmp_path: Path) -> None:
    # GIVEN a job file in jobs/ naming ../data/in.csv and ../reports/out.csv
    path = job_file(tmp_path, 'input = "../data/in.csv"\nreport = "../reports/out.csv"\n'
                              'user_pool_id = "p"\n')

    # WHEN it is loaded (whatever the current folder)
    cfg = build_config(str(path), {})

    # THEN the paths point beside the jobs folder
    assert Path(cfg.input).resolve() == (tmp_path / "data" / "in.csv").resolve()
    assert Path(cfg.report).resolve() == (tmp_path / "reports" / "out.csv").resolve()


def test_absolute_paths_in_a_job_file_are_kept(tmp_path: Path) -> None:
    path = job_file(tmp_path, 'input = "/abs/in.csv"\nuser_pool_id = "p"\n')
    assert load_job_file(path)["input"] == "/abs/in.csv"


def test_flags_override_the_job_file_and_none_flags_do_not(tmp_path: Path) -> None:
    path = job_file(tmp_path, 'input = "/in.csv"\nuser_pool_id = "p"\nrate = 5\nworkers = 3\n')
    cfg = build_config(str(path), {"rate": "auto", "workers": None, "user_pool_id": "q"})
    assert cfg.auto_rate
    assert cfg.workers == 3
    assert cfg.user_pool_id == "q"


def test_a_flag_path_is_not_moved_to_the_job_files_folder(tmp_path: Path) -> None:
    path = job_file(tmp_path, 'input = "in.csv"\nuser_pool_id = "p"\n')
    cfg = build_config(str(path), {"input": "here.csv"})
    assert cfg.input == "here.csv"


def test_unknown_key_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    path = job_file(tmp_path, 'input = "in.csv"\nuser_pool_id = "p"\nworker = 4\n')
    with pytest.raises(UsageError, match="unknown setting 'worker'"):
        build_config(str(path), {})


def test_missing_or_broken_job_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        build_config(str(tmp_path / "nope.toml"), {})
    broken = job_file(tmp_path, "input = \n")
    with pytest.raises(UsageError, match="job file"):
        build_config(str(broken), {})


@pytest.mark.parametrize(
    "rate", ["0", "-1", "-5", "100001", "fast", "abc", "", "nan", "150%", "0%", "-5%", "%", "x%"]
)
def test_bad_rate_is_a_usage_error(rate: str) -> None:
    with pytest.raises(UsageError, match="rate"):
        config(rate=rate)


@pytest.mark.parametrize(("rate", "share"), [("80%", 0.8), (" 100% ", 1.0), ("12.5%", 0.125)])
def test_rate_as_a_share_of_the_quota(rate: str, share: float) -> None:
    # GIVEN --rate P%  WHEN it is validated  THEN it is that share of the quota, not calls/s
    cfg = config(rate=rate)
    assert cfg.rate_share == pytest.approx(share)
    assert not cfg.auto_rate and not cfg.polite_rate


def test_no_rate_means_polite() -> None:
    # GIVEN no --rate anywhere  THEN the job shares the quota politely (job.py sizes it)
    cfg = config()
    assert cfg.polite_rate and cfg.rate_share is None and not cfg.auto_rate


def test_bad_rate_in_a_job_file_is_one_line_exit_2(tmp_path: Path) -> None:
    # GIVEN a job file with rate = "150%"
    path = job_file(tmp_path, 'input = "in.csv"\nuser_pool_id = "p"\nrate = "150%"\n')
    # WHEN it is loaded  THEN one usage error names the value
    with pytest.raises(UsageError, match="150%"):
        build_config(str(path), {})


@pytest.mark.parametrize("rate", ["auto", "AUTO", " auto "])
def test_auto_rate(rate: str) -> None:
    cfg = config(rate=rate)
    assert cfg.auto_rate
    assert cfg.fixed_rate == DEFAULT_RATE


def test_rate_from_toml_number_and_flag_string_agree(tmp_path: Path) -> None:
    path = job_file(tmp_path, 'input = "in.csv"\nuser_pool_id = "p"\nrate = 25\n')
    assert build_config(str(path), {}).fixed_rate == config(rate="25").fixed_rate == 25.0


@pytest.mark.parametrize(
    ("setting", "value"),
    [("workers", 0), ("workers", 1025), ("max_attempts", 0), ("max_attempts", 51),
     ("max_row_seconds", 0), ("per_user_rate", 0), ("max_rate", -1.0),
     ("empty", "erase"), ("on_duplicate", "first"), ("key", "phone"), ("format", "xlsx"),
     ("client_metadata", {"k": "v" * 257}), ("client_metadata", {"": "v"})],
)
def test_bad_values_are_usage_errors(setting: str, value: Any) -> None:
    with pytest.raises(UsageError):
        config(**{setting: value})


def test_input_and_pool_are_required() -> None:
    with pytest.raises(UsageError, match="no input"):
        build_config(None, {"user_pool_id": "p"})
    with pytest.raises(UsageError, match="no user pool"):
        build_config(None, {"input": "in.csv"})


def test_columns_must_be_a_table(tmp_path: Path) -> None:
    path = job_file(tmp_path, 'input = "in.csv"\nuser_pool_id = "p"\ncolumns = "mail"\n')
    with pytest.raises(UsageError, match="'columns' must be a table"):
        build_config(str(path), {})


@pytest.mark.parametrize("line", ['workers = "eight"', 'max_rate = "lots"',
                                  'max_attempts = "8"'])
def test_wrongly_typed_values_in_a_job_file_are_usage_errors(tmp_path: Path, line: str) -> None:
    path = job_file(tmp_path, f'input = "in.csv"\nuser_pool_id = "p"\n{line}\n')
    with pytest.raises(UsageError):
        build_config(str(path), {})


def test_a_string_exclude_is_refused_not_split_into_characters(tmp_path: Path) -> None:
    path = job_file(tmp_path, 'input = "in.csv"\nuser_pool_id = "p"\n'
                              'exclude = "password_hash"\n')
    with pytest.raises(UsageError, match="exclude"):
        build_config(str(path), {})


def test_a_key_other_than_username_becomes_the_default_key_column() -> None:
    assert config(key="email").username_column == "email"
    assert config(key="email", username_column="work_email").username_column == "work_email"


def test_default_report_path() -> None:
    assert config(input="/data/users.csv").report_path() == Path("reports/users.report.csv")
    assert config(report="/x/r.jsonl").report_path() == Path("/x/r.jsonl")


def test_fingerprint_changes_with_what_is_written() -> None:
    base = config(columns={"mail": "email"})
    for changed in (
        config(columns={"mail": "custom:mail"}),
        config(columns={"mail": "email"}, exclude=["x"]),
        config(columns={"mail": "email"}, empty="delete"),
        config(columns={"mail": "email"}, key="email"),
        config(columns={"mail": "email"}, user_pool_id="other"),
        config(columns={"mail": "email"}, mark_verified=True),
        config(columns={"mail": "email"}, on_duplicate="last"),
        config(columns={"mail": "email"}, username_column="login"),
    ):
        assert changed.fingerprint() != base.fingerprint()


def test_fingerprint_ignores_speed_and_display_settings() -> None:
    base = config(columns={"a": "email", "b": "given_name"})
    same = config(columns={"b": "given_name", "a": "email"}, rate="auto", max_rate=40.0,
                  workers=16, max_attempts=3, max_row_seconds=10.0, quiet=True,
                  confirm=False, fresh=True, report="/elsewhere.csv")
    assert same.fingerprint() == base.fingerprint()


def test_public_settings_are_json_ready() -> None:
    data = config(exclude=["x"], columns={"b": "y", "a": "x"}).public()
    assert data["exclude"] == ["x"]
    assert list(data["columns"]) == ["a", "b"]
    assert "rows" not in data


def test_parse_pairs() -> None:
    assert parse_pairs(None, what="--column") is None
    assert parse_pairs(["a=b", "c=", "d=e=f"], what="--column") == {"a": "b", "c": "", "d": "e=f"}
    with pytest.raises(UsageError, match="--column must be NAME=VALUE"):
        parse_pairs(["ab"], what="--column")
    with pytest.raises(UsageError):
        parse_pairs(["=b"], what="--column")


def test_the_benchmark_only_rate_algorithm_is_no_setting_and_old_summaries_still_replay() -> None:
    # GIVEN the settings a run recorded before --rate-algorithm was retired
    recorded = {"input": "in.csv", "user_pool_id": "eu-west-1_A", "rate": "",
                "rate_algorithm": "shared"}
    # WHEN retry or undo replays them
    config = build_config(None, replayable(recorded))
    # THEN they still make a config (the polite default), which no longer records the setting
    assert config.polite_rate and "rate_algorithm" not in config.public()
    # ... and neither a flag nor a job file can ask for it
    with pytest.raises(SystemExit):
        from batch.cli import build_parser

        build_parser(with_emulator=False).parse_args(["run", "in.csv", "--rate-algorithm", "aimd"])
