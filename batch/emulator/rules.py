"""What real Cognito enforces and moto does not: rate quotas, attribute rules, verification.

Pure logic, no I/O: `batch.emulator` feeds it DescribeUserPool output and request bodies.
Message texts follow Cognito's where public threads show them ("Attribute does not exist in
the schema.", "Cannot modify the non-mutable attribute ...", "Invalid phone number format.",
"Invalid email address format.", AWS's "1 validation error detected: ..."); the wording for
length, number and boolean checks is the emulator's own.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

# Operation -> quota category, from "Quotas in Amazon Cognito" (operations by category):
# https://docs.aws.amazon.com/cognito/latest/developerguide/quotas.html
_UPDATES = (
    "AdminUpdateUserAttributes", "AdminDeleteUserAttributes", "AdminDisableUser",
    "AdminEnableUser", "AdminAddUserToGroup", "AdminRemoveUserFromGroup",
    "AdminUserGlobalSignOut", "AdminDeleteUser",
)
QUOTA_CATEGORIES: Mapping[str, str] = {
    **dict.fromkeys(_UPDATES, "UserUpdate"),
    "AdminGetUser": "UserRead",
    "ListUsers": "UserList",
    "ListUsersInGroup": "UserList",
    "AdminListGroupsForUser": "UserResourceRead",
    "ListGroups": "UserPoolResourceRead",
    "GetGroup": "UserPoolResourceRead",
    "DescribeUserPool": "UserPoolRead",
    "AdminCreateUser": "UserCreation",
}
DEFAULT_QUOTAS: Mapping[str, float] = {
    "UserUpdate": 25.0,
    "UserRead": 120.0,
    "UserList": 30.0,
    "UserPoolRead": 15.0,
    "UserCreation": 50.0,
    "UserResourceRead": 50.0,
    "UserPoolResourceRead": 20.0,
}
# Cognito's per-user limit covers "write user profile" requests (UpdateUserAttributes is its
# example); the emulator applies it to the attribute writes only, as before.
PER_USER_WRITE_OPERATIONS = frozenset({"AdminUpdateUserAttributes", "AdminDeleteUserAttributes"})
MAX_VALUE_BYTES = 2048
MAX_NAME_CHARS = 32
MAX_USERNAME_CHARS = 128
USERNAME_PATTERN = r"[\p{L}\p{M}\p{S}\p{N}\p{P}]+"

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+[0-9]{4,15}$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_INTEGER = re.compile(r"^-?[0-9]+$")
_CHANNELS: Mapping[str, str] = {"email": "email", "phone_number": "sms"}


class TokenBucket:
    """A token bucket refilled continuously; `try_acquire` never blocks."""

    def __init__(
        self, rate: float, capacity: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._stamp = clock()
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False

    def idle_full(self) -> bool:
        """True once the bucket has refilled, i.e. it equals a fresh one and may be dropped."""
        with self._lock:
            elapsed = self._clock() - self._stamp
            return self._tokens + elapsed * self.rate >= self.capacity


def bucket_for(rate: float, burst_seconds: float, *, clock: Callable[[], float]) -> TokenBucket:
    """A bucket holding `rate * burst_seconds` tokens, and at least one."""
    return TokenBucket(rate, max(1.0, rate * burst_seconds), clock=clock)


@dataclass(frozen=True)
class AttributeSpec:
    """One schema attribute, with constraints parsed to ints."""

    name: str
    data_type: str = "String"
    mutable: bool = True
    required: bool = False
    min_length: int | None = None
    max_length: int | None = None
    min_value: int | None = None
    max_value: int | None = None

    @classmethod
    def from_schema(cls, entry: Mapping[str, Any]) -> AttributeSpec:
        strings = entry.get("StringAttributeConstraints") or {}
        numbers = entry.get("NumberAttributeConstraints") or {}
        return cls(
            name=str(entry["Name"]),
            data_type=str(entry.get("AttributeDataType", "String")),
            mutable=bool(entry.get("Mutable", True)),
            required=bool(entry.get("Required", False)),
            min_length=_opt_int(strings.get("MinLength")),
            max_length=_opt_int(strings.get("MaxLength")),
            min_value=_opt_int(numbers.get("MinValue")),
            max_value=_opt_int(numbers.get("MaxValue")),
        )


def _opt_int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def _standard(name: str, **kw: Any) -> AttributeSpec:
    return AttributeSpec(name=name, **kw)


# Cognito lists all of these for every pool; moto drops them once a custom schema is given.
STANDARD_ATTRIBUTES: Mapping[str, AttributeSpec] = {
    spec.name: spec
    for spec in (
        _standard("sub", mutable=False, required=True, min_length=1, max_length=2048),
        *(
            _standard(name, min_length=0, max_length=2048)
            for name in (
                "name", "given_name", "family_name", "middle_name", "nickname",
                "preferred_username", "profile", "picture", "website", "email", "gender",
                "zoneinfo", "locale", "phone_number", "address",
            )
        ),
        _standard("birthdate", min_length=10, max_length=10),
        _standard("email_verified", data_type="Boolean"),
        _standard("phone_number_verified", data_type="Boolean"),
        _standard("updated_at", data_type="Number", min_value=0),
    )
}


@dataclass(frozen=True)
class PoolRules:
    """The parts of a user pool's configuration the front enforces."""

    pool_id: str
    attributes: Mapping[str, AttributeSpec]
    auto_verified: frozenset[str] = frozenset()
    require_verification: frozenset[str] = frozenset()

    @classmethod
    def from_describe(cls, user_pool: Mapping[str, Any]) -> PoolRules:
        """Build from DescribeUserPool's `UserPool`."""
        specs = dict(STANDARD_ATTRIBUTES)
        for entry in user_pool.get("SchemaAttributes", []):
            spec = AttributeSpec.from_schema(entry)
            name = spec.name
            # Developer-only attributes are written as dev:custom:x whatever the listing says.
            if entry.get("DeveloperOnlyAttribute") and not name.startswith("dev:custom:"):
                bare = name.removeprefix("dev:").removeprefix("custom:")
                name = f"dev:custom:{bare}"
            specs[name] = replace(spec, name=name)
        settings = user_pool.get("UserAttributeUpdateSettings") or {}
        return cls(
            pool_id=str(user_pool["Id"]),
            attributes=specs,
            auto_verified=frozenset(user_pool.get("AutoVerifiedAttributes") or ()),
            require_verification=frozenset(
                settings.get("AttributesRequireVerificationBeforeUpdate") or ()
            ),
        )


