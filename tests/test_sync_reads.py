"""The reads the sync's planning needs, against the emulator over real HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from batch.cognito import CognitoGateway, ConnectionSettings
from batch.emulator import Emulator
from batch.models import UserUpdate
from batch.plan.aliases import claims_of, find_conflicts, pool_holder
from batch.plan.groups import read_per_group, read_per_user, read_pool_groups

T = TypeVar("T")
PoolFactory = Callable[..., str]


def unpaced(fn: Callable[[], T]) -> T:
    return fn()


@pytest.fixture
def setup(clean_emulator: Emulator, make_pool: PoolFactory, cognito_client: Any) -> Any:
    clean_emulator.configure(quotas={"UserUpdate": 1000, "UserList": 1000})
    users = [{"username": f"u{n}", "email": f"u{n}@example.com", "custom:employee_id": f"E{n}"}
             for n in range(4)]
    pool = make_pool(users=users)
    for group in ("staff", "sales", "admins"):
        cognito_client.create_group(UserPoolId=pool, GroupName=group)
    for user, group in (("u0", "staff"), ("u0", "admins"), ("u1", "sales"), ("u2", "staff")):
        cognito_client.admin_add_user_to_group(UserPoolId=pool, Username=user, GroupName=group)
    gateway = CognitoGateway(ConnectionSettings(endpoint_url=clean_emulator.endpoint_url,
                                                region="us-east-1"))
    return gateway, pool


def test_both_ways_read_the_same_managed_memberships(setup: Any):
    gateway, pool = setup
    assert read_pool_groups(gateway, pool, unpaced) == {"staff", "sales", "admins"}
    managed = frozenset({"staff", "sales"})
    wanted = ["u0", "u1", "u3", "ghost"]
    per_user = read_per_user(gateway, pool, wanted, managed, unpaced)
    # admins is not managed: never read into the plan; ghost does not exist: left out
    assert per_user == {"u0": {"staff"}, "u1": {"sales"}, "u3": frozenset()}
    per_group = read_per_group(gateway, pool, wanted, managed, unpaced)
    assert {k: v for k, v in per_group.items() if k != "ghost"} == per_user


def test_pool_holder_names_who_holds_an_alias_value(setup: Any):
    gateway, pool = setup
    holder = pool_holder(gateway, pool, unpaced)
    updates = [UserUpdate(1, "u3", (("email", "u0@example.com"),)),
               UserUpdate(2, "u1", (("email", "u1@example.com"),))]
    conflicts = find_conflicts(claims_of(updates, frozenset({"email"})), holder)
    assert list(conflicts) == [1]
    assert conflicts[1].error_message == "email is already held by user 'u0'"
