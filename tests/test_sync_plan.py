"""Planning the desired state (issue 21): pure functions, no Cognito."""

from __future__ import annotations

import pytest

from batch.errors import UsageError
from batch.models import InputRow, RowResult, Status, UserUpdate
from batch.plan.aliases import Claim, alias_attributes, claims_of, find_conflicts
from batch.plan.desired import (
    Current,
    Desired,
    desired_of,
    parse_enabled,
    parse_groups,
    plan_row,
    sync_columns,
)
from batch.plan.groups import (
    check_groups_exist,
    estimate_group_sizes,
    managed_groups,
    membership_read_cost,
)
from batch.plan.leavers import MaxDisable, PoolUser, number_leavers, plan_disable_missing
from batch.plan.operations import CATEGORY, Kind

MANAGED = frozenset({"staff", "sales", "ops"})


def kinds(ops: tuple[object, ...]) -> list[tuple[str, str]]:
    return [(op.kind.value, op.group) for op in ops]  # type: ignore[attr-defined]


# --- columns -----------------------------------------------------------------------------------
def test_enabled_and_groups_cells():
    assert parse_enabled("true") is True and parse_enabled(" FALSE ") is False
    assert parse_enabled("") is None
    with pytest.raises(ValueError):
        parse_enabled("yes")
    assert parse_groups("staff; sales;;") == {"staff", "sales"}
    assert parse_groups("") == frozenset()
    with pytest.raises(ValueError):
        parse_groups("a" * 129)
    assert sync_columns(["username", "groups", "email"]) == ("groups",)


def test_desired_of_keeps_a_row_that_only_sets_groups_or_enabled():
    unchanged = RowResult(1, "alice", Status.UNCHANGED, error_message="no attribute values")
    row = InputRow(1, {"username": "alice", "enabled": "false", "groups": ""})
    desired = desired_of(row, unchanged)
    assert desired == Desired(1, "alice", None, enabled=False, groups=frozenset())
    # without the sync columns the row stays today's "unchanged"
    assert desired_of(InputRow(1, {"username": "alice"}), unchanged) is unchanged
    bad = desired_of(InputRow(2, {"username": "bob", "enabled": "nope"}), unchanged)
    assert isinstance(bad, RowResult) and bad.status is Status.INVALID
    assert "nope" not in bad.error_message and "'enabled'" in bad.error_message


# --- plan_row ----------------------------------------------------------------------------------
UPDATE = UserUpdate(1, "alice", (("email", "a@example.com"),))


def test_a_joiner_is_created_with_its_attributes_disabled_and_grouped():
    desired = Desired(1, "alice", UPDATE, enabled=False, groups=frozenset({"staff"}))
    ops = plan_row(desired, Current(exists=False), create_missing=True, managed=MANAGED)
    assert kinds(ops) == [("create", ""), ("disable", ""), ("add_to_group", "staff")]
    assert ops[0].update is not None and ops[0].update.attributes == UPDATE.attributes
    assert [op.category for op in ops] == ["UserCreation", "UserUpdate", "UserUpdate"]


def test_a_missing_user_without_create_missing_plans_nothing():
    desired = Desired(1, "alice", UPDATE, enabled=True)
    assert plan_row(desired, Current(exists=False), create_missing=False, managed=MANAGED) == ()


def test_a_mover_gets_the_fewest_calls_and_unmanaged_groups_are_never_touched():
    # GIVEN alice in staff, ops and a hand-made admins; the row wants sales and staff
    current = Current(True, enabled=True, groups=frozenset({"staff", "ops", "admins"}))
    desired = Desired(1, "alice", UPDATE, enabled=True, groups=frozenset({"sales", "staff"}))
    ops = plan_row(desired, current, create_missing=True, managed=MANAGED)
    # THEN one update, ops removed, sales added; enabled and staff cost nothing; admins stays
    assert kinds(ops) == [("update", ""), ("remove_from_group", "ops"), ("add_to_group", "sales")]


def test_an_empty_groups_cell_removes_every_managed_group_and_no_column_touches_none():
    current = Current(True, enabled=False, groups=frozenset({"staff", "admins"}))
    empty = Desired(1, "alice", None, enabled=True, groups=frozenset())
    ops = plan_row(empty, current, create_missing=False, managed=MANAGED)
    assert kinds(ops) == [("remove_from_group", "staff"), ("enable", "")]
    no_column = Desired(1, "alice", None, enabled=None, groups=None)
    assert plan_row(no_column, current, create_missing=False, managed=MANAGED) == ()


def test_every_kind_declares_its_category():
    assert CATEGORY == {kind: ("UserCreation" if kind is Kind.CREATE else "UserUpdate")
                        for kind in Kind}


# --- groups ------------------------------------------------------------------------------------
def test_managed_groups_default_to_those_named_and_the_flag_replaces_them():
    cells = [frozenset({"staff"}), None, frozenset(), frozenset({"sales", "staff"})]
    assert managed_groups(cells) == {"staff", "sales"}
    assert managed_groups(cells, ["ops"]) == {"ops"}


def test_unknown_groups_stop_the_job_listing_them():
    check_groups_exist({"staff"}, {"staff", "admins"})
    with pytest.raises(UsageError, match=r"no groups 'ghost', 'zzz' .*nothing was written"):
        check_groups_exist({"staff", "zzz", "ghost"}, {"staff"})


