"""From input rows to user updates: map columns to attributes, validate, decide.

Mapping rules: one column holds the user key (default ``username``); every other column is an
attribute unless excluded. Cognito's standard attribute names pass as they are; any other name
gets the ``custom:`` prefix unless it already has ``custom:`` or ``dev:``. A job file may rename
columns (``[columns]``) and exclude them. An empty cell leaves the attribute alone, unless
``empty = "delete"``, which deletes it (AdminDeleteUserAttributes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from batch.errors import UsageError
from batch.models import InputRow, RowResult, Status, UserUpdate
from batch.plan.schema import (
    NEVER_WRITABLE,
    STANDARD_ATTRIBUTES,
    VERIFIED_FLAG,
    PoolSchema,
    check_generic_value,
    check_username,
)

EmptyMode = Literal["leave", "delete"]
KeyKind = Literal["username", "email", "phone_number", "sub"]


@dataclass(frozen=True, slots=True)
class ColumnMapping:
    """How input columns become Cognito attributes."""

    username_column: str = "username"
    renames: Mapping[str, str] = field(default_factory=dict)
    exclude: frozenset[str] = frozenset()
    empty: EmptyMode = "leave"
    key: KeyKind = "username"


def attribute_name(column: str, renames: Mapping[str, str]) -> str:
    """The Cognito attribute a column writes."""
    if column in renames:
        return renames[column]
    if column in STANDARD_ATTRIBUTES or column in NEVER_WRITABLE:
        return column
    if column.startswith(("custom:", "dev:")):
        return column
    return "custom:" + column


def map_columns(header: Iterable[str], mapping: ColumnMapping, *, path: str) -> dict[str, str]:
    """Column -> attribute for every attribute column; the key column must exist."""
    columns = list(header)
    if mapping.username_column not in columns:
        raise UsageError(f"{path}: {missing_key_column(columns, mapping.username_column)}")
    unknown = [c for c in list(mapping.renames) + sorted(mapping.exclude) if c not in columns]
    if unknown:
        raise UsageError(f"{path}: the job names column {unknown[0]!r}, which the input lacks")
    result: dict[str, str] = {}
    seen: dict[str, str] = {}
    for column in columns:
        if column == mapping.username_column or column in mapping.exclude:
            continue
        attr = attribute_name(column, mapping.renames)
        if attr in seen:
            raise UsageError(
                f"{path}: columns {seen[attr]!r} and {column!r} both write attribute {attr!r}"
            )
        seen[attr] = column
        result[column] = attr
    return result


def missing_key_column(columns: list[str], wanted: str) -> str:
    """Why the key column is missing, naming positions and counts only: in a file without a
    header row the first row's cells (emails, phone numbers) are taken for column names."""
    near = [i for i, c in enumerate(columns, 1) if c.strip().casefold() == wanted.casefold()]
    hint = (
        f"column {near[0]} differs from it only in case or spaces"
        if near
        else "is the first row a header?"
    )
    return (
        f"no column {wanted!r} holds the user key (the header has {len(columns)} columns; "
        f"{hint}); set --username-column"
    )


def check_columns(columns: Mapping[str, str], schema: PoolSchema, *, path: str) -> None:
    """Stop before the first write if a column maps to no writable attribute."""
    for column, attr in columns.items():
        problem = schema.check_attribute(attr)
        if problem:
            raise UsageError(f"{path}: column {column!r}: {problem}")


@dataclass(frozen=True, slots=True)
class Planner:
    """Turns each input row into a ``UserUpdate`` or its final ``RowResult``."""

    columns: Mapping[str, str]
    mapping: ColumnMapping
    schema: PoolSchema | None = None
    mark_verified: bool = False

    def plan(self, row: InputRow) -> UserUpdate | RowResult:
        key = row.values.get(self.mapping.username_column, "")
        if row.error:
            return self._invalid(row, key, "MalformedRow", row.error)
        problem = check_username(key)
        if problem:
            return self._invalid(row, key, "InvalidUsername", problem)
        sets: list[tuple[str, str]] = []
        deletes: list[str] = []
        for column, attr in self.columns.items():
            value = row.values.get(column, "")
            if value == "":
                if self.mapping.empty == "delete":
                    deletes.append(attr)
                continue
            problem = (
                self.schema.check_value(attr, value)
                if self.schema is not None
                else check_generic_value(attr, value)
            )
            if problem:
                return self._invalid(row, key, "InvalidValue", f"column {column!r}: {problem}")
            sets.append((attr, value))
        if self.mark_verified:
            sets = with_verified_flags(sets)
        is_key = self.mapping.key != "username"
        if not sets and not deletes:
            return RowResult(
                row.row, "" if is_key else key, Status.UNCHANGED,
                error_message="no attribute values to write", key=key if is_key else "",
            )
        return UserUpdate(
            row=row.row,
            username="" if is_key else key,
            attributes=tuple(sets),
            deletes=tuple(deletes),
            key=key if is_key else "",
        )

    def _invalid(self, row: InputRow, key: str, code: str, message: str) -> RowResult:
        is_key = self.mapping.key != "username"
        return RowResult(
            row.row, "" if is_key else key, Status.INVALID,
            error_code=code, error_message=message, key=key if is_key else "",
        )


def with_verified_flags(sets: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Mark a new email/phone verified in the same call: no message, applied at once."""
    names = {name for name, _ in sets}
    extra = [
        (flag, "true")
        for attr, flag in VERIFIED_FLAG.items()
        if attr in names and flag not in names
    ]
    return sets + extra
