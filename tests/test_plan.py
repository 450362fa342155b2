"""Planning: column -> attribute mapping, the pool schema's rules, the planner, the key scan."""

from __future__ import annotations

from typing import Any

import pytest
from fakes import SCHEMA

from batch.errors import UsageError
from batch.inputs.scan import scan_column
from batch.models import InputRow, RowResult, Status, UserUpdate
from batch.plan.mapping import (
    ColumnMapping,
    Planner,
    attribute_name,
    check_columns,
    map_columns,
    with_verified_flags,
)
from batch.plan.schema import PoolSchema, check_generic_value, check_username

EXTRA_SCHEMA: list[dict[str, Any]] = [
    {"Name": "birthdate", "AttributeDataType": "String", "Mutable": True},
    {"Name": "updated_at", "AttributeDataType": "Number", "Mutable": True},
    {"Name": "custom:notes", "AttributeDataType": "String", "Mutable": True},
    {"Name": "custom:code", "AttributeDataType": "String", "Mutable": True,
     "StringAttributeConstraints": {"MinLength": "3", "MaxLength": "5"}},
    {"Name": "custom:vip", "AttributeDataType": "Boolean", "Mutable": True},
    {"Name": "custom:joined", "AttributeDataType": "DateTime", "Mutable": True},
    {"Name": "custom:secret", "AttributeDataType": "String", "Mutable": True,
     "DeveloperOnlyAttribute": True},
]


def pool(*, auto_verified: tuple[str, ...] = ("email",)) -> PoolSchema:
    return PoolSchema.from_describe({
        "Id": "us-east-1_test", "Name": "test", "SchemaAttributes": SCHEMA + EXTRA_SCHEMA,
        "AutoVerifiedAttributes": list(auto_verified),
        "UserAttributeUpdateSettings": {
            "AttributesRequireVerificationBeforeUpdate": ["email"]},
    })


# -- attribute names and mapping -------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "attribute"),
    [
        ("email", "email"),
        ("phone_number", "phone_number"),
        ("given_name", "given_name"),
        ("updated_at", "updated_at"),
        ("department", "custom:department"),
        ("Email", "custom:Email"),  # names are case-sensitive: not the standard attribute
        ("custom:tier", "custom:tier"),
        ("dev:custom:secret", "dev:custom:secret"),
    ],
)
def test_attribute_name_rules(column: str, attribute: str) -> None:
    assert attribute_name(column, {}) == attribute


def test_attribute_name_renames_win() -> None:
    assert attribute_name("mail", {"mail": "email"}) == "email"
    assert attribute_name("email", {"email": "custom:old_email"}) == "custom:old_email"


def test_map_columns_skips_the_key_and_excluded_columns() -> None:
    mapping = ColumnMapping(username_column="login", renames={"mail": "email"},
                            exclude=frozenset({"password_hash"}))
    columns = map_columns(["login", "mail", "dept", "password_hash"], mapping, path="in.csv")
    assert columns == {"mail": "email", "dept": "custom:dept"}


def test_map_columns_needs_the_key_column() -> None:
    with pytest.raises(UsageError) as info:
        map_columns(["user", "email"], ColumnMapping(), path="in.csv")
    assert "'username'" in str(info.value)
    assert "in.csv" in str(info.value)


def test_map_columns_refuses_two_columns_for_one_attribute() -> None:
    with pytest.raises(UsageError, match="'tier' and 'custom:tier' both write"):
        map_columns(["username", "tier", "custom:tier"], ColumnMapping(), path="in.csv")


def test_map_columns_refuses_a_rename_onto_an_existing_column() -> None:
    mapping = ColumnMapping(renames={"mail": "email"})
    with pytest.raises(UsageError, match="both write attribute 'email'"):
        map_columns(["username", "email", "mail"], mapping, path="in.csv")


@pytest.mark.parametrize(
    "mapping",
    [ColumnMapping(renames={"mail": "email"}), ColumnMapping(exclude=frozenset({"secret"}))],
)
def test_map_columns_refuses_a_job_that_names_a_missing_column(mapping: ColumnMapping) -> None:
    with pytest.raises(UsageError, match="which the input lacks"):
        map_columns(["username", "email"], mapping, path="in.csv")


