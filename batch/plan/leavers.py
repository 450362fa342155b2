"""``--disable-missing``: users in the pool that the input (the whole population) lacks are
disabled, guarded like the provisioning tools guard it (Entra's accidental-deletion threshold,
Adobe user-sync's ``max_adobe_only_users``).

``--max-disable N|P%`` (default ``10%`` of the pool's users): above it the run refuses before
any write, saying how many it would disable. An empty input never disables anyone, whatever
the threshold; a truncated one is what the threshold catches. Only enabled users cost a call:
one already disabled is left alone.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from batch.errors import UsageError
from batch.specs import DEFAULT_MAX_DISABLE, MaxDisable

__all__ = ["DEFAULT_MAX_DISABLE", "LeaverRows", "MaxDisable", "PoolUser", "number_leavers",
           "plan_disable_missing"]


@dataclass(frozen=True, slots=True)
class PoolUser:
    """One user of the pool as the snapshot read it: username, key value, enabled."""

    username: str
    key: str
    enabled: bool


def plan_disable_missing(
    pool_users: Iterable[PoolUser],
    present_keys: Iterable[str],
    *,
    input_rows: int,
    max_disable: MaxDisable,
    disabled: Collection[str] = (),
) -> list[str]:
    """The usernames to disable (sorted), or UsageError (exit 2, nothing written) when the
    input is empty or they are more than ``max_disable`` allows. ``present_keys``: every key
    the input names, invalid rows included (a row with a bad value is still a present user).
    ``disabled``: the leavers an earlier attempt of this run disabled (a resume): they count
    against ``max_disable`` too, once each, whatever the pool shows of them now."""
    if input_rows <= 0:
        raise UsageError("--disable-missing: the input has no rows, so every user would be "
                         "disabled; refused, nothing was written")
    present = set(present_keys)
    users = list(pool_users)
    missing = sorted(u.username for u in users if u.enabled and u.key not in present)
    allowed = max_disable.limit(len(users))
    total = len(set(missing).union(disabled))
    if total > allowed:
        earlier = len(set(disabled))
        raise UsageError(
            f"--disable-missing would disable {total} of the pool's {len(users)} users"
            + (f" ({earlier} of them by an earlier attempt of this run)" if earlier else "")
            + f", above --max-disable {max_disable.text} ({allowed}); "
            + ("nothing more was written" if earlier else "nothing was written")
        )
    return missing


@dataclass(frozen=True, slots=True)
class LeaverRows:
    """A ``--disable-missing`` run's leaver rows: ``disable``, (row, username) fed as a
    disable unless the row is finished already; ``settled``, rows an earlier attempt journaled
    unfinished whose user is no longer to disable (the pool changed since): reported, no call."""

    disable: list[tuple[int, str]]
    settled: list[tuple[int, str]]


def number_leavers(
    missing: Iterable[str], journaled: Mapping[str, tuple[int, bool]], *, after: int
) -> LeaverRows:
    """Rows for the leavers, stable whatever the pool's listing did between attempts: a user
    an earlier attempt journaled (``journaled``: username -> (row, finished)) keeps its row;
    a finished one is never fed again (the journal carries it), even if the pool shows it
    enabled again; a leaver new to this attempt is numbered after ``after`` (the highest row
    an earlier attempt may have used), so no number names two users."""
    wanted = set(missing)
    disable: list[tuple[int, str]] = []
    settled: list[tuple[int, str]] = []
    for username, (row, finished) in journaled.items():
        (disable if finished or username in wanted else settled).append((row, username))
    new = sorted(wanted.difference(journaled))
    disable += [(after + 1 + i, name) for i, name in enumerate(new)]
    return LeaverRows(sorted(disable), sorted(settled))
