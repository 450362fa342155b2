"""``--disable-missing``: users in the pool that the input (the whole population) lacks are
disabled, guarded like the provisioning tools guard it (Entra's accidental-deletion threshold,
Adobe user-sync's ``max_adobe_only_users``).

``--max-disable N|P%`` (default ``10%`` of the pool's users): above it the run refuses before
any write, saying how many it would disable. An empty input never disables anyone, whatever
the threshold; a truncated one is what the threshold catches. Only enabled users cost a call:
one already disabled is left alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from batch.errors import UsageError
from batch.specs import DEFAULT_MAX_DISABLE, MaxDisable

__all__ = ["DEFAULT_MAX_DISABLE", "MaxDisable", "PoolUser", "plan_disable_missing"]


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
) -> list[str]:
    """The usernames to disable (sorted), or UsageError (exit 2, nothing written) when the
    input is empty or they are more than ``max_disable`` allows. ``present_keys``: every key
    the input names, invalid rows included (a row with a bad value is still a present user)."""
    if input_rows <= 0:
        raise UsageError("--disable-missing: the input has no rows, so every user would be "
                         "disabled; refused, nothing was written")
    present = set(present_keys)
    users = list(pool_users)
    missing = sorted(u.username for u in users if u.enabled and u.key not in present)
    allowed = max_disable.limit(len(users))
    if len(missing) > allowed:
        raise UsageError(
            f"--disable-missing would disable {len(missing)} of the pool's {len(users)} users, "
            f"above --max-disable {max_disable.text} ({allowed}); nothing was written"
        )
    return missing