def test_membership_reads_take_the_cheaper_way():
    # A nightly file of 10,000 users in two groups: per group (168 pages at 30/s) wins
    whole = membership_read_cost(users=10_000, group_sizes={"staff": 9_000, "sales": 1_000})
    assert whole.way == "per_group"
    assert whole.per_user_seconds == pytest.approx(200.0)
    assert whole.per_group_seconds == pytest.approx((150 + 17) / 30)
    # Ten changed users in a pool whose groups hold thousands: per user wins
    few = membership_read_cost(users=10, group_sizes={"staff": 9_000, "sales": 1_000})
    assert few.way == "per_user"
    # The estimate scales the rows that list a group by the share of the pool they cover
    sizes = estimate_group_sizes([frozenset({"staff"}), frozenset()], frozenset({"staff", "ops"}),
                                 input_users=2, pool_users=1_000)
    assert sizes == {"staff": 500, "ops": 0}


# --- aliases -----------------------------------------------------------------------------------
def test_alias_attributes_of_a_pool():
    pool = {"AliasAttributes": ["email", "preferred_username"], "UsernameAttributes": None}
    assert alias_attributes(pool) == {"email", "preferred_username"}
    assert alias_attributes({"UsernameAttributes": ["phone_number"]}) == {"phone_number"}
    assert alias_attributes({}) == frozenset()


def test_a_value_held_in_the_pool_or_asked_twice_in_the_file_is_an_alias_conflict():
    updates = [
        UserUpdate(1, "alice", (("email", "A@example.com"), ("name", "x"))),  # alice keeps hers
        UserUpdate(2, "bob", (("email", "a@example.com"),)),  # alice holds it (any case)
        UserUpdate(3, "carol", (("phone_number", "+15550100"),)),  # free, asked twice
        UserUpdate(4, "dave", (("phone_number", "+15550100"),)),
        UserUpdate(5, "erin", (("email", "e@example.com"),)),  # free, asked once
    ]
    claims = claims_of(updates, frozenset({"email", "phone_number"}))
    assert Claim(1, "alice", "email", "A@example.com") in claims and len(claims) == 5
    pool = {("email", "A@example.com"): "alice"}
    conflicts = find_conflicts(claims, lambda attr, value: pool.get((attr, value)))
    assert sorted(conflicts) == [2, 3, 4]
    assert conflicts[2].status is Status.INVALID and conflicts[2].error_code == "AliasConflict"
    assert conflicts[2].error_message == "email is already held by user 'alice'"
    also = "phone_number is also asked for by user 'dave' in this file"
    assert conflicts[3].error_message == also
    assert all("example" not in r.error_message and "555" not in r.error_message
               for r in conflicts.values())


# --- leavers -----------------------------------------------------------------------------------
def pool_of(n: int, disabled: int = 0) -> list[PoolUser]:
    return [PoolUser(f"u{i:03}", f"u{i:03}", i >= disabled) for i in range(n)]


def test_max_disable_parses_counts_and_shares():
    assert MaxDisable.parse("10%").limit(1_000) == 100
    assert MaxDisable.parse("7").limit(1_000) == 7
    assert MaxDisable.parse("0%").limit(5) == 0
    for bad in ("-1", "101%", "ten", "", "1.5"):
        with pytest.raises(UsageError, match="--max-disable"):
            MaxDisable.parse(bad)


def test_disable_missing_disables_only_enabled_absent_users():
    users = pool_of(100, disabled=2)  # u000, u001 are already disabled
    present = [u.key for u in users[:95]]
    got = plan_disable_missing(users, present, input_rows=95, max_disable=MaxDisable.parse("10%"))
    assert got == ["u095", "u096", "u097", "u098", "u099"]


def test_a_truncated_input_is_refused_with_the_count():
    users = pool_of(1_000)
    present = [u.key for u in users[:100]]  # 10 % of the pool
    with pytest.raises(UsageError) as caught:
        plan_disable_missing(users, present, input_rows=100, max_disable=MaxDisable.parse("10%"))
    message = str(caught.value)
    assert "\n" not in message
    assert "would disable 900 of the pool's 1000 users" in message and "(100)" in message


def test_an_empty_input_never_disables_the_pool():
    with pytest.raises(UsageError, match="no rows"):
        plan_disable_missing(pool_of(3), [], input_rows=0, max_disable=MaxDisable.parse("100%"))


def test_a_resume_counts_the_leavers_an_earlier_attempt_disabled_against_max_disable():
    # u095..u097 were disabled by the killed attempt; u098, u099 and a new u100 are left
    users = [*pool_of(100)[:95], *(PoolUser(f"u{i:03}", f"u{i:03}", i >= 98)
                                   for i in range(95, 101))]
    present = [u.key for u in users[:95]]
    earlier = ["u095", "u096", "u097"]
    got = plan_disable_missing(users, present, input_rows=95, disabled=earlier,
                               max_disable=MaxDisable.parse("6"))
    assert got == ["u098", "u099", "u100"]  # 3 + 3 = 6: allowed
    with pytest.raises(UsageError) as caught:
        plan_disable_missing(users, present, input_rows=95, disabled=earlier,
                             max_disable=MaxDisable.parse("5"))
    assert "would disable 6 of the pool's 101 users (3 of them by an earlier attempt" in str(
        caught.value)


def test_journaled_leavers_keep_their_rows_and_new_ones_never_reuse_a_number():
    journaled = {"u05": (11, True), "u07": (12, False), "u08": (13, False), "u09": (14, True)}
    rows = number_leavers(["a00", "u07", "u09", "u10"], journaled, after=20)
    # u05 and u09 finished: kept (never fed again); u07 still to disable: its row; u08 no
    # longer missing: settled; a00, u10 new: after 20, sorted
    assert rows.disable == [(11, "u05"), (12, "u07"), (14, "u09"), (21, "a00"), (22, "u10")]
    assert rows.settled == [(13, "u08")]