# -- the schema ------------------------------------------------------------------------------


def test_check_columns_passes_writable_attributes() -> None:
    columns = {"email": "email", "dept": "custom:department", "s": "dev:custom:secret"}
    check_columns(columns, pool(), path="in.csv")


def test_check_columns_suggests_a_close_name() -> None:
    with pytest.raises(UsageError) as info:
        check_columns({"departmnt": "custom:departmnt"}, pool(), path="in.csv")
    assert "not in the pool's schema" in str(info.value)
    assert "did you mean 'custom:department'?" in str(info.value)
    assert "'departmnt'" in str(info.value)


def test_check_columns_refuses_immutable_attributes() -> None:
    with pytest.raises(UsageError, match="immutable"):
        check_columns({"employee_id": "custom:employee_id"}, pool(), path="in.csv")


def test_check_columns_refuses_sub() -> None:
    with pytest.raises(UsageError, match="never writable"):
        check_columns({"sub": "sub"}, pool(), path="in.csv")


def test_check_columns_asks_for_the_dev_prefix_on_developer_only_attributes() -> None:
    with pytest.raises(UsageError, match="developer-only: write it as 'dev:custom:secret'"):
        check_columns({"secret": "custom:secret"}, pool(), path="in.csv")


def test_pool_schema_reads_describe_user_pool() -> None:
    schema = pool()
    assert schema.rules["custom:level"].min_value == 1
    assert schema.rules["custom:level"].max_value == 10
    assert schema.rules["custom:tier"].max_length == 16
    assert schema.auto_verified == frozenset({"email"})
    assert schema.verify_before_update == frozenset({"email"})
    assert "sub" not in schema.writable_names()
    assert "custom:employee_id" not in schema.writable_names()


@pytest.mark.parametrize(
    ("attribute", "value", "ok"),
    [
        ("email", "ada@example.com", True),
        ("email", "not-an-email", False),
        ("email", "a b@example.com", False),
        ("email", "ada@example", False),
        ("phone_number", "+15555550100", True),
        ("phone_number", "+1234", True),
        ("phone_number", "555-0100", False),
        ("phone_number", "15555550100", False),
        ("phone_number", "+123", False),
        ("phone_number", "+1234567890123456", False),
        ("phone_number", "+1 555 555 0100", False),
        ("birthdate", "1990-01-02", True),
        ("birthdate", "2024-02-29", True),
        ("birthdate", "2023-02-30", False),
        ("birthdate", "2023-02-29", False),
        ("birthdate", "1990/01/02", False),
        ("birthdate", "1990-1-2", False),
        ("updated_at", "1700000000", True),
        ("updated_at", "2024-01-01", False),
        ("email_verified", "true", True),
        ("email_verified", "false", True),
        ("email_verified", "True", False),
        ("phone_number_verified", "yes", False),
        ("custom:vip", "true", True),
        ("custom:vip", "1", False),
        ("custom:level", "1", True),
        ("custom:level", "10", True),
        ("custom:level", "+5", False),
        ("custom:level", "0", False),
        ("custom:level", "11", False),
        ("custom:level", "5.5", False),
        ("custom:level", "five", False),
        ("custom:tier", "x" * 16, True),
        ("custom:tier", "x" * 17, False),
        ("custom:code", "abc", True),
        ("custom:code", "ab", False),
        ("custom:joined", "2024-01-02T03:04:05Z", True),
        ("custom:joined", "yesterday", False),
        ("custom:notes", "a" * 2048, True),
        ("custom:notes", "a" * 2049, False),
        ("custom:notes", "é" * 1024, True),  # 2,048 bytes
        ("custom:notes", "é" * 1025, False),  # 1,025 characters, 2,050 bytes
        ("custom:notes", "€" * 683, False),  # 683 characters, 2,049 bytes
        ("given_name", "", True),
    ],
)
def test_value_rules(attribute: str, value: str, ok: bool) -> None:
    problem = pool().check_value(attribute, value)
    assert (problem is None) == ok, problem


