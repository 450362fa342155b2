"""The nightly sync through the one pipeline (issue 21): what a run reads before its first
write, the feed's sync items, and the writer whose create is idempotent.

``SyncSetup.prepare`` runs once the pool's schema and quotas are read and before any write:

- every group the input's ``groups`` column (or ``--manage-groups``) names must exist
  (ListGroups, UserPoolResourceRead), else the job stops listing the unknown names;
- the managed groups, and the current memberships read the cheaper way
  (``plan.groups.membership_read_cost``): per group here (ListUsersInGroup, UserList), or per
  user on each row's resolve step (AdminListGroupsForUser, UserResourceRead);
- ``AliasConflict``: rows whose alias value another user holds (``plan.aliases``), found by
  one ListUsers filter per value or by listing the pool, whichever is fewer seconds;
- ``--disable-missing``: the pool listed (ListUsers), the users the input lacks counted
  against ``--max-disable`` (refused before any write), and fed after the input's rows as
  rows ``last input row + 1 ...``, sorted by username. A resume knows the leavers an earlier
  attempt journaled by their username (``JournalState.beyond``), not by the listing's order,
  which may have changed since (users added, deleted, disabled by someone else): they keep
  their rows, the finished ones are not touched again and count against ``--max-disable``,
  and a leaver new to this attempt is numbered after every row an earlier one may have used
  (``plan.leavers.number_leavers``). A leaver whose before-image an earlier attempt recorded
  but never journaled (killed with its disable in flight) is one in doubt: it keeps its row
  too, so the finished journal vouches for its image (``_in_doubt``); one the listing shows
  disabled already goes through the resolve step, where the before-images make it
  ``updated`` (so undo restores it). Memory: the journaled and imaged leavers' names and
  rows, at most about ``--max-disable`` of them.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from batch.errors import RowError
from batch.inputs.reader import iter_column, iter_rows
from batch.inputs.scan import KeyScan
from batch.models import InputRow, RowResult, Status, UserUpdate
from batch.pace.pacer import Pacer, event_waiter
from batch.pace.retrying import Retrier, RetryPolicy
from batch.plan.aliases import Claim, _same, alias_attributes, claims_of, find_conflicts
from batch.plan.desired import ENABLED_COLUMN, GROUPS_COLUMN, desired_of, parse_groups
from batch.plan.groups import (
    check_groups_exist,
    estimate_group_sizes,
    managed_groups,
    membership_read_cost,
    read_per_group,
    read_pool_groups,
)
from batch.plan.leavers import PoolUser, number_leavers, plan_disable_missing
from batch.plan.lookup import PacedCall, key_of, same_value
from batch.plan.operations import Kind, Operation, SyncUpdate
from batch.plan.sync_resolve import GroupSource
from batch.record.before_images import earlier_leavers
from batch.record.journal import JournalState
from batch.specs import MaxDisable

Job = Any  # ``run.Job`` (typed loosely: it imports this module)


def sync_active(config: Any, header: list[str]) -> bool:
    """A run is a sync when it has a sync column or flag: then each row is a desired state."""
    return bool(ENABLED_COLUMN in header or GROUPS_COLUMN in header or config.create_missing
                or config.disable_missing or config.manage_groups)


def sync_categories(config: Any, header: list[str]) -> list[str]:
    """The quota categories a sync calls besides UserUpdate (GetProvisionedLimit reads them)."""
    out = ["UserRead", "UserList"]
    if config.create_missing:
        out.append("UserCreation")
    if GROUPS_COLUMN in header or config.manage_groups:
        out += ["UserResourceRead", "UserPoolResourceRead"]
    return out


@dataclass(slots=True)
class SyncSetup:
    """What a sync read before its first write (see the module)."""

    groups: GroupSource | None = None
    conflicts: dict[int, RowResult] = field(default_factory=dict)
    leavers: list[tuple[int, str]] = field(default_factory=list)  # (row, username), sorted
    # A resume's rows an earlier attempt journaled unfinished whose user is no longer to
    # disable (the pool changed since): their results, no call.
    settled: list[RowResult | SyncUpdate] = field(default_factory=list)
    pool_users: int = 0
    reads: int = 0
    membership_read: str = ""

    def read_calls(self) -> int:
        """The reads the sync made besides the lookup's (listings, per-user memberships)."""
        return self.reads + (self.groups.reads if self.groups is not None else 0)

    @classmethod
    def prepare(cls, job: Job, scan: KeyScan, state: JournalState | None = None) -> SyncSetup:
        """Read what the sync needs before its first write; ``state``: the journal a resume
        continues (its leavers keep their rows)."""
        config, gateway, pool = job.config, job.gateway, job.config.user_pool_id
        setup = cls()
        wait = event_waiter(job.stop_event)
        retrier = Retrier(RetryPolicy(max_attempts=config.max_attempts), wait=wait)

        def paced(category: str) -> PacedCall:
            return PacedCall(Pacer(job.quotas.rates[category]), retrier, wait)

        aliases = alias_attributes(job.pool_description) if config.alias_check else frozenset()
        aliases &= frozenset(job.columns.values())  # only the alias attributes it writes
        named, per_row, claims, usernames = _read_input(job, aliases)
        if GROUPS_COLUMN in job.header or config.manage_groups:
            managed = managed_groups(per_row, config.manage_groups)
            pool_groups = read_pool_groups(gateway, pool, paced("UserPoolResourceRead"))
            check_groups_exist(named | set(config.manage_groups), pool_groups)
            source = GroupSource(managed, gateway=gateway, pool=pool,
                                 paced=paced("UserResourceRead"))
            sizes = estimate_group_sizes(per_row, managed, input_users=len(usernames),
                                         pool_users=job.pool_users or len(usernames))
            cost = membership_read_cost(users=len(usernames), group_sizes=sizes,
                                        rates=job.quotas.rates)
            setup.membership_read = cost.way if config.key == "username" else "per_user"
            if setup.membership_read == "per_group":
                source.known = read_per_group(gateway, pool, usernames, managed,
                                              paced("UserList"))
            setup.groups = source
        listing = config.disable_missing or (
            claims and _listing_is_cheaper(len(claims), job.pool_users))
        holders: dict[tuple[str, str], str] = {}
        if listing:
            users = setup._list_pool(job, paced("UserList"), aliases, holders)
            if config.disable_missing:
                setup._plan_leavers(job, scan, users, state)
        if claims:
            holder = _listed_holder(holders) if listing else _filter_holder(
                job, paced("UserList"), setup)
            setup.conflicts = find_conflicts(claims, holder)
        return setup

    def _list_pool(self, job: Job, paced: PacedCall, aliases: frozenset[str],
                   holders: dict[tuple[str, str], str]) -> list[PoolUser]:
        """Every user of the pool: username, key, enabled; alias holders into ``holders``."""
        config, out, token = job.config, [], None
        wanted = sorted(set(aliases) | ({config.key} - {"username"}))
        while True:
            page, token = paced(lambda t=token: job.gateway.list_users_page(
                config.user_pool_id, pagination_token=t,
                attributes_to_get=wanted or None))  # type: ignore[misc]
            self.reads += 1
            for user in page:
                for attribute in aliases:
                    if user.get(attribute):
                        holders.setdefault((attribute, _same(attribute, user[attribute])),
                                           user["username"])
                out.append(PoolUser(user["username"], key_of(user, config.key),
                                    user.get("@enabled", "true") == "true"))
            if not token:
                self.pool_users = len(out)
                return out

    def _plan_leavers(self, job: Job, scan: KeyScan, users: list[PoolUser],
                      state: JournalState | None) -> None:
        config = job.config
        present = _present_keys(job)
        # A user whose key the input names in any spelling (case, spaces) is present; a pool
        # user with no key to match (no email under --key email) is never taken for a leaver.
        absent_users = [u for u in users if u.key.strip() and not present(u.key)]
        gone = {u.username for u in absent_users}
        journaled, twice, top = _journaled_leavers(state)
        imaged, image_top = _earlier_images(job, scan, state)
        _in_doubt(imaged, journaled, twice)
        now_disabled = {u.username for u in absent_users if not u.enabled}
        missing = plan_disable_missing(
            users, (u.key for u in users if u.username not in gone), input_rows=scan.rows,
            max_disable=MaxDisable.parse(config.max_disable),
            disabled=[name for name, (_, finished) in journaled.items() if finished]
            + [name for name in imaged.values() if name in now_disabled])
        after = max(scan.last_input_row, top, image_top,
                    state.handed_out if state is not None else 0)
        rows = number_leavers(missing, journaled, after=after)
        self.leavers = rows.disable
        # A user still absent but disabled now holds; any other is left alone. One an earlier
        # attempt imaged goes through the resolve step, which reports it ``unchanged`` and
        # the before-images make ``updated`` (it most likely disabled it): undo restores it.
        self.settled = [_settled(row, name, name in now_disabled, imaged.get(row) == name)
                        for row, name in sorted(rows.settled + twice)]

    def item(self, row: InputRow, planned: UserUpdate | RowResult) -> UserUpdate | RowResult:
        """A row's feed item in a sync: a ``SyncUpdate`` with its enabled and groups wishes,
        or the row's result (invalid cell, ``AliasConflict``)."""
        desired = desired_of(row, planned)
        if isinstance(desired, RowResult):
            return desired
        conflict = self.conflicts.get(row.row)
        if conflict is not None:
            return RowResult(row.row, conflict.username, Status.INVALID, key=planned.key,
                             error_code=conflict.error_code,
                             error_message=conflict.error_message)
        update = desired.update
        return SyncUpdate(row.row, desired.username, update.attributes if update else (),
                          update.deletes if update else (), key=planned.key,
                          enabled=desired.enabled, groups=desired.groups)

    def leaver_items(self, done: Any) -> Iterator[SyncUpdate | RowResult]:
        """The users ``--disable-missing`` disables, after the input's rows (and a resume's
        ``settled`` rows)."""
        for row, username in self.leavers:
            if row not in done:
                yield SyncUpdate(row, username, (), enabled=False, preplanned=True,
                                 ops=(Operation(Kind.DISABLE, username),),
                                 known=(("@enabled", "true"),))
        for result in self.settled:
            if result.row not in done:
                yield result


