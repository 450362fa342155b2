"""The pool's attribute schema (from DescribeUserPool) and Cognito's value rules.

Checked before the first write, so a misspelt column stops the job instead of failing every
row, and a bad value fails its row with a reason naming the column instead of costing a call.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_VALUE_BYTES = 2048
MAX_USERNAME_CHARS = 128

STANDARD_ATTRIBUTES = frozenset(
    {
        "address", "birthdate", "email", "email_verified", "family_name", "gender",
        "given_name", "locale", "middle_name", "name", "nickname", "phone_number",
        "phone_number_verified", "picture", "preferred_username", "profile", "website",
        "zoneinfo", "updated_at",
    }
)
NEVER_WRITABLE = frozenset({"sub", "identities", "cognito:user_status", "cognito:mfa_enabled"})
VERIFIED_FLAG = {"email": "email_verified", "phone_number": "phone_number_verified"}

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+[0-9]{4,15}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INTEGER = re.compile(r"^-?[0-9]+$")
# Cognito's username pattern is [\p{L}\p{M}\p{S}\p{N}\p{P}]+: letters, marks, symbols,
# numbers, punctuation. Not separators (Z*) nor "other" (C*: control, format such as zero-width
# spaces, private use, unassigned). The regex catches the common cases; non-ASCII names are
# checked by Unicode category.
_BAD_USERNAME_CHAR = re.compile(r"[\s\x00-\x1f\x7f]")
_USERNAME_CATEGORIES = frozenset("LMSNP")


@dataclass(frozen=True, slots=True)
class AttributeRule:
    """One schema attribute as DescribeUserPool reports it."""

    name: str
    data_type: str = "String"
    mutable: bool = True
    developer_only: bool = False
    required: bool = False
    min_length: int | None = None
    max_length: int | None = None
    min_value: int | None = None
    max_value: int | None = None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class PoolSchema:
    """What a pool lets an admin write."""

    pool_id: str
    pool_name: str
    rules: Mapping[str, AttributeRule]
    auto_verified: frozenset[str] = frozenset()
    verify_before_update: frozenset[str] = frozenset()
    username_attributes: frozenset[str] = frozenset()

    @classmethod
    def from_describe(cls, pool: Mapping[str, Any]) -> PoolSchema:
        rules: dict[str, AttributeRule] = {}
        for attr in pool.get("SchemaAttributes", []):
            s = attr.get("StringAttributeConstraints") or {}
            n = attr.get("NumberAttributeConstraints") or {}
            name = str(attr["Name"])
            dev = bool(attr.get("DeveloperOnlyAttribute", False))
            rule = AttributeRule(
                name=name,
                data_type=str(attr.get("AttributeDataType", "String")),
                mutable=bool(attr.get("Mutable", True)),
                developer_only=dev,
                required=bool(attr.get("Required", False)),
                min_length=_int_or_none(s.get("MinLength")),
                max_length=_int_or_none(s.get("MaxLength")),
                min_value=_int_or_none(n.get("MinValue")),
                max_value=_int_or_none(n.get("MaxValue")),
            )
            rules[name] = rule
            if dev and name.startswith("custom:"):
                rules["dev:" + name] = rule
        for name in STANDARD_ATTRIBUTES - set(rules):
            # Cognito lists every standard attribute; some emulators list only custom ones.
            kind = "Boolean" if name.endswith("_verified") else (
                "Number" if name == "updated_at" else "String")
            rules[name] = AttributeRule(name=name, data_type=kind)
        settings = pool.get("UserAttributeUpdateSettings") or {}
        return cls(
            pool_id=str(pool.get("Id", "")),
            pool_name=str(pool.get("Name", "")),
            rules=rules,
            auto_verified=frozenset(pool.get("AutoVerifiedAttributes") or ()),
            verify_before_update=frozenset(
                settings.get("AttributesRequireVerificationBeforeUpdate") or ()
            ),
            username_attributes=frozenset(pool.get("UsernameAttributes") or ()),
        )

    def check_attribute(self, name: str) -> str | None:
        """Why ``name`` cannot be written at all, or None if it can."""
        if name in NEVER_WRITABLE:
            return f"{name!r} is never writable"
        rule = self.rules.get(name)
        if rule is None:
            close = difflib.get_close_matches(name, self.writable_names(), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            return f"attribute {name!r} is not in the pool's schema{hint}"
        if not rule.mutable:
            return f"attribute {name!r} is immutable (set only when a user is created)"
        if rule.developer_only and not name.startswith("dev:"):
            return f"attribute {name!r} is developer-only: write it as 'dev:{name}'"
        return None

    def writable_names(self) -> list[str]:
        return sorted(n for n, r in self.rules.items() if r.mutable and n not in NEVER_WRITABLE)

    def check_value(self, name: str, value: str) -> str | None:
        """Why ``value`` is not acceptable for ``name`` (assumed writable), or None."""
        problem = check_generic_value(name, value)
        if problem:
            return problem
        rule = self.rules.get(name)
        if rule is None or value == "":
            return None
        if rule.data_type == "Number":
            if not _INTEGER.match(value):
                return "not a whole number"
            number = int(value)
            if rule.min_value is not None and number < rule.min_value:
                return f"below the minimum {rule.min_value}"
            if rule.max_value is not None and number > rule.max_value:
                return f"above the maximum {rule.max_value}"
        elif rule.data_type == "Boolean":
            if value not in ("true", "false"):
                return "not 'true' or 'false'"
        elif rule.data_type == "DateTime":
            try:
                dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return "not an ISO 8601 date-time"
        else:
            if rule.max_length is not None and len(value) > rule.max_length:
                return f"{len(value)} characters, over the maximum {rule.max_length}"
            if rule.min_length is not None and len(value) < rule.min_length:
                return f"{len(value)} characters, under the minimum {rule.min_length}"
        return None

    def sends_message(self, attributes: Iterable[tuple[str, str]]) -> list[str]:
        """Which verification messages an update would make Cognito send."""
        values = dict(attributes)
        sent = []
        for attr, flag in VERIFIED_FLAG.items():
            if values.get(attr) and attr in self.auto_verified and values.get(flag) != "true":
                sent.append("sms" if attr == "phone_number" else "email")
        return sent


def check_generic_value(name: str, value: str) -> str | None:
    """The rules every pool shares: size and the standard attributes' formats."""
    if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
        return f"value is over {MAX_VALUE_BYTES} bytes"
    if value == "":
        return None
    if name == "email" and not _EMAIL.match(value):
        return "not an email address"
    if name == "phone_number" and not _PHONE.match(value):
        return "not an E.164 phone number ('+' then digits, e.g. +14325551212)"
    if name in ("email_verified", "phone_number_verified") and value not in ("true", "false"):
        return "not 'true' or 'false'"
    if name == "birthdate":
        if not _DATE.match(value):
            return "not a YYYY-MM-DD date"
        # OIDC lets a user withhold the year as 0000; check the rest in a leap year.
        checked = "2000" + value[4:] if value.startswith("0000") else value
        try:
            dt.date.fromisoformat(checked)
        except ValueError:
            return "not a real calendar date"
    if name == "updated_at" and (not _INTEGER.match(value) or value.startswith("-")):
        return "not a number of seconds since the epoch"
    return None


def check_username(username: str) -> str | None:
    """Why Cognito would refuse ``username``, or None."""
    if username == "":
        return "empty username"
    if len(username) > MAX_USERNAME_CHARS:
        return f"username is {len(username)} characters, over {MAX_USERNAME_CHARS}"
    if _BAD_USERNAME_CHAR.search(username):
        return "username has whitespace or control characters"
    if not username.isascii():
        for ch in username:
            category = unicodedata.category(ch)
            if category[0] not in _USERNAME_CATEGORIES:
                code_point = f"U+{ord(ch):04X}, {category}"
                return f"username has an invisible or unassigned character ({code_point})"
    return None
