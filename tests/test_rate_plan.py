"""The rate ceiling under the quota and its controller, shared by run, retry and undo.

1. Units of ``rate_plan``: polite, auto with the quota known and not, ``P%``, ``N`` above the
   quota (capped) and below it, shards dividing every form.
   -> test_ceiling[...], test_shards_divide_the_quota
2. Undo reads the quota (GetProvisionedLimit) and takes the run's rate under it: polite by
   default (36 of a 40/s quota), auto (40), a calls/s rate kept from the run, one above the
   quota capped with a warning.
   -> test_undo_reads_the_quota_and_keeps_the_runs_rate[...]
3. Undo where GetProvisionedLimit is denied or unknown: Cognito's defaults, said in the plan
   and in the summary.
   -> test_undo_falls_back_to_the_default_quota[deny|unknown]
4. Undo's controller backs off at a throttle (the old one held its fixed rate).
   -> test_undo_slows_down_at_a_throttle
5. A polite run (no --rate) round-trips into its retry and its undo (the empty rate it records
   was refused as ``--rate ''``).
   -> test_retry_of_a_polite_run_stays_polite, test_undo_config_keeps_polite_and_max_rate
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import FAST, write_csv

from batch.cli import main
from batch.config import JobConfig
from batch.pace.controllers import MeasuredRate, SharedRate
from batch.pace.quota import Quotas, default_quotas
from batch.pace.rate_plan import rate_controller, rate_plan

KNOWN_40 = Quotas({"UserUpdate": 40.0, "UserRead": 120.0, "UserList": 30.0}, {"UserUpdate": 25.0},
                  "read from GetProvisionedLimit")
UNKNOWN = default_quotas("denied")  # UserUpdate 25/s, assumed


def config(rate: str = "", **more: Any) -> JobConfig:
    return JobConfig(input="in.csv", user_pool_id="p", rate=rate, **more)


# -- 1. units ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "quotas", "ceiling", "share", "meaning"),
    [
        ("", KNOWN_40, 36.0, 0.9, "polite"),
        ("", UNKNOWN, 22.5, 0.9, "polite"),
        ("auto", KNOWN_40, 40.0, 1.0, "auto: up to 100%"),
        ("auto", UNKNOWN, 10_000.0, 1.0, "auto: discovered"),  # all of it, whatever it is
        ("50%", KNOWN_40, 20.0, 0.5, "50% of the quota"),
        ("30", KNOWN_40, 30.0, 0.75, "at most 30/s"),
        ("500", KNOWN_40, 40.0, 1.0, "--rate 500 is above the quota"),
        ("500", UNKNOWN, 500.0, 20.0, "at most 500/s"),  # an assumed quota caps nothing
    ],
    ids=["polite", "polite-unknown", "auto", "auto-unknown", "share", "n", "n-above", "n-unknown"],
)
def test_ceiling(
    rate: str, quotas: Quotas, ceiling: float, share: float | None, meaning: str
) -> None:
    # GIVEN a --rate form and a quota read (40/s) or assumed (the default 25/s)
    # WHEN the ceiling is computed
    plan = rate_plan(config(rate), quotas)
    # THEN it is the documented share of the quota, said in words
    assert plan.ceiling == pytest.approx(ceiling)
    if share is not None:  # (a discovered ceiling is no share of the assumed quota)
        assert plan.share == pytest.approx(share)
    assert meaning in plan.meaning


def test_shards_divide_the_quota() -> None:
    # GIVEN 4 shards of a run against a 40/s quota
    # WHEN each shard's ceiling is computed
    polite = rate_plan(config(), KNOWN_40, shards=4)
    auto = rate_plan(config("auto"), KNOWN_40, shards=4)
    share = rate_plan(config("50%"), KNOWN_40, shards=4)
    above = rate_plan(config("500"), KNOWN_40, shards=4)
    # THEN each takes a quarter of what one run would (the quota is account-wide)
    assert (polite.ceiling, auto.ceiling, share.ceiling, above.ceiling) == (9.0, 10.0, 5.0, 10.0)
    assert polite.share == pytest.approx(0.225)
    # ... and --max-rate caps auto and polite further
    assert rate_plan(config("auto", max_rate=7.0), KNOWN_40).ceiling == 7.0


def test_controllers() -> None:
    # GIVEN the --rate forms, WHEN their controllers are chosen
    # THEN the shared controller for all of them once the quota is known; discovery (from
    # 10/s) for auto when it is not
    assert isinstance(rate_controller(config(), KNOWN_40, 36.0), SharedRate)
    assert isinstance(rate_controller(config("30"), KNOWN_40, 30.0), SharedRate)
    assert isinstance(rate_controller(config("auto"), KNOWN_40, 40.0), SharedRate)
    discover = rate_controller(config("auto"), UNKNOWN, 10_000.0)
    assert isinstance(discover, MeasuredRate) and discover.rate == 10.0


# -- end to end: undo against the emulator ----------------------------------------------------


USERS = [{"username": f"u{i}", "custom:tier": "silver"} for i in range(1, 9)]


def changed_run(emulator: Any, make_pool: Any, tmp_path: Path, *rate: str) -> tuple[str, Path]:
    """A pool of 8 users whose tier a run (with before-images, at ``rate``) set to gold."""
    emulator.configure(quotas=FAST)
    pool = make_pool(users=USERS)
    source = write_csv(tmp_path / "in.csv", ["username", "tier"],
                       [[u["username"], "gold"] for u in USERS])
    report = tmp_path / "out.csv"
    code = main(["run", "--undo", str(source), "--user-pool-id", pool, "--endpoint-url",
                 emulator.endpoint_url, "--report", str(report), "--yes", "--quiet", *rate])
    assert code == 0
    assert emulator.get_user_attributes(pool, "u1")["custom:tier"] == "gold"
    return pool, report


def undo(emulator: Any, report: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    code = main(["undo", str(report), "--endpoint-url", emulator.endpoint_url, "--yes",
                 "--quiet", *extra])
    summary = json.loads(Path(f"{tmp_undo(report)}.summary.json").read_text())
    return code, summary


def tmp_undo(report: Path) -> Path:
    return report.with_name(f"{report.stem}.undo{report.suffix}")


@pytest.mark.parametrize(
    ("run_rate", "undo_rate", "label", "ceiling", "share"),
    [
        ([], [], "polite", 36.0, 0.9),
        ([], ["--rate", "auto"], "auto", 40.0, 1.0),
        (["--rate", "30"], [], 30.0, 30.0, 0.75),
        (["--rate", "500"], [], 500.0, 40.0, 1.0),
    ],
    ids=["polite", "auto", "kept-30", "kept-above-quota"],
)
def test_undo_reads_the_quota_and_keeps_the_runs_rate(
    emulator: Any, make_pool: Any, tmp_path: Path, run_rate: list[str], undo_rate: list[str],
    label: Any, ceiling: float, share: float,
) -> None:
    # GIVEN a run that changed 8 users, and then an account whose UserUpdate quota is 40/s
    pool, report = changed_run(emulator, make_pool, tmp_path, *run_rate)
    emulator.configure(quotas={"UserUpdate": 40})

    # WHEN it is undone (with the run's rate, or --rate auto)
    code, summary = undo(emulator, report, *undo_rate)

    # THEN the undo read the quota, and took the run's rate under it as a run would
    assert code == 0
    assert summary["counts"]["updated"] == 8
    assert emulator.get_user_attributes(pool, "u1")["custom:tier"] == "silver"
    assert summary["quota"]["source"] == "read from GetProvisionedLimit"
    assert summary["quota"]["rates"]["UserUpdate"] == 40.0
    assert summary["quota"]["share"] == pytest.approx(share)
    assert summary["rate"] == label
    assert summary["rate_ceiling"] == pytest.approx(ceiling)
    # ... and its controller starts at that ceiling (the old auto started at 10/s, the old
    # fixed rate at 25/s or at the run's 500, whatever the quota)
    assert summary["rate_high"] == pytest.approx(ceiling)


def test_undo_above_the_quota_is_warned(
    emulator: Any, make_pool: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a run made at --rate 500, and a UserUpdate quota of 40/s at undo time
    _, report = changed_run(emulator, make_pool, tmp_path, "--rate", "500")
    emulator.configure(quotas={"UserUpdate": 40})
    capsys.readouterr()

    # WHEN its undo is planned (a dry run shows the plan)
    code = main(["undo", str(report), "--endpoint-url", emulator.endpoint_url, "--yes",
                 "--dry-run"])

    # THEN the plan shows the quota, the cap, and the warning that little is left to others
    err = capsys.readouterr().err
    assert code == 0
    assert ("quota:     UserUpdate 40/s (read from GetProvisionedLimit); this run takes up to "
            "40/s = 100% of it (--rate 500 is above the quota: 40 at most)") in err
    assert "warning:   --rate 500 may take 100% of the 40/s UserUpdate quota" in err


@pytest.mark.parametrize(("setting", "why"), [("deny", "denied"),
                                              ("unknown", "unknown to the endpoint")])
def test_undo_falls_back_to_the_default_quota(
    emulator: Any, make_pool: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    setting: str, why: str,
) -> None:
    # GIVEN a polite run that changed 8 users, then GetProvisionedLimit denied (or unknown)
    pool, report = changed_run(emulator, make_pool, tmp_path)
    emulator.configure(quotas={"UserUpdate": 40}, provisioned_limit=setting)
    capsys.readouterr()

    # WHEN the undo is planned, THEN the plan says the quota is Cognito's default, and why
    assert main(["undo", str(report), "--endpoint-url", emulator.endpoint_url, "--yes",
                 "--dry-run"]) == 0
    assert (f"quota:     UserUpdate 25/s (defaults: GetProvisionedLimit {why}); this run "
            "takes up to 22.5/s = 90% of it") in capsys.readouterr().err

    # WHEN it is undone, THEN the summary says so too, and the undo went polite under it
    code, summary = undo(emulator, report)
    assert code == 0
    assert emulator.get_user_attributes(pool, "u8")["custom:tier"] == "silver"
    assert summary["quota"]["source"] == f"defaults: GetProvisionedLimit {why}"
    assert summary["quota"]["rates"]["UserUpdate"] == 25.0
    assert summary["quota"]["free_limit"] == {}
    assert (summary["rate"], summary["rate_ceiling"]) == ("polite", 22.5)


def test_undo_slows_down_at_a_throttle(emulator: Any, make_pool: Any, tmp_path: Path) -> None:
    # GIVEN a run at --rate 30 that changed 8 users, then every AdminUpdateUserAttributes
    # throttled (the bucket empty: the live application needs it all)
    pool, report = changed_run(emulator, make_pool, tmp_path, "--rate", "30")
    emulator.configure(quotas={"UserUpdate": 40})
    emulator.inject("AdminUpdateUserAttributes", code="TooManyRequestsException",
                    message="Rate exceeded")

    # WHEN it is undone with one attempt a row (no back-off sleeps)
    code, summary = undo(emulator, report, "--max-attempts", "1", "--max-failures", "none")

    # THEN every row failed as throttled, and the undo's rate went below its ceiling at the
    # first throttle (the old fixed rate stayed at 30 whatever Cognito said)
    assert code == 1
    assert summary["counts"]["failed"] == 8
    assert summary["throttles"] == 8
    assert summary["rate_ceiling"] == 30.0
    assert summary["rate_low"] < 0.6 * summary["rate_ceiling"]
    assert emulator.get_user_attributes(pool, "u1")["custom:tier"] == "gold"


# -- 5. the polite default round-trips ----------------------------------------------------------


def test_retry_of_a_polite_run_stays_polite(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN a polite run (no --rate) where two rows failed: no such user
    emulator.configure(quotas=FAST)
    pool = make_pool(users=USERS[:2])
    source = write_csv(tmp_path / "in.csv", ["username", "tier"],
                       [["u1", "gold"], ["ghost1", "gold"], ["u2", "gold"], ["ghost2", "gold"]])
    report = tmp_path / "out.csv"
    assert main(["run", str(source), "--user-pool-id", pool, "--endpoint-url",
                 emulator.endpoint_url, "--report", str(report), "--yes", "--quiet"]) == 1
    assert json.loads(Path(f"{report}.summary.json").read_text())["settings"]["rate"] == ""

    # WHEN the failed rows are retried (once the users exist), with the run's settings
    emulator.seed_users(pool, [{"username": "ghost1"}, {"username": "ghost2"}])
    code = main(["retry", str(report), "--endpoint-url", emulator.endpoint_url, "--yes",
                 "--quiet"])

    # THEN the retry runs (the empty rate is not refused as --rate '') and stays polite
    assert code == 0
    retried = json.loads(Path(f"{tmp_path / 'out.retry1.csv'}.summary.json").read_text())
    assert retried["counts"]["updated"] == 2
    assert (retried["rate"], retried["rate_ceiling"]) == ("polite", 900.0)
    assert emulator.get_user_attributes(pool, "ghost2")["custom:tier"] == "gold"


def test_undo_config_keeps_polite_and_max_rate(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN runs made polite, and with --rate auto --max-rate 20
    from batch.commands.undo import undo_config

    _, polite = changed_run(emulator, make_pool, tmp_path)
    auto_dir = tmp_path / "auto"
    auto_dir.mkdir()
    _, capped = changed_run(emulator, make_pool, auto_dir, "--rate", "auto", "--max-rate", "20")
    endpoint = {"endpoint_url": emulator.endpoint_url}

    # WHEN their undos are configured, THEN each keeps the run's rate: polite stays polite,
    # auto keeps its cap (else the undo would take the whole quota the run was kept from)
    assert undo_config(str(polite), endpoint)[0].polite_rate
    kept = undo_config(str(capped), endpoint)[0]
    assert (kept.rate, kept.max_rate) == ("auto", 20.0)
    # ... and a rate given for the undo replaces both
    given = undo_config(str(capped), {**endpoint, "rate": "10"})[0]
    assert (given.rate, given.max_rate) == ("10", 0.0)
