"""The undo's write for one before-image: what the user holds now, against what the run
found and wrote, decides ``updated`` (restore), ``unchanged`` (nothing to restore) or
``skipped``/``Conflict`` (changed again since; ``--force`` restores anyway). The file format
and the images themselves: ``before_images.py``; a sync's extra fields: ``sync_restore.py``.
"""

from __future__ import annotations

from collections.abc import Mapping

from batch.models import RowResult, Status, UserUpdate
from batch.plan.lookup import same_value
from batch.plan.schema import VERIFIED_FLAG
from batch.record.before_images import FLAGS, UndoRecord, Value

__all__ = ["message_split", "plan_restore"]


def plan_restore(
    record: UndoRecord,
    current: Mapping[str, str] | None,
    *,
    force: bool = False,
    types: Mapping[str, str] | None = None,
    verified_by_message: frozenset[str] = frozenset(),
) -> UserUpdate | RowResult:
    """The write that puts back what ``record``'s row changed, given the user's attributes now.

    ``verified_by_message``: the attributes whose change makes this pool send a verification
    message (AutoVerifiedAttributes and AttributesRequireVerificationBeforeUpdate).
    """
    types = types or {}
    if current is None:
        return RowResult(record.row, record.username, Status.FAILED,
                         error_code="UserNotFoundException",
                         error_message="the user no longer exists")

    def same(a: Value, b: Value, name: str) -> bool:
        if a is None or b is None:
            return a is None and b is None
        return same_value(a, b, types.get(name, "Boolean" if name in FLAGS else ""))

    def now(name: str) -> Value:
        return current.get(name.removeprefix("dev:"))

    before, wrote = record.before, record.wrote
    sets: list[tuple[str, str]] = []
    deletes: list[str] = []
    conflicts: list[str] = []
    touched = [a for a in VERIFIED_FLAG if a in wrote and not same(before.get(a), wrote[a], a)]
    own_flags = {VERIFIED_FLAG[a] for a in touched}  # put back with their attribute, below
    for name, value in wrote.items():
        if name in own_flags:
            continue
        old = before.get(name)
        if same(old, value, name) or same(now(name), old, name):
            continue  # the run changed nothing here, its write did not land, or already undone
        if not same(now(name), value, name) and not force:
            conflicts.append(name)
        elif old is None:
            deletes.append(name)
        else:
            sets.append((name, old))
    if conflicts:
        return RowResult(record.row, record.username, Status.SKIPPED, error_code="Conflict",
                         error_message=f"changed again since the run: {', '.join(conflicts)} "
                                       "(--force restores it anyway)")
    for attr in touched:
        flag = VERIFIED_FLAG[attr]
        old_flag = before.get(flag)
        if any(n == attr for n, _ in sets) and attr in verified_by_message:
            # true in the same call: no message, the value applies at once; a flag that was
            # false goes back in a second call (UndoWriter), an absent one is deleted after.
            sets.append((flag, old_flag if old_flag not in (None, "true") else "true"))
            if old_flag is None:
                deletes.append(flag)
        elif not same(now(flag), old_flag, flag):
            if old_flag is None:
                deletes.append(flag)
            else:
                sets.append((flag, old_flag))
    if not sets and not deletes:
        return RowResult(record.row, record.username, Status.UNCHANGED,
                         error_message="nothing to restore")
    return UserUpdate(record.row, record.username, tuple(sets), tuple(deletes))


def message_split(
    attributes: tuple[tuple[str, str], ...] | list[tuple[str, str]],
    verified_by_message: frozenset[str],
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """An update restoring an email/phone whose flag was false, as two calls: the value with
    the flag true (no message), then the flag alone (a flag alone sends nothing)."""
    values = dict(attributes)
    late = [
        (flag, values[flag])
        for attr, flag in VERIFIED_FLAG.items()
        if values.get(attr) and attr in verified_by_message and values.get(flag, "true") != "true"
    ]
    if not late:
        return list(attributes), []
    held = {flag for flag, _ in late}
    return [(n, "true" if n in held else v) for n, v in attributes], late
