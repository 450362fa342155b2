"""The sync's flags (issue 21): parsed, validated together, in the fingerprint only when set."""

from __future__ import annotations

from pathlib import Path

import pytest

from batch.cli import _overrides, build_parser
from batch.config import JobConfig, build_config
from batch.errors import UsageError

BASE = ["run", "in.csv", "--user-pool-id", "us-east-1_x"]


def config_of(*flags: str) -> JobConfig:
    args = build_parser(with_emulator=False).parse_args([*BASE, *flags])
    return build_config(None, _overrides(args))


def test_flags_reach_the_config():
    cfg = config_of("--create-missing", "--invite", "--disable-missing", "--max-disable", "25",
                    "--manage-groups", "staff, sales", "--no-alias-check")
    assert (cfg.create_missing, cfg.invite, cfg.disable_missing) == (True, True, True)
    assert cfg.max_disable == "25" and cfg.manage_groups == ("staff", "sales")
    assert cfg.alias_check is False
    default = config_of()
    assert (default.create_missing, default.invite, default.disable_missing) == (False,) * 3
    assert default.max_disable == "10%" and default.manage_groups == () and default.alias_check


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--invite"], "--invite needs --create-missing"),
        (["--create-missing", "--key", "email"], "--create-missing needs --key username"),
        (["--disable-missing", "--max-disable", "ten"], "--max-disable 'ten'"),
        (["--disable-missing", "--shard", "0/2"], "not --shard"),
        (["--manage-groups", "staff,,sales"], "--manage-groups: '' is not a group name"),
        (["--mark-verified", "--no-alias-check"], "cannot go with --mark-verified"),
    ],
)
def test_bad_combinations_are_one_line_usage_errors(flags: list[str], message: str):
    with pytest.raises(UsageError) as caught:
        config_of(*flags)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_job_file_takes_manage_groups_as_an_array(tmp_path: Path):
    job = tmp_path / "job.toml"
    job.write_text('input = "in.csv"\nuser_pool_id = "p"\nmanage_groups = ["staff"]\n'
                   'create_missing = true\n')
    cfg = build_config(str(job), {})
    assert cfg.manage_groups == ("staff",) and cfg.create_missing
    job.write_text('input = "in.csv"\nuser_pool_id = "p"\nmanage_groups = "staff"\n')
    with pytest.raises(UsageError, match="manage_groups"):
        build_config(str(job), {})


def test_fingerprint_changes_with_sync_flags_only_when_set():
    plain = config_of()
    # unchanged for a run without them: journals written before these flags still resume
    assert plain.fingerprint() == config_of("--max-disable", "10%").fingerprint()
    assert config_of("--create-missing").fingerprint() != plain.fingerprint()
    assert config_of("--manage-groups", "a").fingerprint() != plain.fingerprint()
