"""No stolen aliases (issue 21, item 4).

In a pool where email is an alias, AdminUpdateUserAttributes with ``email_verified=true``
(``--mark-verified``) moves the alias from the user who had it to the row's user, without an
``AliasExistsException`` (boto/boto3#3213), stranding the other account. So before writing
``email``, ``phone_number`` or ``preferred_username`` where that attribute is an alias or a
username attribute of the pool, a row whose value another user already holds, in the pool or
elsewhere in the file, becomes ``invalid`` with ``AliasConflict``. The message names the other
user's username, never the value (values are personal data).

Conservative on purpose: any other user holding the value counts (verified or not), and email
and preferred_username compare without case (Cognito's default for a pool); two rows asking for
the same free value both conflict, since the file's order should not pick the winner.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from batch.models import RowResult, Status, UserUpdate
from batch.plan.groups import Paced
from batch.plan.lookup import Reads

ALIAS_CANDIDATES = ("email", "phone_number", "preferred_username")
CODE = "AliasConflict"

Holder = Callable[[str, str], str | None]


def alias_attributes(user_pool: Mapping[str, Any]) -> frozenset[str]:
    """The attributes a pool treats as aliases or usernames (DescribeUserPool's
    ``AliasAttributes`` and ``UsernameAttributes``) among those the check guards."""
    names = set(user_pool.get("AliasAttributes") or ()) | set(
        user_pool.get("UsernameAttributes") or ()
    )
    return frozenset(names & set(ALIAS_CANDIDATES))


@dataclass(frozen=True, slots=True)
class Claim:
    """One row asking for one alias value."""

    row: int
    username: str
    attribute: str
    value: str


def claims_of(updates: Iterable[UserUpdate], aliases: frozenset[str]) -> list[Claim]:
    """The alias values the planned updates (or creates) would write."""
    return [
        Claim(update.row, update.username, name, value)
        for update in updates
        for name, value in update.attributes
        if name in aliases and value
    ]


def _same(attribute: str, value: str) -> str:
    return value if attribute == "phone_number" else value.casefold()


def find_conflicts(claims: Iterable[Claim], holder: Holder) -> dict[int, RowResult]:
    """Row -> its ``invalid`` result, for every claim another user holds or also claims.

    ``holder(attribute, value)``: the username holding that value in the pool, or None.
    """
    by_value: dict[tuple[str, str], list[Claim]] = {}
    for claim in claims:
        by_value.setdefault((claim.attribute, _same(claim.attribute, claim.value)), []).append(
            claim
        )
    out: dict[int, RowResult] = {}
    for (attribute, _), group in by_value.items():
        owner = holder(attribute, group[0].value)
        claimants = list(dict.fromkeys(c.username for c in group))
        for claim in group:
            if claim.row in out:
                continue
            if owner is not None and owner != claim.username:
                message = f"{attribute} is already held by user {owner!r}"
            elif owner is None and len(claimants) > 1:
                other = next(u for u in claimants if u != claim.username)
                message = f"{attribute} is also asked for by user {other!r} in this file"
            else:
                continue
            out[claim.row] = RowResult(claim.row, claim.username, Status.INVALID,
                                       error_code=CODE, error_message=message)
    return out


def pool_holder(gateway: Reads, pool: str, paced: Paced) -> Holder:
    """A ``holder`` that asks Cognito: one ListUsers (UserList) with a filter per value, for
    with ``limit=2``. The lead's pool snapshot can answer instead, free."""

    def holder(attribute: str, value: str) -> str | None:
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        users, _ = paced(lambda: gateway.list_users_page(
            pool, filter_expression=f'{attribute} = "{escaped}"', limit=2))
        return str(users[0]["username"]) if users else None

    return holder