def validate_update(
    rules: PoolRules, attributes: Iterable[Mapping[str, Any]], *, creating: bool = False
) -> list[str]:
    """Problems with an AdminUpdateUserAttributes `UserAttributes` list; empty if it is valid.

    `creating` checks AdminCreateUser attributes instead: immutable ones may be set then.
    """
    items = list(attributes)
    shape = _shape_problems(items)
    if shape:
        # AWS reports model-constraint failures before any schema check.
        count = len(shape)
        noun = "error" if count == 1 else "errors"
        return [f"{count} validation {noun} detected: " + "; ".join(shape)]
    problems: list[str] = []
    for item in items:
        name, value = str(item["Name"]), str(item.get("Value") or "")
        spec = rules.attributes.get(name)
        if spec is None:
            problems.append(f"user.{name}: Attribute does not exist in the schema.")
        elif name == "sub" or (not spec.mutable and not creating):
            problems.append(f"Cannot modify the non-mutable attribute {name}")
        elif value == "":
            if spec.required:
                problems.append(f"user.{name}: Required attribute cannot be deleted.")
        else:
            problem = _value_problem(spec, value)
            if problem:
                problems.append(problem)
    return problems


def username_problem(username: Any) -> str | None:
    """Cognito's model constraint on ``Username`` (moto checks neither pattern nor length)."""
    if not isinstance(username, str):
        return None
    where = "Value at 'username' failed to satisfy constraint: Member must"
    if len(username) > MAX_USERNAME_CHARS:
        return f"1 validation error detected: {where} have length less than or equal to 128"
    if any(unicodedata.category(ch)[0] not in "LMSNP" for ch in username):
        return f"1 validation error detected: {where} satisfy regular expression pattern: " + (
            USERNAME_PATTERN
        )
    return None


def _shape_problems(items: list[Mapping[str, Any]]) -> list[str]:
    problems = []
    for index, item in enumerate(items, start=1):
        name, value = item.get("Name"), item.get("Value")
        where = f"'userAttributes.{index}.member"
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS:
            problems.append(
                f"Value at {where}.name' failed to satisfy constraint: "
                f"Member must have length between 1 and {MAX_NAME_CHARS}"
            )
        if value is not None and not isinstance(value, str):
            problems.append(f"Value at {where}.value' failed to satisfy constraint: string")
        elif value is not None and len(value.encode("utf-8")) > MAX_VALUE_BYTES:
            problems.append(
                f"Value at {where}.value' failed to satisfy constraint: "
                f"Member must have length less than or equal to {MAX_VALUE_BYTES}"
            )
    return problems