def _journaled_leavers(
    state: JournalState | None,
) -> tuple[dict[str, tuple[int, bool]], list[tuple[int, str]], int]:
    """The leavers an earlier attempt journaled: username -> (row, finished), each row's last
    record winning; the rows of a user journaled under two rows (by a version that numbered
    leavers by the listing) besides the one kept; and the highest row journaled."""
    if state is None:
        return {}, [], 0
    by_row: dict[int, tuple[str, bool]] = {}
    for row, username, finished in state.beyond():
        by_row[row] = (username, finished)
    journaled: dict[str, tuple[int, bool]] = {}
    twice: list[tuple[int, str]] = []
    for row, (username, finished) in sorted(by_row.items()):
        kept = journaled.get(username)
        if kept is not None and (kept[1] or not finished):
            twice.append((row, username))
            continue
        if kept is not None:
            twice.append((kept[0], username))
        journaled[username] = (row, finished)
    return journaled, twice, max(by_row, default=0)


def _earlier_images(job: Job, scan: KeyScan,
                    state: JournalState | None) -> tuple[dict[int, str], int]:
    """A resume's leaver rows an earlier attempt recorded a before-image for and did not
    journal finished: row -> username (``before_images.earlier_leavers``); and the highest
    row any leaver image names, so no new leaver takes its number."""
    if state is None or not job.records_undo:
        return {}, 0
    header = {"pool": job.config.user_pool_id, "input_sha256": state.header.input_sha256,
              "settings": state.header.settings}
    imaged, top = earlier_leavers(job.files.before_images, header, past=scan.last_input_row)
    return {row: name for row, name in imaged.items() if row not in state.finished}, top