def test_value_rule_messages_say_what_is_wrong() -> None:
    schema = pool()
    assert schema.check_value("custom:level", "11") == "above the maximum 10"
    assert schema.check_value("custom:level", "0") == "below the minimum 1"
    assert schema.check_value("custom:tier", "x" * 17) == "17 characters, over the maximum 16"
    assert schema.check_value("custom:notes", "é" * 1025) == "value is over 2048 bytes"
    assert schema.check_value("birthdate", "2023-02-30") == "not a real calendar date"


def test_generic_rules_apply_without_a_schema() -> None:
    assert check_generic_value("email", "nope") is not None
    assert check_generic_value("custom:anything", "x" * 3000) is not None
    assert check_generic_value("custom:anything", "five") is None


@pytest.mark.parametrize(
    ("username", "ok"),
    [("", False), ("a" * 128, True), ("a" * 129, False), ("ada lovelace", False),
     ("ada\tl", False), ("ada\x00", False), ("ada\n", False), ("ada+test@example.com", True),
     ("Ωmega-1", True), ("ada\u200blovelace", False), ("ada\u00a0l", False),
     ("\ue000ada", False), ("ada\u0301", True), ("名前", True)],
)
def test_check_username(username: str, ok: bool) -> None:
    assert (check_username(username) is None) == ok


def test_sends_message_counts_auto_verified_changes_without_a_verified_flag() -> None:
    # GIVEN a pool that auto-verifies email and phone
    schema = pool(auto_verified=("email", "phone_number"))

    # THEN a new email or phone sends a message unless marked verified in the same call
    assert schema.sends_message([("email", "a@example.com")]) == ["email"]
    assert schema.sends_message([("phone_number", "+15555550100")]) == ["sms"]
    assert schema.sends_message([("email", "a@x.io"), ("phone_number", "+15555550100")]) == [
        "email", "sms"]
    assert schema.sends_message([("email", "a@x.io"), ("email_verified", "true")]) == []
    assert schema.sends_message([("email", "a@x.io"), ("email_verified", "false")]) == ["email"]
    assert schema.sends_message([("given_name", "Ada")]) == []


def test_sends_message_ignores_attributes_the_pool_does_not_auto_verify() -> None:
    assert pool(auto_verified=("email",)).sends_message([("phone_number", "+15555550100")]) == []


# -- the planner -----------------------------------------------------------------------------


def planner(*, empty: str = "leave", mark_verified: bool = False, key: str = "username",
            schema: PoolSchema | None = None) -> Planner:
    username_column = "username" if key == "username" else key
    mapping = ColumnMapping(username_column=username_column, empty=empty,  # type: ignore[arg-type]
                            key=key)  # type: ignore[arg-type]
    header = [username_column, "given_name", "family_name", "email", "level"]
    columns = map_columns(header, mapping, path="in.csv")
    return Planner(columns, mapping, schema if schema is not None else pool(),
                   mark_verified=mark_verified)


def row(n: int = 1, *, error: str | None = None, **values: str) -> InputRow:
    base = {"username": "u1", "given_name": "", "family_name": "", "email": "", "level": ""}
    base.update(values)
    return InputRow(n, base, error)


def test_plan_makes_an_update_of_the_non_empty_cells() -> None:
    item = planner().plan(row(3, given_name="Ada", level="4"))
    assert item == UserUpdate(3, "u1", (("given_name", "Ada"), ("custom:level", "4")))


def test_empty_cells_are_left_alone_by_default() -> None:
    item = planner().plan(row(given_name="Ada"))
    assert isinstance(item, UserUpdate)
    assert item.deletes == ()
    assert item.attribute_names == ("given_name",)


def test_empty_cells_are_deleted_with_empty_delete() -> None:
    item = planner(empty="delete").plan(row(given_name="Ada"))
    assert isinstance(item, UserUpdate)
    assert item.attributes == (("given_name", "Ada"),)
    assert item.deletes == ("family_name", "email", "custom:level")


def test_a_row_with_nothing_to_write_is_unchanged() -> None:
    item = planner().plan(row(7))
    assert isinstance(item, RowResult)
    assert (item.row, item.username, item.status) == (7, "u1", Status.UNCHANGED)


def test_a_bad_value_makes_the_row_invalid_naming_the_column() -> None:
    item = planner().plan(row(2, given_name="Ada", level="42"))
    assert isinstance(item, RowResult)
    assert (item.status, item.error_code) == (Status.INVALID, "InvalidValue")
    assert item.error_message == "column 'level': above the maximum 10"


