"""Undo of a sync's row (issue 21): attributes, enabled state, memberships, a created user.

A before-image of a sync row (``before_images.UndoRecord`` with ``sync``) says what the run
changed besides attributes. The restore puts each back:

- attributes as ``plan_restore`` does (its ``Conflict`` rule included);
- the enabled state, when the user is still as the run left it;
- memberships: removed from the groups the run added it to, added back to those it removed
  it from (both calls are idempotent, so a rerun of the undo is harmless);
- a user the run created is deleted (AdminDeleteUser), but only if it has not changed or
  signed in since: its ``UserStatus`` is still FORCE_CHANGE_PASSWORD (never signed in; a
  created user starts there), its ``UserLastModifiedDate`` is still its ``UserCreateDate``
  (no attribute written since) and its attributes are still what the run wrote. Otherwise
  ``skipped`` / ``Conflict`` unless ``--force``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from batch.models import RowResult, Status, UserUpdate
from batch.plan.lookup import same_value
from batch.plan.operations import ORDER, Kind, Operation, SyncUpdate
from batch.record.before_images import UndoRecord
from batch.record.restore import plan_restore

NEW_STATUS = "FORCE_CHANGE_PASSWORD"
_SAME_INSTANT = 1.0  # seconds: Cognito stamps both dates as it creates the user


def plan_sync_restore(
    record: UndoRecord,
    current: Mapping[str, str] | None,
    *,
    force: bool = False,
    types: Mapping[str, str] | None = None,
    verified_by_message: frozenset[str] = frozenset(),
) -> UserUpdate | RowResult:
    """The calls that put back what a sync row changed, given the user as it is now."""
    name = record.username
    if record.created:
        if current is None:
            return RowResult(record.row, name, Status.UNCHANGED,
                             error_message="the user the run created no longer exists")
        changed = changed_since_created(record, current, types or {})
        if changed and not force:
            return RowResult(record.row, name, Status.SKIPPED, error_code="Conflict",
                             error_message=f"the user the run created has {changed} since; "
                                           "not deleted (--force deletes it anyway)")
        return SyncUpdate(record.row, name, (), ops=(Operation(Kind.DELETE_USER, name),))
    restored = plan_restore(record, current, force=force, types=types,
                            verified_by_message=verified_by_message)
    if current is None or (isinstance(restored, RowResult)
                           and restored.status is not Status.UNCHANGED):
        return restored
    ops: list[Operation] = []
    if isinstance(restored, UserUpdate):
        ops.append(Operation(Kind.UPDATE, name, restored))
    if record.enabled is not None:
        before, wrote = record.enabled
        if before is not None and before != wrote and current.get("@enabled") == str(
                wrote).lower():
            ops.append(Operation(Kind.ENABLE if before else Kind.DISABLE, name))
    ops += [Operation(Kind.REMOVE_FROM_GROUP, name, group=g) for g in record.groups_added]
    ops += [Operation(Kind.ADD_TO_GROUP, name, group=g) for g in record.groups_removed]
    if not ops:
        return restored
    ops.sort(key=lambda op: ORDER.index(op.kind))
    sets = restored.attributes if isinstance(restored, UserUpdate) else ()
    deletes = restored.deletes if isinstance(restored, UserUpdate) else ()
    return SyncUpdate(record.row, name, sets, deletes, ops=tuple(ops))


def changed_since_created(
    record: UndoRecord, current: Mapping[str, str], types: Mapping[str, str]
) -> str:
    """What changed in a created user since the run made it ('' when nothing): words only,
    never a value."""
    status = current.get("@status")
    created, modified = current.get("@created"), current.get("@modified")
    if status is None or not created or not modified:
        return "a state that could not be read whole (status or dates missing)"
    if status != NEW_STATUS:
        return "signed in (its status is no longer FORCE_CHANGE_PASSWORD)"
    # As the run left it: enabled unless its row said false, in the groups the run added.
    left_enabled = "false" if record.enabled is not None and record.enabled[1] is False else "true"
    if current.get("@enabled") != left_enabled:
        return "been enabled or disabled"
    if "@groups" in current and set(filter(None, current["@groups"].split(";"))) != set(
            record.groups_added):
        return "a changed group membership"
    if _seconds_apart(created, modified) > _SAME_INSTANT:
        return "been modified (UserLastModifiedDate is after UserCreateDate)"
    for attr, value in record.wrote.items():
        now = current.get(attr.removeprefix("dev:"))
        if value is None or now is None or not same_value(value, now, types.get(attr, "")):
            if not (value is None and now is None):
                return f"a changed attribute ({attr})"
    return ""


def _seconds_apart(a: str, b: str) -> float:
    try:
        return abs((datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds())
    except (TypeError, ValueError):
        return 0.0
