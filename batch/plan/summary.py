"""What a run is about to do, counted from the planned rows: shown before confirmation, by
``--dry-run``, and (as counts) in the dry run's summary."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from batch.config import JobConfig
from batch.models import RowResult, Status, UserUpdate
from batch.pace.quota import Quotas
from batch.pace.rate_plan import WARN_SHARE, RatePlan, rate_plan
from batch.plan.operations import SyncUpdate
from batch.plan.schema import PoolSchema


@dataclass(slots=True)
class PlanSummary:
    """What a run is about to do: shown before confirmation and by ``--dry-run``."""

    pool_id: str
    pool_name: str
    region: str
    endpoint: str
    rows: int
    to_apply: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    attributes: dict[str, int] = field(default_factory=dict)
    messages: dict[str, int] = field(default_factory=dict)
    pending_verification: int = 0
    rate: float = 25.0
    resumed: int = 0
    upper_bound: bool = False  # counted before reading users: unchanged rows not yet known
    rate_meaning: str = ""
    quota: float = 0.0  # the enforced UserUpdate quota, requests/s
    quota_source: str = ""  # "read from GetProvisionedLimit" or "defaults: ..."
    quota_share: float = 0.0  # the most of it the run takes
    warnings: list[str] = field(default_factory=list)
    operations: dict[str, int] = field(default_factory=dict)  # a sync's calls by operation
    disable_missing: int | None = None  # --disable-missing: users it disables

    @property
    def estimated_seconds(self) -> float:
        return self.to_apply / self.rate if self.rate > 0 else math.inf

    def reset_counts(self) -> None:
        self.by_status, self.attributes, self.messages, self.operations = {}, {}, {}, {}
        self.to_apply = self.pending_verification = 0

    def tally(self, item: UserUpdate | RowResult, schema: PoolSchema | None) -> None:
        """Count one planned row: its outcome, attributes, messages, pending verification."""
        status = item.status.value if isinstance(item, RowResult) else (
            Status.CREATED.value if isinstance(item, SyncUpdate) and item.creates
            else Status.UPDATED.value)
        if isinstance(item, SyncUpdate):
            for op in item.ops:
                self.operations[op.operation] = self.operations.get(op.operation, 0) + 1
        self.by_status[status] = self.by_status.get(status, 0) + 1
        if not isinstance(item, UserUpdate):
            return
        self.to_apply += 1
        for name in item.attribute_names:
            self.attributes[name] = self.attributes.get(name, 0) + 1
        if schema is None:
            return
        for kind in schema.sends_message(item.attributes):
            self.messages[kind] = self.messages.get(kind, 0) + 1
        pending = {a for a, _ in item.attributes} & schema.verify_before_update
        flags = dict(item.attributes)
        if any(flags.get(f"{a}_verified") != "true" for a in pending):
            self.pending_verification += 1

    def describe(self) -> str:
        target = f"{self.pool_id} ({self.pool_name})" if self.pool_name else self.pool_id
        lines = [] if self.disable_missing is None else [
            f"disable:   {self.disable_missing} users absent from the input (--disable-missing)"]
        lines += [
            f"pool:      {target} in {self.region}" + (f" at {self.endpoint}" if self.endpoint
                                                         else ""),
            f"rows:      {self.rows}" + (f" ({self.resumed} already done, resuming)"
                                         if self.resumed else ""),
            f"to write:  {'at most ' if self.upper_bound else ''}{self.to_apply} users, "
            f"about {duration(self.estimated_seconds)} "
            f"at {self.rate:g}/s",
        ]
        if self.quota:
            lines.append(
                f"quota:     UserUpdate {self.quota:g}/s ({self.quota_source}); this run takes "
                f"up to {self.rate:g}/s = {100 * self.quota_share:.0f}% of it"
                + (f" ({self.rate_meaning})" if self.rate_meaning else "")
            )
        lines += [f"warning:   {w}" for w in self.warnings]
        if self.by_status:
            lines.append("planned:   " + ", ".join(f"{k} {v}" for k, v in
                                                   sorted(self.by_status.items())))
        if self.operations:
            lines.append("calls:     " + ", ".join(f"{k} {v}" for k, v in
                                                   sorted(self.operations.items())))
        if self.attributes:
            lines.append("attributes: " + ", ".join(f"{k} ({v})" for k, v in
                                                    sorted(self.attributes.items())))
        if self.messages:
            lines.append(
                "messages:  "
                + ", ".join(f"{v} {k}" for k, v in sorted(self.messages.items()))
                + " verification messages would be sent (--mark-verified avoids them)"
            )
        if self.pending_verification:
            lines.append(
                f"pending:   {self.pending_verification} new values apply only once the user "
                "verifies them (the pool requires verification before update)"
            )
        return "\n".join(lines)


def duration(seconds: float) -> str:
    """A rough, readable length of time: ``42s``, ``17 min``, ``3.5 h``."""
    if seconds == math.inf:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def fill_plan(
    summary: PlanSummary, config: JobConfig, quotas: Quotas, *, shards: int = 1
) -> RatePlan:
    """Put the rate and the quota line in a plan, with the warning when the rate asked for
    leaves other applications little of the quota; returns the plan's rate."""
    plan = rate_plan(config, quotas, shards=shards)
    summary.rate = plan.ceiling
    summary.rate_meaning = plan.meaning
    summary.quota = quotas.update
    summary.quota_source = quotas.source
    summary.quota_share = plan.share
    if plan.share > WARN_SHARE and not (config.auto_rate or config.polite_rate):
        summary.warnings.append(
            f"--rate {config.rate.strip()} may take {100 * plan.share:.0f}% of the "
            f"{quotas.update:g}/s UserUpdate quota, leaving other applications in this "
            "account and region little; throttles slow the job, but only after their calls "
            "were refused too"
        )
    return plan
