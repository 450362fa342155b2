"""Knowing the quota: GetProvisionedLimit answered, denied and unknown (over HTTP, against the
emulator), what the plan and the summary say about it, and the emulator's neighbours."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from batch.cognito import CognitoGateway, ConnectionSettings
from batch.commands.run import Job
from batch.config import build_config
from batch.emulator.neighbours import Neighbour, parse_schedule, rate_at
from batch.pace.quota import read_quotas
from batch.plan.summary import PlanSummary


def gateway(emulator: Any) -> CognitoGateway:
    return CognitoGateway(ConnectionSettings(endpoint_url=emulator.endpoint_url))


# -- GetProvisionedLimit ---------------------------------------------------------------------


def test_the_enforced_quota_is_read_from_get_provisioned_limit(emulator: Any) -> None:
    # GIVEN an emulator enforcing 50 UserUpdate/s and 200 UserRead/s
    emulator.configure(quotas={"UserUpdate": 50, "UserRead": 200})
    # WHEN the job reads its categories
    quotas = read_quotas(gateway(emulator), ["UserUpdate", "UserRead", "UserList"])
    # THEN it has the enforced rates (and the no-cost part), and says where they came from
    assert quotas.known and quotas.source == "read from GetProvisionedLimit"
    assert quotas.rates == {"UserUpdate": 50.0, "UserRead": 200.0, "UserList": 30.0,
                            "UserCreation": 50.0, "UserResourceRead": 50.0,
                            "UserPoolResourceRead": 20.0}  # the sync's, at their defaults
    assert quotas.free["UserUpdate"] == 25.0


def test_the_emulator_answers_in_cognitos_response_shape(
    emulator: Any, cognito_client: Any
) -> None:
    # GIVEN a quota of 150 UserUpdate/s
    emulator.configure(quotas={"UserUpdate": 150})
    # WHEN boto3 calls GetProvisionedLimit (botocore validates the response against its model)
    answer = cognito_client.get_provisioned_limit(
        LimitDefinition={"LimitClass": "API_CATEGORY", "Attributes": {"Category": "UserUpdate"}}
    )
    # THEN the shape is the service model's: Limit.{LimitDefinition, Provisioned, Free}
    assert answer["Limit"] == {
        "LimitDefinition": {"LimitClass": "API_CATEGORY", "Attributes": {"Category": "UserUpdate"}},
        "ProvisionedLimitValue": 150, "FreeLimitValue": 25,
    }


@pytest.mark.parametrize(
    ("mode", "source"),
    [("deny", "defaults: GetProvisionedLimit denied"),
     ("unknown", "defaults: GetProvisionedLimit unknown to the endpoint")],
)
def test_denied_or_unknown_falls_back_to_cognitos_defaults(
    emulator: Any, mode: str, source: str
) -> None:
    # GIVEN an endpoint that denies GetProvisionedLimit, or does not know it
    emulator.configure(quotas={"UserUpdate": 50}, provisioned_limit=mode)
    # WHEN the job reads its quota
    quotas = read_quotas(gateway(emulator), ["UserUpdate", "UserRead"])
    # THEN Cognito's documented defaults, and the reason
    assert not quotas.known and quotas.source == source
    assert quotas.rates == {"UserUpdate": 25.0, "UserRead": 120.0, "UserList": 30.0,
                            "UserCreation": 50.0, "UserResourceRead": 50.0,
                            "UserPoolResourceRead": 20.0}


# -- the plan and the summary ----------------------------------------------------------------


def _job(emulator: Any, pool: str, tmp_path: Path, **settings: Any) -> tuple[Job, list[Any]]:
    source = tmp_path / "in.csv"
    source.write_text("username,tier\nu1,gold\nu2,gold\n")
    config = build_config(None, {"input": str(source), "user_pool_id": pool,
                                 "endpoint_url": emulator.endpoint_url, "quiet": True,
                                 "report": str(tmp_path / "out.csv"), **settings})
    plans: list[PlanSummary] = []

    def confirm(plan: PlanSummary) -> bool:
        plans.append(plan)
        return True

    return Job(config, confirm=confirm, stream=io.StringIO()), plans


def test_the_plan_shows_the_quota_the_share_and_the_duration(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN a quota of 50/s read from GetProvisionedLimit and no --rate
    pool = make_pool(users=[{"username": "u1"}, {"username": "u2"}])
    emulator.configure(quotas={"UserUpdate": 50})
    job, plans = _job(emulator, pool, tmp_path)
    # WHEN it runs
    result = job.run()
    # THEN the plan names the quota and its source, the share taken and the time at it
    text = plans[0].describe()
    assert "quota:     UserUpdate 50/s (read from GetProvisionedLimit)" in text
    assert "up to 45/s = 90% of it" in text and "at 45/s" in text
    assert "warning" not in text
    # AND the summary says the same
    assert result.summary["quota"]["source"] == "read from GetProvisionedLimit"
    assert result.summary["quota"]["share"] == pytest.approx(0.9)
    assert result.summary["rate"] == "polite"


def test_the_summary_says_when_the_quota_is_cognitos_default(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN GetProvisionedLimit denied
    pool = make_pool(users=[{"username": "u1"}, {"username": "u2"}])
    emulator.configure(provisioned_limit="deny")
    job, plans = _job(emulator, pool, tmp_path, rate="80%")
    # WHEN the job runs at 80 % of the quota
    result = job.run()
    # THEN 80 % of Cognito's default 25/s, and the plan and summary say why
    assert "UserUpdate 25/s (defaults: GetProvisionedLimit denied)" in plans[0].describe()
    assert result.summary["quota"]["source"] == "defaults: GetProvisionedLimit denied"
    assert result.summary["rate_ceiling"] == pytest.approx(20.0)


def test_the_plan_warns_when_the_rate_leaves_others_little(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN --rate at the full quota
    pool = make_pool(users=[{"username": "u1"}, {"username": "u2"}])
    emulator.configure(quotas={"UserUpdate": 50})
    job, plans = _job(emulator, pool, tmp_path, rate="50")
    # WHEN it runs
    job.run()
    # THEN the plan warns that other applications are left little
    assert any("100% of the 50/s UserUpdate quota" in w for w in plans[0].warnings)


# -- neighbours ------------------------------------------------------------------------------


def test_a_neighbour_schedule_parses_and_steps() -> None:
    # GIVEN the example schedule
    schedule = parse_schedule("10@20s,30@20s,5@20s,10")
    # THEN each part has its rate and length, the last goes on for ever
    assert schedule[:3] == ((10.0, 20.0), (30.0, 20.0), (5.0, 20.0))
    assert rate_at(schedule, 0) == (10.0, 20.0)
    assert rate_at(schedule, 25) == (30.0, 15.0)
    assert rate_at(schedule, 1000)[0] == 10.0


@pytest.mark.parametrize("bad", ["", "x", "10@", "10@0s", "-1@5s", "10,20@5s"])
def test_a_bad_neighbour_schedule_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="neighbour schedule"):
        parse_schedule(bad)


class _Clock:
    def __init__(self, end: float) -> None:
        self.now, self.end = 0.0, end

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.now += seconds
        return self.now >= self.end


def test_a_paced_neighbour_draws_its_schedule_and_counts_its_throttles() -> None:
    # GIVEN a paced neighbour, 10/s for 2 s then 30/s, and a bucket refusing every other call
    clock = _Clock(end=3.0)
    taken: list[float] = []

    def take() -> bool:
        taken.append(clock.now)
        return len(taken) % 2 == 1

    neighbour = Neighbour("UserUpdate", parse_schedule("10@2s,30"), take, poisson=False,
                          seed=0, clock=clock, wait=clock.wait)
    # WHEN it runs for 3 s of its clock
    neighbour.run_here()
    # THEN 20 calls in the first 2 s and ~30 in the third, half of them refused, counted apart
    assert sum(1 for t in taken if t <= 2.0 + 1e-9) == 20
    assert 28 <= len(taken) - 20 <= 31
    counts = neighbour.snapshot()
    assert counts["calls"] == len(taken)
    refused = len(taken) // 2
    assert counts["throttled"] == refused and counts["accepted"] == len(taken) - refused


def test_neighbours_share_the_bucket_and_show_in_stats(
    emulator: Any, make_pool: Any, cognito_client: Any
) -> None:
    # GIVEN no neighbour configured, THEN the stats have none
    pool = make_pool(users=[{"username": "alice", "email": "a@example.com"}])
    assert emulator.stats()["neighbours"] == {}
    # WHEN a neighbour calling 100/s is configured through the admin API on a UserUpdate
    # quota whose bucket holds one token and refills one every 100 s
    emulator.configure(quotas={"UserUpdate": 0.01}, neighbours={"UserUpdate": "100"},
                       neighbour_arrivals="paced")
    deadline = time.monotonic() + 30
    while emulator.stats()["neighbours"]["UserUpdate"]["throttled"] == 0:
        assert time.monotonic() < deadline, "the neighbour was never refused"
        time.sleep(0.01)  # polling the emulator's counters, not waiting for an effect

    # THEN it shows in the stats, refused once the one token was gone: it drew from the quota
    counts = emulator.stats()["neighbours"]["UserUpdate"]
    assert counts["accepted"] == 1 and counts["throttled"] >= 1
    assert counts["calls"] == counts["accepted"] + counts["throttled"]
    # AND the bucket it emptied is the one the front serves from: a write is throttled now
    with pytest.raises(ClientError) as refused:
        cognito_client.admin_update_user_attributes(
            UserPoolId=pool, Username="alice",
            UserAttributes=[{"Name": "custom:tier", "Value": "gold"}])
    assert refused.value.response["Error"]["Code"] == "TooManyRequestsException"
    with pytest.raises(ValueError, match="neighbour"):
        emulator.configure(neighbours={"UserUpdate": "fast"})


def test_the_cap_note_reaches_the_progress_output_once_unless_quiet() -> None:
    from batch.view.progress import Progress

    # GIVEN progress on a plain stream, and a quiet one
    stream, silent = io.StringIO(), io.StringIO()
    # WHEN the runner's note arrives
    Progress(10, stream=stream).note("--workers 8 caps the calls in flight; raise --workers")
    Progress(10, stream=silent, quiet=True).note("anything")
    # THEN it is one line, prefixed like every message; quiet says nothing
    assert stream.getvalue() == (
        "cognito-batch: --workers 8 caps the calls in flight; raise --workers\n")
    assert silent.getvalue() == ""


def test_an_answer_in_an_unknown_shape_falls_back_to_the_defaults() -> None:
    # GIVEN an endpoint whose GetProvisionedLimit answer lacks the Limit the model promises
    from batch.pace.quota import read_quotas

    class Odd:
        def get_provisioned_limit(self, category: str) -> tuple[int, int]:
            raise KeyError("Limit")

    # WHEN the quotas are read THEN the defaults stand, and the plan can say why
    quotas = read_quotas(Odd(), ["UserUpdate"])
    assert not quotas.known and quotas.update == 25
    assert "unknown shape" in quotas.source
