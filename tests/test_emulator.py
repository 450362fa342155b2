"""The local Cognito emulator, over real HTTP with real boto3 clients."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError

from batch.emulator import (
    DEFAULT_CUSTOM_SCHEMA,
    Emulator,
    EmulatorAdmin,
    EmulatorError,
    EmulatorSettings,
    add_arguments,
)
from batch.emulator.cli import main
from batch.emulator.rules import PoolRules, TokenBucket, validate_update

PoolFactory = Callable[..., str]
ALICE = {"username": "alice", "email": "alice@example.com", "custom:employee_id": "E1"}
BOB = {"username": "bob", "email": "bob@example.com", "custom:employee_id": "E2"}
# A rate so low the bucket never refills during a test: its capacity is exactly what passes.
CRAWL = 0.001


def update(client: Any, pool_id: str, username: str, **attributes: str) -> dict[str, Any]:
    names = {key: key.replace("__", ":") for key in attributes}
    pairs = [{"Name": names[key], "Value": value} for key, value in attributes.items()]
    result: dict[str, Any] = client.admin_update_user_attributes(
        UserPoolId=pool_id, Username=username, UserAttributes=pairs
    )
    return result


def error_of(client: Any, pool_id: str, username: str, name: str, value: str) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        client.admin_update_user_attributes(
            UserPoolId=pool_id, Username=username, UserAttributes=[{"Name": name, "Value": value}]
        )
    response: dict[str, Any] = caught.value.response
    return {**response["Error"], "Status": response["ResponseMetadata"]["HTTPStatusCode"]}


def _client(endpoint_url: str) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "total_max_attempts": 1})
    return boto3.client("cognito-idp", endpoint_url=endpoint_url, config=config)


def counts(emulator: Emulator, operation: str = "AdminUpdateUserAttributes") -> dict[str, int]:
    row: dict[str, int] = emulator.stats()["operations"].get(operation, {})
    return row


# --- applying -----------------------------------------------------------------------------------
def test_valid_update_applies(
    clean_emulator: Emulator, make_pool: PoolFactory, cognito_client: Any
):
    # GIVEN a pool with alice
    pool_id = make_pool(users=[ALICE])
    # WHEN her department, level and a Boolean change
    update(
        cognito_client,
        pool_id,
        "alice",
        custom__department="eng",
        custom__level="3",
        custom__is_manager="true",
    )
    # THEN AdminGetUser shows them and the front counted one accepted call
    attributes = clean_emulator.get_user_attributes(pool_id, "alice")
    assert attributes["custom:department"] == "eng"
    assert attributes["custom:level"] == "3"
    assert attributes["custom:is_manager"] == "true"
    assert counts(clean_emulator)["accepted"] == 1


def test_setup_calls_bypass_the_front(clean_emulator: Emulator, make_pool: PoolFactory):
    pool_id = make_pool(users=[ALICE, BOB])
    clean_emulator.get_user_attributes(pool_id, "bob")
    assert clean_emulator.stats()["operations"] == {}


def test_blank_value_deletes_the_attribute(
    clean_emulator: Emulator, make_pool: PoolFactory, cognito_client: Any
):
    pool_id = make_pool(users=[{**ALICE, "custom:tier": "gold"}])
    update(cognito_client, pool_id, "alice", custom__tier="", custom__department="ops")
    attributes = clean_emulator.get_user_attributes(pool_id, "alice")
    assert "custom:tier" not in attributes
    assert attributes["custom:department"] == "ops"


def test_missing_user_and_pool_come_from_moto(make_pool: PoolFactory, cognito_client: Any):
    pool_id = make_pool()
    assert error_of(cognito_client, pool_id, "nobody", "custom:tier", "x")["Code"] == (
        "UserNotFoundException"
    )
    missing = error_of(cognito_client, "us-east-1_nothere", "nobody", "custom:tier", "x")
    assert missing["Code"] == "ResourceNotFoundException"


# --- quotas -------------------------------------------------------------------------------------
def test_quota_throttles_a_burst_and_does_not_apply_it(
    clean_emulator: Emulator, make_pool: PoolFactory, cognito_client: Any
):
    # GIVEN a UserUpdate bucket holding 3 tokens that will not refill during the test
    pool_id = make_pool(users=[ALICE, BOB])
    clean_emulator.configure(quotas={"UserUpdate": CRAWL}, burst_seconds=3 / CRAWL)
    # WHEN 6 updates arrive, spread over two users (below the per-user limit)
    outcomes = []
    for n in range(6):
        user = ("alice", "bob")[n % 2]
        try:
            update(cognito_client, pool_id, user, custom__department=f"d{n}")
            outcomes.append("ok")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])
    # THEN 3 pass, 3 are throttled with Cognito's answer, and a throttled call is not applied
    assert outcomes == ["ok"] * 3 + ["TooManyRequestsException"] * 3
    assert counts(clean_emulator)["throttled"] == 3
    assert clean_emulator.get_user_attributes(pool_id, "bob")["custom:department"] == "d1"
    assert clean_emulator.get_user_attributes(pool_id, "alice")["custom:department"] == "d2"


def test_throttled_answer_is_cognitos(
    clean_emulator: Emulator, make_pool: PoolFactory, cognito_client: Any
):
    pool_id = make_pool(users=[ALICE])
    clean_emulator.configure(quotas={"UserUpdate": CRAWL})
    update(cognito_client, pool_id, "alice", custom__tier="a")
    error = error_of(cognito_client, pool_id, "alice", "custom:tier", "b")
    assert error == {"Code": "TooManyRequestsException", "Message": "Rate exceeded", "Status": 400}


def test_per_user_write_limit(
    clean_emulator: Emulator, make_pool: PoolFactory, cognito_client: Any
):
    # GIVEN two writes per user, no account-wide limit that matters
    pool_id = make_pool(users=[ALICE, BOB])
    clean_emulator.configure(per_user_write_rate=CRAWL, burst_seconds=2 / CRAWL)
    update(cognito_client, pool_id, "alice", custom__tier="1")
    update(cognito_client, pool_id, "alice", custom__tier="2")
    # WHEN alice is written a third time
    error = error_of(cognito_client, pool_id, "alice", "custom:tier", "3")
    # THEN that write is throttled and not applied, while bob is still writable
    assert error["Code"] == "TooManyRequestsException"
    assert clean_emulator.get_user_attributes(pool_id, "alice")["custom:tier"] == "2"
    update(cognito_client, pool_id, "bob", custom__tier="1")


def test_read_quota_is_separate(
    clean_emulator: Emulator, make_pool: PoolFactory, cognito_client: Any
):
    pool_id = make_pool(users=[ALICE])
    clean_emulator.configure(quotas={"UserRead": CRAWL})
    cognito_client.admin_get_user(UserPoolId=pool_id, Username="alice")
    with pytest.raises(ClientError, match="TooManyRequestsException"):
        cognito_client.admin_get_user(UserPoolId=pool_id, Username="alice")
    update(cognito_client, pool_id, "alice", custom__tier="x")
    assert counts(clean_emulator, "AdminGetUser")["throttled"] == 1


def test_token_bucket_refills_continuously():
    now = [0.0]
    bucket = TokenBucket(rate=2.0, capacity=2.0, clock=lambda: now[0])
    assert [bucket.try_acquire() for _ in range(3)] == [True, True, False]
    now[0] = 0.5  # one token back after half a second at 2/s
    assert [bucket.try_acquire(), bucket.try_acquire()] == [True, False]


# --- faults -------------------------------------------------------------------------------------
def test_injected_500s_are_not_applied(
    clean_emulator: Emulator, make_pool: PoolFactory, cognito_client: Any
):
    pool_id = make_pool(users=[ALICE])
    clean_emulator.configure(fault_rate=1.0)
    error = error_of(cognito_client, pool_id, "alice", "custom:department", "nope")
    assert error == {"Code": "InternalErrorException", "Message": "Internal error", "Status": 500}
    assert "custom:department" not in clean_emulator.get_user_attributes(pool_id, "alice")
    assert counts(clean_emulator)["faults"] == 1


def test_dropped_connections_are_not_applied(
    clean_emulator: Emulator, make_pool: PoolFactory, cognito_client: Any
):
    pool_id = make_pool(users=[ALICE])
    clean_emulator.configure(drop_rate=1.0)
    with pytest.raises(ConnectionClosedError):
        update(cognito_client, pool_id, "alice", custom__department="nope")
    assert "custom:department" not in clean_emulator.get_user_attributes(pool_id, "alice")
    assert counts(clean_emulator)["dropped"] == 1


def test_faults_are_reproducible_from_the_seed(
    clean_emulator: Emulator, make_pool: PoolFactory, cognito_client: Any
):
    pool_id = make_pool(users=[ALICE])

    def run() -> list[str]:
        clean_emulator.configure(fault_rate=0.5, seed=7, per_user_write_rate=0)
        seen = []
        for n in range(12):
            try:
                update(cognito_client, pool_id, "alice", custom__tier=str(n))
                seen.append("ok")
            except ClientError as exc:
                seen.append(exc.response["Error"]["Code"])
        return seen

    first = run()
    assert first == run()
    assert {"ok", "InternalErrorException"} == set(first)


def test_inject_fails_every_call_after_n(
    clean_emulator: Emulator, make_pool: PoolFactory, cognito_client: Any
):
    # GIVEN an injected NotAuthorizedException after two more accepted updates
    pool_id = make_pool(users=[ALICE])
    clean_emulator.inject(
        "AdminUpdateUserAttributes",
        after=2,
        code="NotAuthorizedException",
        message="Access revoked",
    )
    # WHEN four updates follow
    update(cognito_client, pool_id, "alice", custom__tier="1")
    update(cognito_client, pool_id, "alice", custom__tier="2")
    third = error_of(cognito_client, pool_id, "alice", "custom:tier", "3")
    fourth = error_of(cognito_client, pool_id, "alice", "custom:tier", "4")
    # THEN the last two fail with that error and are not applied
    assert (
        third
        == fourth
        == {
            "Code": "NotAuthorizedException",
            "Message": "Access revoked",
            "Status": 400,
        }
    )
    assert clean_emulator.get_user_attributes(pool_id, "alice")["custom:tier"] == "2"
    assert counts(clean_emulator)["injected"] == 2
    clean_emulator.reset()  # clears injections
    update(cognito_client, pool_id, "alice", custom__tier="5")


# --- attribute rules ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rules_pool(emulator: Emulator) -> str:
    pool_id = emulator.create_pool("rules", custom_attributes=DEFAULT_CUSTOM_SCHEMA)
    emulator.seed_users(pool_id, [ALICE])
    return pool_id


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("custom:nope", "x", "user.custom:nope: Attribute does not exist in the schema."),
        ("department", "x", "user.department: Attribute does not exist in the schema."),
        ("custom:employee_id", "E9", "Cannot modify the non-mutable attribute custom:employee_id"),
        ("custom:employee_id", "", "Cannot modify the non-mutable attribute custom:employee_id"),
        ("sub", "0000", "Cannot modify the non-mutable attribute sub"),
        ("custom:department", "é" * 1025, "Member must have length less than or equal to 2048"),
        ("custom:tier", "x" * 17, "user.custom:tier: String must be no longer than 16"),
        ("custom:level", "abc", "user.custom:level: Number attribute value must be an integer."),
        ("custom:level", "2.5", "must be an integer"),
        ("custom:level", "0", "user.custom:level: Number must be at least 1."),
        ("custom:level", "11", "user.custom:level: Number must be at most 10."),
        ("custom:is_manager", "yes", "must be 'true' or 'false'"),
        ("email", "not-an-email", "Invalid email address format."),
        ("phone_number", "555-1234", "Invalid phone number format."),
        ("phone_number", "+1 425 555 1212", "Invalid phone number format."),
        ("birthdate", "1990/01/31", "YYYY-MM-DD"),
        ("birthdate", "1990-02-30", "YYYY-MM-DD"),
        ("email_verified", "yes", "user.email_verified: Boolean attribute"),
        ("phone_number_verified", "1", "user.phone_number_verified: Boolean attribute"),
        ("updated_at", "yesterday", "user.updated_at: Number attribute value must be an integer"),
    ],
)
def test_attribute_rules_reject(
    clean_emulator: Emulator,
    rules_pool: str,
    cognito_client: Any,
    name: str,
    value: str,
    message: str,
):
    # A shared pool is safe here: every case is refused, so alice never changes.
    pool_id = rules_pool
    before = clean_emulator.get_user_attributes(pool_id, "alice")
    error = error_of(cognito_client, pool_id, "alice", name, value)
    assert (error["Code"], error["Status"]) == ("InvalidParameterException", 400)
    assert message in error["Message"]
    assert clean_emulator.get_user_attributes(pool_id, "alice") == before
    assert counts(clean_emulator)["invalid"] == 1


def test_valid_standard_values_pass(
    clean_emulator: Emulator, make_pool: PoolFactory, cognito_client: Any
):
    pool_id = make_pool(users=[ALICE])
    update(
        cognito_client,
        pool_id,
        "alice",
        phone_number="+14325551212",
        birthdate="0000-02-29",
        email_verified="true",
        updated_at="1700000000",
        custom__level="10",
    )
    attributes = clean_emulator.get_user_attributes(pool_id, "alice")
    assert attributes["phone_number"] == "+14325551212"
    assert attributes["birthdate"] == "0000-02-29"


def test_developer_only_and_datetime_attributes(
    clean_emulator: Emulator, make_pool: PoolFactory, cognito_client: Any
):
    pool_id = make_pool(
        users=[ALICE],
        custom_attributes=[
            {"Name": "employee_id", "AttributeDataType": "String", "Mutable": False},
            {"Name": "secret", "AttributeDataType": "String", "DeveloperOnlyAttribute": True},
            {"Name": "joined", "AttributeDataType": "DateTime"},
        ],
    )
    update(
        cognito_client,
        pool_id,
        "alice",
        **{"dev:custom:secret": "s3"},
        custom__joined="2024-01-15T09:00:00+00:00",
    )
    assert clean_emulator.get_user_attributes(pool_id, "alice")["dev:custom:secret"] == "s3"
    assert (
        "not a valid date"
        in error_of(cognito_client, pool_id, "alice", "custom:joined", "soon")["Message"]
    )
    assert (
        "does not exist"
        in error_of(cognito_client, pool_id, "alice", "custom:secret", "x")["Message"]
    )


def test_rules_report_every_problem_line():
    rules = PoolRules.from_describe({"Id": "us-east-1_x", "SchemaAttributes": []})
    problems = validate_update(
        rules, [{"Name": "custom:a", "Value": "1"}, {"Name": "b", "Value": ""}]
    )
    assert problems == [
        "user.custom:a: Attribute does not exist in the schema.",
        "user.b: Attribute does not exist in the schema.",
    ]


def test_seeding_checks_the_schema(clean_emulator: Emulator, make_pool: PoolFactory):
    pool_id = make_pool()
    with pytest.raises(ValueError, match="custom:level"):
        clean_emulator.seed_users(pool_id, [{"username": "x", "custom:level": "99"}])


# --- verification messages ----------------------------------------------------------------------
def test_verification_before_update_holds_the_new_email(
    clean_emulator: Emulator, make_pool: PoolFactory, cognito_client: Any
):
    # GIVEN a pool that verifies email and holds changes until they are verified
    pool_id = make_pool(
        users=[ALICE], auto_verified=["email"], require_verification_before_update=["email"]
    )
    # WHEN alice's email changes, along with her department
    update(cognito_client, pool_id, "alice", email="new@example.com", custom__department="ops")
    # THEN the department applies, the email waits, and one message went out
    attributes = clean_emulator.get_user_attributes(pool_id, "alice")
    assert attributes["email"] == "alice@example.com"
    assert attributes["custom:department"] == "ops"
    stats = clean_emulator.stats()
    assert stats["messages"] == {"email": 1, "sms": 0}
    assert stats["pending_verification"] == 1


def test_marking_verified_applies_at_once_without_a_message(
    clean_emulator: Emulator, make_pool: PoolFactory, cognito_client: Any
):
    pool_id = make_pool(
        users=[ALICE], auto_verified=["email"], require_verification_before_update=["email"]
    )
    update(cognito_client, pool_id, "alice", email="new@example.com", email_verified="true")
    assert clean_emulator.get_user_attributes(pool_id, "alice")["email"] == "new@example.com"
    assert clean_emulator.stats()["messages"] == {"email": 0, "sms": 0}


def test_auto_verified_change_sends_a_message_and_unverifies(
    clean_emulator: Emulator, make_pool: PoolFactory, cognito_client: Any
):
    pool_id = make_pool(users=[{**ALICE, "email_verified": "true"}], auto_verified=["email"])
    update(cognito_client, pool_id, "alice", email="alice@example.com")  # unchanged: no message
    update(cognito_client, pool_id, "alice", email="new@example.com")
    attributes = clean_emulator.get_user_attributes(pool_id, "alice")
    assert (attributes["email"], attributes["email_verified"]) == ("new@example.com", "false")
    assert clean_emulator.stats()["messages"] == {"email": 1, "sms": 0}


# --- latency and ceiling ------------------------------------------------------------------------
def test_latency_lets_concurrent_calls_overlap(
    clean_emulator: Emulator, make_pool: PoolFactory, cognito_client: Any
):
    # GIVEN 300 ms of latency on every call
    users = [{"username": f"u{n}"} for n in range(4)]
    pool_id = make_pool(users=users)
    clean_emulator.configure(latency_ms=300)
    # WHEN four calls are made at once
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(
            pool.map(
                lambda u: update(cognito_client, pool_id, u["username"], custom__tier="t"), users
            )
        )
    # THEN the front had more than one in flight: the sleeps did not serialise them
    assert clean_emulator.stats()["in_flight_peak"] >= 2
    assert counts(clean_emulator)["accepted"] == 4


def test_ceiling_answers_without_moto_or_quota(clean_emulator: Emulator, cognito_client: Any):
    clean_emulator.configure(ceiling=True, quotas={"UserUpdate": CRAWL})
    for _ in range(5):  # no such pool: moto would have said ResourceNotFoundException
        assert (
            update(cognito_client, "us-east-1_none", "ghost", custom__x="1")["ResponseMetadata"][
                "HTTPStatusCode"
            ]
            == 200
        )
    assert counts(clean_emulator)["accepted"] == 5


# --- admin API, settings and the command line ---------------------------------------------------
def test_admin_over_http(clean_emulator: Emulator, make_pool: PoolFactory, cognito_client: Any):
    admin = EmulatorAdmin(clean_emulator.endpoint_url)
    pool_id = make_pool(users=[ALICE])
    settings = admin.configure(quotas={"UserUpdate": 50, "UserList": None}, latency_ms=1)
    assert settings["quotas"]["UserUpdate"] == 50 and "UserList" not in settings["quotas"]
    admin.inject("AdminUpdateUserAttributes", after=0, code="AccessDeniedException", status=400)
    with pytest.raises(ClientError, match="AccessDeniedException"):
        update(cognito_client, pool_id, "alice", custom__tier="x")
    assert admin.stats()["operations"]["AdminUpdateUserAttributes"]["injected"] == 1
    admin.reset()
    assert admin.stats()["operations"] == {}
    with pytest.raises(EmulatorError, match="unknown setting"):
        admin.configure(fault_rte=1)


def test_settings_are_validated():
    with pytest.raises(ValueError, match="fault_rate"):
        EmulatorSettings().updated({"fault_rate": 2})
    with pytest.raises(ValueError, match="quota"):
        EmulatorSettings().updated({"quotas": {"UserUpdate": 0}})
    with pytest.raises(ValueError, match="127.0.0.1"):
        Emulator(host="0.0.0.0")
    with pytest.raises(ValueError):
        EmulatorAdmin("http://example.com:80")


def test_bad_option_exits_2_without_traceback(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exited:
        main(["--quota", "bogus"])
    assert exited.value.code == 2
    assert "Traceback" not in capsys.readouterr().err
    assert main(["--users", "x.csv"]) == 2  # --users needs --create-pool
    assert "error:" in capsys.readouterr().err


def test_add_arguments_parses_shorthands():
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--quota", "update=50", "--quota", "UserList=off", "--ceiling"])
    assert args.quota == [("UserUpdate", 50.0), ("UserList", None)] and args.ceiling


def test_command_line_runs_until_sigterm(tmp_path: Path):
    # GIVEN a CSV of users with an empty cell
    users = tmp_path / "users.csv"
    users.write_text("user,email,department\nann,ann@example.com,\nben,,ops\n")
    ready = tmp_path / "ready.json"
    command = [
        sys.executable,
        "-m",
        "batch.emulator",
        "--create-pool",
        "cli",
        "--default-schema",
        "--users",
        str(users),
        "--quota",
        "update=5",
        "--ready-file",
        str(ready),
    ]
    # WHEN the emulator runs in its own process
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        endpoint = process.stdout.readline().strip().removeprefix("endpoint_url=")
        pool_id = process.stdout.readline().strip().removeprefix("user_pool_id=")
        # THEN it is ready, drivable over HTTP, and stops cleanly on SIGTERM
        ready_info = json.loads(ready.read_text())
        assert ready_info.pop("s3_endpoint_url").startswith("http://127.0.0.1:")
        assert ready_info == {"endpoint_url": endpoint, "user_pool_id": pool_id}
        admin = EmulatorAdmin(endpoint)
        assert admin.stats()["operations"] == {}
        assert admin.configure()["quotas"]["UserUpdate"] == 5.0
        # and the CSV's empty cells were left out
        client = _client(endpoint)
        ann = client.admin_get_user(UserPoolId=pool_id, Username="ann")["UserAttributes"]
        ben = client.admin_get_user(UserPoolId=pool_id, Username="ben")["UserAttributes"]
        assert "custom:department" not in {a["Name"] for a in ann}
        assert {"Name": "custom:department", "Value": "ops"} in ben
        assert "email" not in {a["Name"] for a in ben}
    finally:
        process.terminate()
        _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert err == ""
