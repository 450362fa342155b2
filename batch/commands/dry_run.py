"""``--dry-run``: read, map, check and resolve every row, write the planned report, call
nothing that writes.

The plan is counted again from the rows as resolved: with ``--skip-unchanged`` only the rows
that differ would be written, and only they would send messages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from batch.engine.exit_codes import EXIT_OK, EXIT_ROWS
from batch.models import JobResult, RowResult, Status, UserUpdate
from batch.plan.operations import SyncUpdate, describe_ops
from batch.plan.schema import PoolSchema
from batch.plan.summary import PlanSummary
from batch.record.report import open_report
from batch.record.summary import write_summary


def dry_run(
    items: Iterable[UserUpdate | RowResult],
    plan: PlanSummary,
    report: Path,
    *,
    resolve: Callable[[UserUpdate], UserUpdate | RowResult] | None,
    schema: PoolSchema | None,
    stream: IO[str],
) -> JobResult:
    writer = open_report(report)  # every format streams: no row is held
    plan.reset_counts()
    for item in items:
        if isinstance(item, UserUpdate) and resolve is not None:
            item = resolve(item)
        plan.tally(item, schema)
        if isinstance(item, SyncUpdate):  # a sync's row: every planned call, no value
            item = RowResult(item.row, item.username,
                             Status.CREATED if item.creates else Status.UPDATED, key=item.key,
                             error_message="dry run: not applied: " + describe_ops(item))
        elif isinstance(item, UserUpdate):
            item = RowResult(item.row, item.username, Status.UPDATED, key=item.key,
                             error_message="dry run: not applied")
        writer.write(item)
    writer.close()
    stream.write("dry run: nothing was written\n" + plan.describe() + "\n")
    summary: dict[str, Any] = {
        "dry_run": True, "rows": plan.rows, "to_apply": plan.to_apply,
        "counts": plan.by_status, "attributes": plan.attributes, "messages": plan.messages,
        "pending_verification": plan.pending_verification,
        "estimated_seconds": round(plan.estimated_seconds, 1), "report": str(report),
    }
    write_summary(report, summary)
    stream.write(f"  report: {report}\n")
    invalid = plan.by_status.get("invalid", 0)
    return JobResult(EXIT_ROWS if invalid else EXIT_OK, summary, report)
