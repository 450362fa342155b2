"""Managed groups, the check that every named group exists, and reading current memberships
the cheaper way.

Which groups the tool may remove a user from is explicit: by default those named anywhere in
the input's ``groups`` column; ``--manage-groups a,b`` names them instead. A group named in the
input that the pool lacks stops the job before any write, listing the unknown names.

Current memberships are read one of two ways, whichever costs fewer seconds at the read quotas
("Quotas in Amazon Cognito"):

- per user: one AdminListGroupsForUser per input user (UserResourceRead, 50/s by default);
- per group: ListUsersInGroup over each managed group, 60 members a page (UserList, 30/s by
  default, the category ListUsers' snapshot also draws from).

A nightly file of the whole population reads per group (10,000 users in 2 groups: 168 pages,
~6 s, against 200 s per user); a file of a few changed users reads per user.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from batch.errors import RowError, UsageError
from batch.plan.operations import DEFAULT_RATES, READ_CATEGORY

T = TypeVar("T")
PAGE = 60
_SHOWN = 20  # unknown group names listed in the error, at most


class Paced(Protocol):
    """Runs one read call under its category's pacing and retries (``lookup.PacedCall``)."""

    def __call__(self, fn: Callable[[], T]) -> T: ...


class GroupReads(Protocol):
    """The gateway calls these reads need (``CognitoGateway`` has them)."""

    def list_groups_for_user_page(
        self, user_pool_id: str, username: str, *, next_token: str | None = None,
        limit: int = 60,
    ) -> tuple[list[str], str | None]: ...

    def list_users_in_group_page(
        self, user_pool_id: str, group: str, *, next_token: str | None = None, limit: int = 60
    ) -> tuple[list[str], str | None]: ...

    def list_groups_page(
        self, user_pool_id: str, *, next_token: str | None = None, limit: int = 60
    ) -> tuple[list[str], str | None]: ...


def managed_groups(
    desired: Iterable[frozenset[str] | None], manage: Sequence[str] = ()
) -> frozenset[str]:
    """``--manage-groups`` when given, else every group the input's ``groups`` column names."""
    if manage:
        return frozenset(manage)
    return frozenset().union(*(groups for groups in desired if groups is not None))


def check_groups_exist(named: Iterable[str], pool_groups: Iterable[str]) -> None:
    """Stop before any write when the input (or --manage-groups) names a group the pool lacks."""
    unknown = sorted(set(named) - set(pool_groups))
    if not unknown:
        return
    shown = ", ".join(repr(name) for name in unknown[:_SHOWN])
    more = f" and {len(unknown) - _SHOWN} more" if len(unknown) > _SHOWN else ""
    noun = "group" if len(unknown) == 1 else "groups"
    raise UsageError(f"the pool has no {noun} {shown}{more} (named in the input's "
                     "'groups' column or --manage-groups); nothing was written")


@dataclass(frozen=True, slots=True)
class ReadCost:
    """The seconds each way of reading memberships takes at the read quotas, and the choice."""

    per_user_seconds: float
    per_group_seconds: float

    @property
    def way(self) -> str:
        return "per_group" if self.per_group_seconds < self.per_user_seconds else "per_user"


def membership_read_cost(
    *, users: int, group_sizes: Mapping[str, int], rates: Mapping[str, float] = DEFAULT_RATES
) -> ReadCost:
    """Seconds to read the memberships of ``users`` existing users, per user or per group
    (``group_sizes``: members of each managed group, or an estimate)."""
    per_user = users / rates[READ_CATEGORY["AdminListGroupsForUser"]]
    pages = sum(max(1, math.ceil(size / PAGE)) for size in group_sizes.values())
    per_group = pages / rates[READ_CATEGORY["ListUsersInGroup"]]
    return ReadCost(per_user, per_group)


def estimate_group_sizes(
    desired: Iterable[frozenset[str] | None], managed: frozenset[str], *, input_users: int,
    pool_users: int,
) -> dict[str, int]:
    """Members of each managed group, guessed before reading: the rows that list it, scaled up
    by the share of the pool the input covers (a file of 10 users in a pool of 10,000 says
    little about the others)."""
    counts = dict.fromkeys(managed, 0)
    for groups in desired:
        for group in (groups or frozenset()) & managed:
            counts[group] += 1
    scale = max(1.0, pool_users / input_users) if input_users else 1.0
    return {group: math.ceil(count * scale) for group, count in counts.items()}


def _pages(fetch: Callable[[str | None], tuple[list[str], str | None]], paced: Paced) -> list[str]:
    out: list[str] = []
    token: str | None = None
    while True:
        items, token = paced(lambda t=token: fetch(t))  # type: ignore[misc]
        out.extend(items)
        if not token:
            return out


def read_pool_groups(gateway: GroupReads, pool: str, paced: Paced) -> frozenset[str]:
    """Every group the pool has (ListGroups, UserPoolResourceRead)."""
    return frozenset(_pages(lambda t: gateway.list_groups_page(pool, next_token=t), paced))


def read_per_user(
    gateway: GroupReads, pool: str, usernames: Iterable[str], managed: frozenset[str],
    paced: Paced,
) -> dict[str, frozenset[str]]:
    """Each user's managed groups, one AdminListGroupsForUser per user; a user that does not
    exist is left out (the lookup says it is missing)."""
    out: dict[str, frozenset[str]] = {}
    for username in dict.fromkeys(usernames):
        def fetch(t: str | None, u: str = username) -> tuple[list[str], str | None]:
            return gateway.list_groups_for_user_page(pool, u, next_token=t)

        try:
            out[username] = frozenset(_pages(fetch, paced)) & managed
        except RowError as exc:
            if exc.code != "UserNotFoundException":
                raise
    return out


def read_per_group(
    gateway: GroupReads, pool: str, usernames: Iterable[str], managed: frozenset[str],
    paced: Paced,
) -> dict[str, frozenset[str]]:
    """Each input user's managed groups, from ListUsersInGroup over every managed group;
    members who are not in the input are not kept."""
    wanted = set(usernames)
    found: dict[str, set[str]] = {name: set() for name in wanted}
    for group in sorted(managed):
        def fetch(t: str | None, g: str = group) -> tuple[list[str], str | None]:
            return gateway.list_users_in_group_page(pool, g, next_token=t)

        for member in _pages(fetch, paced):
            if member in wanted:
                found[member].add(group)
    return {name: frozenset(groups) for name, groups in found.items()}