def test_a_bad_username_makes_the_row_invalid() -> None:
    item = planner().plan(row(username="has space", given_name="Ada"))
    assert isinstance(item, RowResult)
    assert (item.status, item.error_code) == (Status.INVALID, "InvalidUsername")


def test_a_malformed_row_is_invalid_with_the_readers_message() -> None:
    item = planner().plan(row(error="row has 2 fields, the header has 5"))
    assert isinstance(item, RowResult)
    assert (item.status, item.error_code) == (Status.INVALID, "MalformedRow")
    assert item.error_message == "row has 2 fields, the header has 5"


def test_mark_verified_adds_the_flags() -> None:
    item = planner(mark_verified=True).plan(row(email="a@example.com", given_name="Ada"))
    assert isinstance(item, UserUpdate)
    assert dict(item.attributes) == {
        "given_name": "Ada", "email": "a@example.com", "email_verified": "true"}
    assert pool().sends_message(item.attributes) == []


def test_with_verified_flags_keeps_an_explicit_flag() -> None:
    sets = [("email", "a@x.io"), ("email_verified", "false"), ("phone_number", "+15555550100")]
    assert with_verified_flags(sets) == sets + [("phone_number_verified", "true")]
    assert with_verified_flags([("given_name", "Ada")]) == [("given_name", "Ada")]


def test_rows_keyed_by_email_carry_the_key_not_a_username() -> None:
    p = planner(key="email")
    item = p.plan(InputRow(1, {"email": "a@example.com", "given_name": "Ada",
                               "family_name": "", "level": ""}))
    assert isinstance(item, UserUpdate)
    assert (item.username, item.key) == ("", "a@example.com")


def test_planning_without_a_schema_uses_the_generic_rules() -> None:
    mapping = ColumnMapping()
    columns = map_columns(["username", "email", "level"], mapping, path="in.csv")
    p = Planner(columns, mapping, None)
    assert isinstance(p.plan(InputRow(1, {"username": "u", "email": "x", "level": ""})),
                      RowResult)
    item = p.plan(InputRow(2, {"username": "u", "email": "", "level": "999"}))
    assert item == UserUpdate(2, "u", (("custom:level", "999"),))


# -- the key scan ----------------------------------------------------------------------------


def test_scan_finds_duplicates_with_counts_and_last_row() -> None:
    # GIVEN keys with two duplicated, and empty keys
    scan = scan_column(["a", "b", "a", "", "c", "a", "", "b", "d"])

    # THEN every row is counted, and duplicates report copies and their last row
    assert scan.rows == 9
    assert scan.duplicate("a") == (3, 6)
    assert scan.duplicate("b") == (2, 8)
    assert scan.duplicate("c") is None
    assert scan.duplicate("d") is None
    assert scan.duplicate("never seen") is None


def test_scan_ignores_empty_keys() -> None:
    scan = scan_column(["", "x", "", ""])
    assert scan.rows == 4
    assert scan.duplicate("") is None
    assert scan.counts == {}


def test_scan_of_an_empty_column() -> None:
    scan = scan_column([])
    assert (scan.rows, scan.counts) == (0, {})


def test_scan_has_no_false_duplicates_on_100k_distinct_keys() -> None:
    scan = scan_column(f"user-{i:06d}@example.com" for i in range(100_000))
    assert scan.rows == 100_000
    assert scan.counts == {}
    assert scan.duplicate("user-000001@example.com") is None


def test_scan_finds_a_duplicate_across_its_internal_chunks() -> None:
    # GIVEN the same key at row 2 and row 70,002 (the scan works in 65,536-key chunks)
    values = [f"k{i}" for i in range(100_000)]
    values[70_001] = "k1"

    # WHEN it is scanned
    scan = scan_column(values)

    # THEN the pair is found, with the later row as the last
    assert scan.duplicate("k1") == (2, 70_002)
    assert len(scan.counts) == 1


def test_scan_keys_are_case_and_space_sensitive() -> None:
    scan = scan_column(["Ada", "ada", "ada ", "ada"])
    assert scan.duplicate("ada") == (2, 4)
    assert scan.duplicate("Ada") is None
