"""One row as the desired state of one user, and the fewest operations that make the pool match.

Two columns besides the attributes (issue 21):

- ``enabled``: ``true`` / ``false`` enables or disables the user; an empty cell leaves it.
- ``groups``: the user's desired managed groups, names separated by ``;``. An empty cell means
  "in no managed group"; without the column, groups are not synced at all. Only managed groups
  (``groups.managed_groups``) are ever added or removed: a group no one manages is never touched.

Pure functions: the current state (``Current``) is read elsewhere (``groups.py``, the lookup).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from batch.models import InputRow, RowResult, Status, UserUpdate
from batch.plan.operations import ORDER, Kind, Operation

ENABLED_COLUMN = "enabled"
GROUPS_COLUMN = "groups"
#: Columns that are not attributes: the lead's mapping excludes them (``sync_columns``).
SYNC_COLUMNS = (ENABLED_COLUMN, GROUPS_COLUMN)
GROUP_SEPARATOR = ";"
MAX_GROUP_NAME = 128


def sync_columns(header: list[str]) -> tuple[str, ...]:
    """The sync columns this input has: to exclude from the attribute mapping."""
    return tuple(c for c in SYNC_COLUMNS if c in header)


def parse_enabled(cell: str) -> bool | None:
    """``true`` / ``false`` (any case, spaces ignored); empty: leave as is. ValueError else."""
    text = cell.strip().lower()
    if not text:
        return None
    if text in ("true", "false"):
        return text == "true"
    raise ValueError("must be true or false")


def parse_groups(cell: str) -> frozenset[str]:
    """Group names from a ``;``-separated cell; blanks dropped. ValueError for a name Cognito
    cannot have (over 128 characters, or a control character)."""
    names = frozenset(part.strip() for part in cell.split(GROUP_SEPARATOR) if part.strip())
    for name in names:
        if len(name) > MAX_GROUP_NAME or not name.isprintable():
            raise ValueError("a group name is 1 to 128 printable characters")
    return names


@dataclass(frozen=True, slots=True)
class Desired:
    """What one row asks for: attributes (today's planner's output), enabled, groups."""

    row: int
    username: str
    update: UserUpdate | None = None
    enabled: bool | None = None  # None: the row says nothing
    groups: frozenset[str] | None = None  # None: groups are not synced


@dataclass(frozen=True, slots=True)
class Current:
    """What the pool holds for that user, as far as it was read (None: not read)."""

    exists: bool
    enabled: bool | None = None
    groups: frozenset[str] | None = None


def desired_of(
    row: InputRow, planned: UserUpdate | RowResult, *, username: str = ""
) -> Desired | RowResult:
    """Combine today's planner's output for a row with its ``enabled`` and ``groups`` cells.

    A row with no attribute to write is no longer ``unchanged`` when it sets enabled or groups.
    """
    if isinstance(planned, RowResult) and planned.status is not Status.UNCHANGED:
        return planned
    update = planned if isinstance(planned, UserUpdate) else None
    name = username or (update.username if update else planned.username)
    values: Mapping[str, str] = row.values
    try:
        enabled = parse_enabled(values[ENABLED_COLUMN]) if ENABLED_COLUMN in values else None
    except ValueError as exc:
        return _invalid(row.row, name, ENABLED_COLUMN, str(exc))
    try:
        groups = parse_groups(values[GROUPS_COLUMN]) if GROUPS_COLUMN in values else None
    except ValueError as exc:
        return _invalid(row.row, name, GROUPS_COLUMN, str(exc))
    if isinstance(planned, RowResult) and enabled is None and groups is None:
        return planned  # today's "no attribute values to write"
    return Desired(row.row, name, update, enabled, groups)


def _invalid(row: int, username: str, column: str, problem: str) -> RowResult:
    return RowResult(row, username, Status.INVALID, error_code="InvalidValue",
                     error_message=f"column {column!r}: {problem}")


def plan_row(
    desired: Desired,
    current: Current,
    *,
    create_missing: bool,
    managed: frozenset[str],
) -> tuple[Operation, ...]:
    """The fewest operations that make the pool match the row, in ``ORDER``.

    - A missing user is created with the row's attributes when ``create_missing`` (no separate
      attribute update then). Without it, nothing is planned: the caller ends the row as
      ``UserNotFound``, as today. ``Current(exists=True)`` when existence was not read.
    - ``enabled`` costs a call only when it differs from the current state (or that is unknown).
    - Groups: added to the managed groups the row lists and the user is not in; removed from
      the managed groups the user is in and the row does not list. Unknown current
      memberships (not read) count as none: adds are idempotent, removes are not planned.
    """
    name = desired.username
    ops: list[Operation] = []
    if not current.exists and not create_missing:
        return ()
    creating = not current.exists
    if creating:
        attributes = desired.update.attributes if desired.update else ()
        ops.append(Operation(Kind.CREATE, name, UserUpdate(desired.row, name, attributes)))
    elif desired.update is not None and (desired.update.attributes or desired.update.deletes):
        ops.append(Operation(Kind.UPDATE, name, desired.update))
    now_enabled = True if creating else current.enabled
    if desired.enabled is not None and desired.enabled != now_enabled:
        ops.append(Operation(Kind.ENABLE if desired.enabled else Kind.DISABLE, name))
    if desired.groups is not None:
        have = frozenset() if creating else (current.groups or frozenset())
        want = desired.groups & managed
        ops += [Operation(Kind.REMOVE_FROM_GROUP, name, group=g) for g in sorted(
            (have & managed) - want)]
        ops += [Operation(Kind.ADD_TO_GROUP, name, group=g) for g in sorted(want - have)]
    return tuple(sorted(ops, key=lambda op: ORDER.index(op.kind)))