def _in_doubt(imaged: dict[int, str], journaled: dict[str, tuple[int, bool]],
              twice: list[tuple[int, str]]) -> None:
    """Leavers in doubt: an earlier attempt recorded the image (so it was about to disable
    the user, and may have) but was stopped before the row's journal line. Each keeps its row
    and user, as a journaled unfinished leaver does, so the finished journal vouches for
    its image; a user already journaled under another row is that row's second (``twice``)."""
    lined = {row for row, _ in journaled.values()} | {row for row, _ in twice}
    for row, name in sorted(imaged.items()):
        if row in lined:
            continue
        if name in journaled:
            twice.append((row, name))
        else:
            journaled[name] = (row, False)


def _settled(row: int, username: str, disabled: bool,
             imaged: bool = False) -> RowResult | SyncUpdate:
    """A journaled leaver's row whose user is no longer an enabled user the input lacks;
    ``imaged``: an earlier attempt recorded the row's image (its disable may have landed)."""
    if disabled and imaged:  # nothing to call: the resolve step says unchanged
        return SyncUpdate(row, username, (), enabled=False, preplanned=True)
    if disabled:
        return RowResult(row, username, Status.UNCHANGED,
                         error_message="disabled already: no call")
    return RowResult(row, username, Status.SKIPPED, error_code="NotMissing",
                     error_message="no longer a user of the pool that the input lacks "
                                   "(the pool changed since an earlier attempt): left alone")


