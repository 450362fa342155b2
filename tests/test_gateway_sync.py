"""The gateway's sync operations against the emulator over real HTTP: create, disable/enable,
group changes and membership reads, and their errors mapped into the project's tree."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from batch.cognito import CognitoGateway, ConnectionSettings
from batch.emulator import Emulator
from batch.errors import FatalError, RowError

PoolFactory = Callable[..., str]
ALICE = {"username": "alice", "email": "alice@example.com", "custom:employee_id": "E1"}


@pytest.fixture
def gateway(clean_emulator: Emulator) -> CognitoGateway:
    return CognitoGateway(ConnectionSettings(endpoint_url=clean_emulator.endpoint_url,
                                             region="us-east-1"))


def test_create_user_suppresses_by_default_and_invites_by_email(
    clean_emulator: Emulator, make_pool: PoolFactory, gateway: CognitoGateway
):
    pool = make_pool()
    gateway.create_user(pool, "carol", [("email", "c@example.com"), ("custom:tier", "gold")])
    assert clean_emulator.stats()["messages"]["email"] == 0
    assert gateway.get_user(pool, "carol")["custom:tier"] == "gold"
    gateway.create_user(pool, "dave", [("email", "d@example.com")], invite=True)
    assert clean_emulator.stats()["messages"] == {"email": 1, "sms": 0}


def test_create_of_an_existing_user_is_a_row_error(make_pool: PoolFactory, gateway: CognitoGateway):
    pool = make_pool(users=[ALICE])
    with pytest.raises(RowError) as caught:
        gateway.create_user(pool, "alice", [("email", "x@example.com")])
    assert caught.value.code == "UsernameExistsException"
    assert caught.value.operation == "admin_create_user"


def test_create_sends_no_temporary_password() -> None:
    # A unit test with a fake client: what the gateway sends, whatever the endpoint logs.
    sent: dict[str, Any] = {}

    class Client:
        def admin_create_user(self, **params: Any) -> dict[str, Any]:
            sent.update(params)
            return {"User": {}}

    gateway = CognitoGateway(ConnectionSettings(), client=Client())
    gateway.create_user("pool", "u", [("phone_number", "+15550100")], invite=True)
    assert "TemporaryPassword" not in sent and "MessageAction" not in sent
    assert sent["DesiredDeliveryMediums"] == ["SMS"]
    gateway.create_user("pool", "u", [])
    assert sent["MessageAction"] == "SUPPRESS" and "TemporaryPassword" not in sent


def test_disable_and_enable(
    cognito_client: Any, make_pool: PoolFactory, gateway: CognitoGateway
):
    pool = make_pool(users=[ALICE])
    gateway.disable_user(pool, "alice")
    assert cognito_client.admin_get_user(UserPoolId=pool, Username="alice")["Enabled"] is False
    gateway.enable_user(pool, "alice")
    assert cognito_client.admin_get_user(UserPoolId=pool, Username="alice")["Enabled"] is True
    with pytest.raises(RowError, match="UserNotFoundException"):
        gateway.disable_user(pool, "nobody")


def test_group_changes_and_membership_reads(
    clean_emulator: Emulator, cognito_client: Any, make_pool: PoolFactory, gateway: CognitoGateway
):
    clean_emulator.configure(quotas={"UserUpdate": 1000})
    users = [{"username": f"u{n:03}", "custom:employee_id": f"E{n}"} for n in range(65)]
    pool = make_pool(users=users)
    for name in ("b-staff", "a-admins"):
        cognito_client.create_group(UserPoolId=pool, GroupName=name)
    for user in users:  # 65 members: ListUsersInGroup takes two pages
        gateway.add_user_to_group(pool, user["username"], "b-staff")
    gateway.add_user_to_group(pool, "u000", "a-admins")
    assert gateway.list_groups(pool) == ["a-admins", "b-staff"]
    assert gateway.list_groups_for_user(pool, "u000") == ["a-admins", "b-staff"]
    members = gateway.list_users_in_group(pool, "b-staff")
    assert sorted(members) == [u["username"] for u in users]
    gateway.remove_user_from_group(pool, "u000", "b-staff")
    assert gateway.list_groups_for_user(pool, "u000") == ["a-admins"]
    # A group that does not exist: fatal (the plan checked every group before writing)
    with pytest.raises(FatalError, match="ResourceNotFoundException"):
        gateway.add_user_to_group(pool, "u001", "nope")
