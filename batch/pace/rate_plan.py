"""How fast a run may write: the ceiling under the enforced quota, and the controller under it.

One place for every command that writes (``run`` and ``retry`` through ``job.py``, ``undo``
through ``restore.py``), so they all follow the same rules: the quota read with
GetProvisionedLimit (``quota.py``), the polite default (a share of it, backing off at the
first throttle so the live application sharing the quota is not starved), ``--rate auto``,
``--rate P%`` and ``--rate N`` (capped at the quota), divided between shards. An undo runs
just when the live application is likely stressed (right after a bad run): it must not be
the one command that ignores throttles.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from batch.config import JobConfig
from batch.pace.controllers import MeasuredRate, RateController, SharedRate
from batch.pace.quota import DEFAULT_QUOTAS, Quotas

__all__ = ["AUTO_SHARE", "POLITE_SHARE", "WARN_SHARE", "RatePlan", "category_controller",
           "rate_controller", "rate_label", "rate_plan"]

#: The ceilings as shares of the enforced UserUpdate quota: the default leaves 10 % of it to
#: other applications even when they are idle; auto fills what they leave (controllers.py).
POLITE_SHARE = 0.90
AUTO_SHARE = 1.0
#: The plan warns when a run may take more than this share of the quota.
WARN_SHARE = 0.90


class RatePlan(NamedTuple):
    """What the rate means, the most the job will send (calls/s), and that as a share of the
    UserUpdate quota (0 when the quota is 0)."""

    meaning: str
    ceiling: float
    share: float


def rate_plan(config: JobConfig, quotas: Quotas, *, shards: int = 1) -> RatePlan:
    """The ceiling the controller never goes above, for ``config.rate`` against ``quotas``."""
    quota = quotas.update
    cap = config.max_rate or math.inf
    # A shard takes its share of a share: the quota is account-wide, shards add CPU only.
    if config.polite_rate:
        ceiling = min(cap, POLITE_SHARE * quota / shards)
        what = f"polite: up to {100 * POLITE_SHARE:.0f}% of it, less while others need more"
    elif config.auto_rate:
        if not quotas.known:
            ceiling = min(cap, 10_000.0)
            what = "auto: discovered (the quota is not known)"
        else:
            ceiling = min(cap, AUTO_SHARE * quota / shards)
            what = f"auto: up to {100 * AUTO_SHARE:.0f}% of it, less while others need more"
    elif config.rate_share is not None:
        ceiling = config.rate_share * quota / shards
        what = f"{config.rate.strip()} of the quota, less while others need it"
    else:
        ceiling = config.fixed_rate
        what = f"at most {ceiling:g}/s, less while others need it"
        if quotas.known and ceiling > quota / shards:
            # Above the enforced quota every extra call is refused, someone's or ours.
            ceiling = quota / shards
            what = f"--rate {config.fixed_rate:g} is above the quota: {ceiling:g} at most"
    if config.auto_rate and not quotas.known:
        return RatePlan(what, ceiling, AUTO_SHARE)  # all of whatever it turns out to be
    return RatePlan(what, ceiling, ceiling / quota if quota > 0 else 0.0)


def rate_controller(config: JobConfig, quotas: Quotas, ceiling: float) -> RateController:
    """The controller for ``config.rate`` under ``ceiling`` (``rate_plan``'s). The SharedRate
    parameters live here only: ``run``, ``retry`` and ``undo`` share them."""
    if config.auto_rate and not quotas.known:
        # The quota is not known: discover it from throttles, from 10/s up.
        return MeasuredRate(initial=min(ceiling, 10.0), max_rate=ceiling)
    if config.auto_rate:
        # Its ceiling is the quota itself, so whenever anyone else calls, its probes end in
        # an empty bucket: a wider margin under that level (0.12 Q) than the default's, and
        # probes no rarer than every 16 s, so what the neighbours release comes back soon.
        return SharedRate(ceiling=ceiling, headroom=0.12 / AUTO_SHARE * ceiling, hold_s=8.0,
                          hold_max_s=16.0)
    # The default, and a rate the operator gave: further under the level at which the
    # bucket ran out (the default: 0.08 Q under it; its ceiling is 0.9 Q), probing less
    # often (controllers.py: SharedRate).
    if config.polite_rate:
        return SharedRate(ceiling=ceiling, headroom=0.08 / POLITE_SHARE * ceiling, hold_s=8.0)
    return SharedRate(ceiling=ceiling, keep=0.9, hold_s=8.0)


def category_controller(
    config: JobConfig, quotas: Quotas, category: str, *, shards: int = 1
) -> RateController:
    """The controller of another category's lane (a sync's UserCreation): the same rules as
    the UserUpdate one (polite by default), under that category's quota."""
    rate = quotas.rates.get(category, DEFAULT_QUOTAS.get(category, quotas.update))
    own = Quotas({**quotas.rates, "UserUpdate": rate}, quotas.free, quotas.source)
    return rate_controller(config, own, rate_plan(config, own, shards=shards).ceiling)


def rate_label(config: JobConfig) -> str | float:
    """The summary's ``rate``: "polite", "auto", "P%", or the calls/s asked for."""
    if config.polite_rate:
        return "polite"
    if config.auto_rate or config.rate_share is not None:
        return config.rate.strip().lower()
    return config.fixed_rate