def _read_input(
    job: Job, aliases: frozenset[str]
) -> tuple[set[str], list[frozenset[str] | None], list[Claim], list[str]]:
    """One pass over the input: the groups named, each row's groups, the alias claims of rows
    keyed by username, and the usernames of rows that sync groups."""
    named: set[str] = set()
    per_row: list[frozenset[str] | None] = []
    claims: list[Claim] = []
    usernames: list[str] = []
    planner = job.planner()
    check_aliases = bool(aliases) and job.config.key == "username"
    groups_column = GROUPS_COLUMN in job.header
    if not groups_column and not check_aliases:
        return named, per_row, claims, usernames  # nothing to learn: no pass over the input
    for row in iter_rows(job.source):
        if groups_column and GROUPS_COLUMN in row.values:
            try:
                groups = parse_groups(row.values[GROUPS_COLUMN])
            except ValueError:
                groups = None  # the row is invalid: its feed says so
            per_row.append(groups)
            if groups is not None:
                named |= groups
                usernames.append(row.values.get(job.config.username_column, ""))
        if check_aliases:
            planned = planner.plan(row)
            if isinstance(planned, UserUpdate):
                claims += claims_of([planned], aliases)
    return named, per_row, claims, usernames


def _listing_is_cheaper(claims: int, pool_users: int | None) -> bool:
    """Listing the pool (60 users a page) against one filtered ListUsers a claimed value."""
    return pool_users is not None and math.ceil(pool_users / 60) < claims


def _listed_holder(holders: dict[tuple[str, str], str]) -> Any:
    def holder(attribute: str, value: str) -> str | None:
        return holders.get((attribute, _same(attribute, value)))

    return holder


def _filter_holder(job: Job, paced: PacedCall, setup: SyncSetup) -> Any:
    from batch.plan.aliases import pool_holder

    inner = pool_holder(job.gateway, job.config.user_pool_id, paced)

    def holder(attribute: str, value: str) -> str | None:
        setup.reads += 1
        return inner(attribute, value)

    return holder


class SyncWriter:
    """The gateway for a sync's rows: ``create_user`` with ``--invite`` or not, idempotent
    across a retry, a crash and a resume. A ``UsernameExistsException`` is not a failure when
    this run already sent that create (a retry after an answer that was lost), an earlier
    attempt's before-image shows it created (``created``), or the user's attributes already
    equal the row's. Every other call goes to the gateway as it is."""

    def __init__(self, gateway: Any, *, invite: bool, created: frozenset[str] = frozenset(),
                 types: dict[str, str] | None = None) -> None:
        self.gateway, self.invite, self.created = gateway, invite, created
        self.types = types or {}
        self._sent: set[str] = set()
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gateway, name)

    def create_user(self, pool: str, username: str, attributes: Any, *,
                    client_metadata: Any = None) -> None:
        with self._lock:
            again = username in self._sent
            self._sent.add(username)
        try:
            self.gateway.create_user(pool, username, attributes, invite=self.invite,
                                     client_metadata=client_metadata)
        except RowError as exc:
            if exc.code != "UsernameExistsException":
                raise
            if again or username in self.created or self._holds(pool, username, attributes):
                return
            raise

    def _holds(self, pool: str, username: str, attributes: Any) -> bool:
        try:
            user = self.gateway.get_user(pool, username)
        except RowError:
            return False
        return all(same_value(v, user.get(n), self.types.get(n, "")) for n, v in attributes)


def _normal_key(key: str) -> bytes:
    """A key as ``--disable-missing`` compares it: spaces around it dropped, case folded
    (Cognito compares usernames and aliases case-insensitively by default). In a
    case-sensitive pool this can only keep a user enabled, never disable one."""
    digest = hashlib.blake2b(key.strip().casefold().encode("utf-8", "surrogateescape"),
                             digest_size=8)
    return digest.digest()


def _present_keys(job: Job) -> Callable[[str], bool]:
    """Whether the input names a key, in any spelling: one pass over the key column into a
    sorted array of 8-byte hashes (flat: 8 bytes a row)."""
    hashes = np.fromiter((int.from_bytes(_normal_key(v), "big")
                          for v in iter_column(job.source, job.config.username_column)
                          if v.strip()), dtype=np.uint64)
    hashes.sort()

    def present(key: str) -> bool:
        h = np.uint64(int.from_bytes(_normal_key(key), "big"))
        i = int(np.searchsorted(hashes, h))
        return i < hashes.size and hashes[i] == h

    return present
