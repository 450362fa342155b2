"""The emulator for the sync's operations, over real HTTP with a real boto3 client: one quota
bucket per category, GetProvisionedLimit per category, and Cognito's rules where moto differs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from batch.emulator import Emulator
from batch.emulator.rules import DEFAULT_QUOTAS, QUOTA_CATEGORIES

PoolFactory = Callable[..., str]
CRAWL = 0.001  # a bucket that never refills during a test: one call passes
ALICE = {"username": "alice", "email": "alice@example.com", "custom:employee_id": "E1"}
BOB = {"username": "bob", "email": "bob@example.com", "custom:employee_id": "E2"}

# "Quotas in Amazon Cognito", operations by category (see /docs/sync.md for the citation).
COGNITO_TABLE = {
    "AdminCreateUser": ("UserCreation", 50.0),
    "AdminUpdateUserAttributes": ("UserUpdate", 25.0),
    "AdminDeleteUserAttributes": ("UserUpdate", 25.0),
    "AdminDisableUser": ("UserUpdate", 25.0),
    "AdminEnableUser": ("UserUpdate", 25.0),
    "AdminAddUserToGroup": ("UserUpdate", 25.0),
    "AdminRemoveUserFromGroup": ("UserUpdate", 25.0),
    "AdminUserGlobalSignOut": ("UserUpdate", 25.0),
    "AdminDeleteUser": ("UserUpdate", 25.0),
    "AdminListGroupsForUser": ("UserResourceRead", 50.0),
    "AdminGetUser": ("UserRead", 120.0),
    "ListUsers": ("UserList", 30.0),
    "ListUsersInGroup": ("UserList", 30.0),
    "ListGroups": ("UserPoolResourceRead", 20.0),
    "GetGroup": ("UserPoolResourceRead", 20.0),
    "DescribeUserPool": ("UserPoolRead", 15.0),
}


def code_of(call: Callable[[], Any]) -> str:
    try:
        call()
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "ok"


def test_every_operation_has_cognitos_category_and_default_rate():
    for operation, (category, rate) in COGNITO_TABLE.items():
        assert QUOTA_CATEGORIES[operation] == category, operation
        assert DEFAULT_QUOTAS[category] == rate, category


def test_each_category_is_its_own_bucket_shared_by_its_operations(
    clean_emulator: Emulator, make_pool: PoolFactory, cognito_client: Any
):
    # GIVEN a pool with a group, and every category allowing exactly one call
    pool = make_pool(users=[ALICE, BOB])
    cognito_client.create_group(UserPoolId=pool, GroupName="staff")
    clean_emulator.configure(quotas=dict.fromkeys(DEFAULT_QUOTAS, CRAWL))
    ids = {"UserPoolId": pool}
    # WHEN one call of each category is made
    first = {
        "UserCreation": lambda: cognito_client.admin_create_user(
            **ids, Username="carol", MessageAction="SUPPRESS"),
        "UserUpdate": lambda: cognito_client.admin_add_user_to_group(
            **ids, Username="alice", GroupName="staff"),
        "UserResourceRead": lambda: cognito_client.admin_list_groups_for_user(
            **ids, Username="alice"),
        "UserList": lambda: cognito_client.list_users_in_group(**ids, GroupName="staff"),
        "UserPoolResourceRead": lambda: cognito_client.list_groups(**ids),
        "UserRead": lambda: cognito_client.admin_get_user(**ids, Username="alice"),
    }
    # THEN each passes: no category spends another's quota
    assert {category: code_of(call) for category, call in first.items()} == dict.fromkeys(
        first, "ok"
    )
    # AND a second operation of the same category is throttled, whichever it is
    second = {
        "AdminDisableUser": lambda: cognito_client.admin_disable_user(**ids, Username="bob"),
        "AdminEnableUser": lambda: cognito_client.admin_enable_user(**ids, Username="bob"),
        "AdminRemoveUserFromGroup": lambda: cognito_client.admin_remove_user_from_group(
            **ids, Username="alice", GroupName="staff"),
        "ListUsers": lambda: cognito_client.list_users(**ids),
        "GetGroup": lambda: cognito_client.get_group(**ids, GroupName="staff"),
        "AdminCreateUser": lambda: cognito_client.admin_create_user(
            **ids, Username="dave", MessageAction="SUPPRESS"),
    }
    assert {op: code_of(call) for op, call in second.items()} == dict.fromkeys(
        second, "TooManyRequestsException"
    )
    # AND a throttled disable was not applied
    clean_emulator.configure(defaults=True)
    assert cognito_client.admin_get_user(**ids, Username="bob")["Enabled"] is True


@pytest.mark.parametrize("category", ["UserCreation", "UserResourceRead", "UserPoolResourceRead"])
def test_provisioned_limit_answers_each_category(
    clean_emulator: Emulator, cognito_client: Any, category: str
):
    clean_emulator.configure(quotas={category: 7})
    answer = cognito_client.get_provisioned_limit(
        LimitDefinition={"LimitClass": "API_CATEGORY", "Attributes": {"Category": category}}
    )
    assert answer["Limit"]["ProvisionedLimitValue"] == 7
    assert answer["Limit"]["FreeLimitValue"] == int(DEFAULT_QUOTAS[category])


def test_creating_an_existing_user_is_username_exists_and_keeps_the_user(
    clean_emulator: Emulator, make_pool: PoolFactory, cognito_client: Any
):
    # GIVEN alice in a group
    pool = make_pool(users=[ALICE])
    cognito_client.create_group(UserPoolId=pool, GroupName="staff")
    cognito_client.admin_add_user_to_group(UserPoolId=pool, Username="alice", GroupName="staff")
    sub = clean_emulator.get_user_attributes(pool, "alice")["sub"]
    # WHEN she is created again, suppressed or resending
    for action in ("SUPPRESS", "RESEND"):
        code = code_of(lambda a=action: cognito_client.admin_create_user(  # type: ignore[misc]
            UserPoolId=pool, Username="alice", MessageAction=a))
        # THEN SUPPRESS is UsernameExistsException; RESEND for a confirmed-less seeded user
        # (FORCE_CHANGE_PASSWORD) is answered without replacing her
        assert code == ("UsernameExistsException" if action == "SUPPRESS" else "ok")
    # AND she is the same user: same sub, same attributes, same group
    after = clean_emulator.get_user_attributes(pool, "alice")
    assert after["sub"] == sub and after["email"] == "alice@example.com"
    groups = cognito_client.admin_list_groups_for_user(UserPoolId=pool, Username="alice")
    assert [g["GroupName"] for g in groups["Groups"]] == ["staff"]


def test_create_checks_attributes_and_counts_only_invitations(
    clean_emulator: Emulator, make_pool: PoolFactory, cognito_client: Any
):
    pool = make_pool()
    ids = {"UserPoolId": pool}
    bad = [{"Name": "custom:nope", "Value": "x"}]
    assert code_of(lambda: cognito_client.admin_create_user(
        **ids, Username="x", UserAttributes=bad, MessageAction="SUPPRESS"
    )) == "InvalidParameterException"
    email = [{"Name": "email", "Value": "c@example.com"}]
    cognito_client.admin_create_user(**ids, Username="c", UserAttributes=email,
                                     MessageAction="SUPPRESS")
    assert clean_emulator.stats()["messages"] == {"email": 0, "sms": 0}
    cognito_client.admin_create_user(**ids, Username="d", UserAttributes=email,
                                     DesiredDeliveryMediums=["EMAIL"])
    assert clean_emulator.stats()["messages"] == {"email": 1, "sms": 0}


def test_group_changes_for_a_missing_group_are_resource_not_found(
    make_pool: PoolFactory, cognito_client: Any
):
    pool = make_pool(users=[ALICE])
    for call in (cognito_client.admin_add_user_to_group,
                 cognito_client.admin_remove_user_from_group):
        code = code_of(lambda c=call: c(UserPoolId=pool, Username="alice", GroupName="nope"))
        assert code == "ResourceNotFoundException"
