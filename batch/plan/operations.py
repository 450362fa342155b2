"""The kinds of work a sync does to one user, each with the Cognito operation it calls and the
quota category that operation draws from.

Categories from "Quotas in Amazon Cognito", operations by category
(https://docs.aws.amazon.com/cognito/latest/developerguide/quotas.html): AdminCreateUser is
UserCreation (50/s by default); attribute writes, disable/enable and group changes all share
UserUpdate (25/s, not adjustable). Each category is paced on its own, so a sync takes about the
time of its busiest category.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from batch.models import UserUpdate


class Kind(enum.StrEnum):
    """One kind of work, in the order a user's operations are applied (``ORDER``)."""

    CREATE = "create"
    DISABLE = "disable"
    UPDATE = "update"
    REMOVE_FROM_GROUP = "remove_from_group"
    ADD_TO_GROUP = "add_to_group"
    ENABLE = "enable"
    DELETE_USER = "delete_user"  # only undo's, of a user the run created


#: Cognito's operation for each kind (an UPDATE with deletes also calls
#: AdminDeleteUserAttributes, in the same category).
OPERATION: dict[Kind, str] = {
    Kind.CREATE: "AdminCreateUser",
    Kind.DISABLE: "AdminDisableUser",
    Kind.UPDATE: "AdminUpdateUserAttributes",
    Kind.REMOVE_FROM_GROUP: "AdminRemoveUserFromGroup",
    Kind.ADD_TO_GROUP: "AdminAddUserToGroup",
    Kind.ENABLE: "AdminEnableUser",
    Kind.DELETE_USER: "AdminDeleteUser",
}
CATEGORY: dict[Kind, str] = {
    kind: "UserCreation" if kind is Kind.CREATE else "UserUpdate" for kind in Kind
}
#: The read operations the sync's planning uses, and their categories (same source).
READ_CATEGORY: dict[str, str] = {
    "AdminListGroupsForUser": "UserResourceRead",
    "ListUsersInGroup": "UserList",
    "ListUsers": "UserList",
    "ListGroups": "UserPoolResourceRead",
    "AdminGetUser": "UserRead",
}
#: Cognito's default rates (requests/s) of those categories, for planning before they are read.
DEFAULT_RATES: dict[str, float] = {
    "UserCreation": 50.0, "UserUpdate": 25.0, "UserResourceRead": 50.0, "UserList": 30.0,
    "UserPoolResourceRead": 20.0, "UserRead": 120.0,
}
# A leaver loses access first; a returning user is enabled last, once its groups are right.
ORDER = (Kind.CREATE, Kind.DISABLE, Kind.UPDATE, Kind.REMOVE_FROM_GROUP, Kind.ADD_TO_GROUP,
         Kind.ENABLE, Kind.DELETE_USER)


@dataclass(frozen=True, slots=True)
class Operation:
    """One call (or, for UPDATE, today's update-then-delete pair) for one user."""

    kind: Kind
    username: str
    update: UserUpdate | None = None  # CREATE: its attributes; UPDATE: today's planner's output
    group: str = ""  # ADD_TO_GROUP / REMOVE_FROM_GROUP

    @property
    def category(self) -> str:
        return CATEGORY[self.kind]

    @property
    def operation(self) -> str:
        return OPERATION[self.kind]


@dataclass(frozen=True, slots=True)
class SyncUpdate(UserUpdate):
    """One row of a sync as one planned item through the pipeline's feed, resolve and runner
    (``engine.work``): its attribute write (``attributes`` / ``deletes``, as a ``UserUpdate``)
    plus the row's other wishes. The feed fills ``enabled`` / ``groups`` (None: the row says
    nothing / groups are not synced); the resolve step, once it has read the user, fills
    ``ops``, the fewest calls in ``ORDER``, which the runner sends one by one, each under its
    own category's pacer. ``created_before``: an earlier attempt of this run created the user
    (its before-image says so), so the row ends ``created`` even if no call is left."""

    enabled: bool | None = None
    groups: frozenset[str] | None = None
    ops: tuple[Operation, ...] = ()
    created_before: bool = False
    # Planned by the feed from what it already read (a ``--disable-missing`` leaver: listed
    # enabled), not by the resolve step; ``known``: that state, for the before-image.
    preplanned: bool = False
    known: tuple[tuple[str, str], ...] = ()

    @property
    def creates(self) -> bool:
        return self.created_before or any(op.kind is Kind.CREATE for op in self.ops)


def describe_ops(update: SyncUpdate) -> str:
    """A row's planned calls in words (attribute and group names, never a value)."""
    words = {Kind.CREATE: "create", Kind.DISABLE: "disable", Kind.ENABLE: "enable",
             Kind.DELETE_USER: "delete the user"}
    out = []
    for op in update.ops:
        if op.kind is Kind.UPDATE and op.update is not None:
            out.append("update " + ", ".join(op.update.attribute_names))
        elif op.kind is Kind.ADD_TO_GROUP:
            out.append(f"add to {op.group}")
        elif op.kind is Kind.REMOVE_FROM_GROUP:
            out.append(f"remove from {op.group}")
        else:
            out.append(words[op.kind])
    return "; ".join(out) or "nothing left to do"
