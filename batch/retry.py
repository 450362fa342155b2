"""``cognito-batch retry REPORT``: rerun exactly the failed and skipped rows of a run.

The report holds no attribute values, so the rows are read again from the original input,
which the run's summary names with its SHA-256: a changed input is refused. Rows skipped as
``Superseded`` (an earlier copy of a duplicated user) are not retried.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batch.config import JobConfig, build_config
from batch.errors import BatchError, UsageError
from batch.reader import open_input
from batch.report import read_report, summary_path
from batch.storage import input_identity

RETRY_STATUSES = frozenset({"failed", "skipped"})
NOT_RETRIED_CODES = frozenset({"Superseded"})


def retry_rows(report: Path) -> tuple[int, ...]:
    rows = []
    for record in read_report(report):
        if record["status"] in RETRY_STATUSES and record.get("error_code") not in NOT_RETRIED_CODES:
            rows.append(int(record["row"]))
    return tuple(sorted(set(rows)))


def next_report_path(report: Path) -> Path:
    stem = report.name[: -len(report.suffix)] if report.suffix else report.name
    for n in range(1, 1000):
        candidate = report.with_name(f"{stem}.retry{n}{report.suffix}")
        if not candidate.exists():
            return candidate
    raise UsageError(f"{report}: too many retry reports beside it")


def _same_input(input_path: str, identity: str, settings: dict[str, Any]) -> bool:
    try:
        source = open_input(input_path, format=settings.get("format") or None,
                            delimiter=settings.get("delimiter") or ",",
                            profile=settings.get("profile") or None)  # fmt: skip
        return input_identity(source) == identity
    except BatchError:
        return False


def retry_config(report: str, job_file: str | None, overrides: Mapping[str, Any]) -> JobConfig:
    path = Path(report)
    spath = summary_path(path)
    try:
        summary = json.loads(spath.read_text(encoding="utf-8"))
        settings: dict[str, Any] = dict(summary["settings"])
        input_path, input_sha = summary["input"], summary["input_sha256"]
    except FileNotFoundError:
        raise UsageError(
            f"{spath}: missing; retry needs the summary written beside the report"
        ) from None
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"{spath}: not a run summary (a dry run cannot be retried)") from None
    rows = retry_rows(path)
    if not rows:
        raise UsageError(f"{path}: no failed or skipped rows to retry")
    if not _same_input(input_path, input_sha, settings):
        raise UsageError(
            f"{input_path}: the input has changed or gone since the run; retry needs the same file"
        )
    # A shard's retry reruns that shard's failed rows itself (its rates are already divided).
    for name in ("dry_run", "fresh", "report", "input", "rows", "shard"):
        settings.pop(name, None)
    data = {**settings, "input": input_path, "rows": rows,
            "report": str(next_report_path(path))}  # fmt: skip
    data.update({k: v for k, v in overrides.items() if v is not None and k != "input"})
    if job_file:
        raise UsageError("retry takes its settings from the report's summary; drop --job")
    return build_config(None, data)
