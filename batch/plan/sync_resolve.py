"""The sync's resolve step: read the row's user, then plan the fewest operations that make
the pool match the row (``desired.plan_row``).

It runs where today's ``Resolver`` runs, on the worker, right before the row's calls: the user
is read (the lookup: snapshot or AdminGetUser), its attributes diffed as ``--skip-unchanged``
does (a row is a desired state: what already holds costs no call), its enabled state taken
from the same read, and its managed groups from the memberships read before the run (per
group) or, when reading per user is cheaper, here with one AdminListGroupsForUser under its
own quota (UserResourceRead). The result is the row's ``SyncUpdate`` with its ``ops``, or
``unchanged`` when nothing differs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from batch.cognito import USER_STATE
from batch.models import RowResult, Status, UserUpdate
from batch.pace.retrying import Cancelled
from batch.plan.desired import Current, Desired, plan_row
from batch.plan.groups import GroupReads, Paced, read_per_user
from batch.plan.operations import SyncUpdate

ENABLED = USER_STATE["Enabled"]

Inner = Callable[[UserUpdate], UserUpdate | RowResult]
Last = Callable[[], list[dict[str, str]] | None]


@dataclass(slots=True)
class GroupSource:
    """Where a user's current managed groups come from: read before the run (``known``), or
    per user here (``gateway`` paced by ``paced``)."""

    managed: frozenset[str]
    known: Mapping[str, frozenset[str]] | None = None
    gateway: GroupReads | None = None
    pool: str = ""
    paced: Paced | None = None
    reads: int = 0

    def of(self, username: str) -> frozenset[str]:
        if self.known is not None:
            return self.known.get(username, frozenset())
        if self.gateway is None or self.paced is None:
            return frozenset()
        self.reads += 1
        found = read_per_user(self.gateway, self.pool, [username], self.managed, self.paced)
        return found.get(username, frozenset())


@dataclass(slots=True)
class SyncResolver:
    """Wraps today's ``Resolver`` (``inner``, the diff) for ``SyncUpdate`` rows; any other
    row goes to ``inner`` unchanged. ``last`` gives the users the inner read found (the
    lookup's ``Remembering.peek``)."""

    inner: Inner
    last: Last
    groups: GroupSource
    create_missing: bool = False
    created_before: frozenset[int] = field(default_factory=frozenset)

    def __call__(self, update: UserUpdate) -> UserUpdate | RowResult:
        if not isinstance(update, SyncUpdate):
            return self.inner(update)
        if update.preplanned:  # a leaver the feed listed: nothing to read (the snapshot
            if update.ops:  # holds only the input's users)
                return update
            # a leaver in doubt the listing showed disabled already (``commands.sync``)
            return RowResult(update.row, update.username, Status.UNCHANGED, key=update.key,
                             error_message="disabled already: no call")
        plain = UserUpdate(update.row, update.username, update.attributes, update.deletes,
                           key=update.key)
        resolved = self.inner(plain)
        if isinstance(resolved, RowResult) and resolved.status is not Status.UNCHANGED:
            return resolved
        username = resolved.username
        user = next((u for u in self.last() or () if u.get("username") == username), None)
        exists = user is not None
        before = update.row in self.created_before
        try:
            groups = None
            if update.groups is not None:
                groups = self.groups.of(username) if exists else frozenset()
        except Cancelled as exc:
            return RowResult(update.row, username, Status.SKIPPED, error_code="Stopped",
                             error_message=str(exc) or "job stopping", key=update.key)
        enabled = None if user is None or ENABLED not in user else user[ENABLED] == "true"
        attributes = resolved if isinstance(resolved, UserUpdate) else None
        desired = Desired(update.row, username, attributes, update.enabled, update.groups)
        # Not found and not to be created: planned anyway, Cognito answers UserNotFound.
        current = Current(exists or not self.create_missing, enabled, groups)
        ops = plan_row(desired, current, create_missing=self.create_missing,
                       managed=self.groups.managed)
        if not ops:
            return RowResult(update.row, username,
                             Status.CREATED if before else Status.UNCHANGED, key=update.key,
                             error_message="already up to date")
        sets = attributes.attributes if attributes is not None else ()
        deletes = attributes.deletes if attributes is not None else ()
        return SyncUpdate(update.row, username, sets, deletes, key=update.key,
                          enabled=update.enabled, groups=update.groups, ops=ops,
                          created_before=before)