def _value_problem(spec: AttributeSpec, value: str) -> str | None:
    name = spec.name
    if name == "email" and not _EMAIL.match(value):
        return "Invalid email address format."
    if name == "phone_number" and not _PHONE.match(value):
        return "Invalid phone number format."
    if name == "birthdate" and not _is_birthdate(value):
        return f"user.{name}: Birthdate must be in the format YYYY-MM-DD."
    if spec.data_type == "Boolean" and value not in ("true", "false"):
        return f"user.{name}: Boolean attribute value must be 'true' or 'false'."
    if spec.data_type == "Number":
        return _number_problem(spec, value)
    if spec.data_type == "DateTime" and not _is_datetime(value):
        return f"user.{name}: DateTime attribute value is not a valid date and time."
    if spec.data_type == "String":
        length = len(value)
        if spec.max_length is not None and length > spec.max_length:
            return f"user.{name}: String must be no longer than {spec.max_length} characters."
        if spec.min_length is not None and length < spec.min_length:
            return f"user.{name}: String must be at least {spec.min_length} characters long."
    return None


def _number_problem(spec: AttributeSpec, value: str) -> str | None:
    if not _INTEGER.match(value):
        return f"user.{spec.name}: Number attribute value must be an integer."
    number = int(value)
    if spec.min_value is not None and number < spec.min_value:
        return f"user.{spec.name}: Number must be at least {spec.min_value}."
    if spec.max_value is not None and number > spec.max_value:
        return f"user.{spec.name}: Number must be at most {spec.max_value}."
    return None


def _is_birthdate(value: str) -> bool:
    if not _DATE.match(value):
        return False
    # OIDC allows year 0000 for "year withheld"; check month and day with a leap year.
    year = value[:4] if value[:4] != "0000" else "2000"
    try:
        dt.date.fromisoformat(year + value[4:])
    except ValueError:
        return False
    return True


def _is_datetime(value: str) -> bool:
    try:
        dt.datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


@dataclass
class UpdatePlan:
    """What to send moto for one valid update, and what Cognito would have done besides."""

    forward: list[dict[str, str]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    messages: dict[str, int] = field(default_factory=dict)
    pending_verification: int = 0


def needs_current_values(rules: PoolRules, attributes: Iterable[Mapping[str, Any]]) -> bool:
    """Whether `plan_update` must know the user's current email / phone number."""
    watched = rules.auto_verified | rules.require_verification
    return any(item.get("Name") in watched and item.get("Value") for item in attributes)


def plan_update(
    rules: PoolRules,
    attributes: Iterable[Mapping[str, Any]],
    current: Mapping[str, str] | None = None,
) -> UpdatePlan:
    """Split a validated update into what moto applies and the messages Cognito would send.

    A blank value deletes (moto would store ""). A changed email / phone number in a pool that
    auto-verifies it sends a message unless the same request sets `<attr>_verified` = "true";
    with AttributesRequireVerificationBeforeUpdate the new value waits for verification, which
    the emulator never sees, so it is not applied. Unchanged values send nothing.
    """
    items = [(str(i["Name"]), str(i.get("Value") or "")) for i in attributes]
    requested = dict(items)
    plan = UpdatePlan()
    held: set[str] = set()
    for name, channel in _CHANNELS.items():
        value = requested.get(name)
        if not value or name not in rules.auto_verified | rules.require_verification:
            continue
        if current is not None and current.get(name) == value:
            continue
        flag = f"{name}_verified"
        if requested.get(flag) == "true":
            continue
        if name in rules.auto_verified:
            plan.messages[channel] = plan.messages.get(channel, 0) + 1
        if name in rules.require_verification:
            held.add(name)
            plan.pending_verification += 1
        elif flag not in requested:
            # A changed address is unverified until the user confirms the code.
            items.append((flag, "false"))
    for name, value in items:
        if name in held:
            continue
        if value == "":
            plan.deletes.append(name)
        else:
            plan.forward.append({"Name": name, "Value": value})
    return plan
