"""``cognito-batch retry REPORT``: rerun exactly the failed and skipped rows of a run.

The report holds no attribute values, so the rows are read again from the original input,
which the run's summary names with its SHA-256: a changed input is refused. Rows skipped as
``Superseded`` (an earlier copy of a duplicated user) are not retried.

What is written (pool, mapping, key, rules) comes from the summary, so the rows are applied as
the run applied them; the summary is first confirmed against the run's journal (its settings'
fingerprint, input hash and pool: ``record/retry_check.py``), and the input is opened with
the retry's own profile, never the summary's. Where to connect and whether to ask
(``CONNECTION``) never do: anyone who can write the report folder can edit the summary, and
it must not be able to send a retry, with the user's credentials and without a question, to
another endpoint. They come the way
``run`` takes them: flags, then ``--job``'s file, then the environment (``AWS_PROFILE``,
``AWS_REGION``, ``AWS_ENDPOINT_URL``); from a job file only they and the pacing settings
(``PACE``) are taken. The retry report is ``REPORT.retryN`` (the next free N); a dry run writes
``REPORT.retryN.dry-run`` and leaves N free; a retry report that is the report being retried,
its summary or its journal is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batch.config import JobConfig, build_config, load_job_file, replayable
from batch.errors import BatchError, UsageError
from batch.inputs.reader import open_input
from batch.record.guard import check_outputs, run_outputs
from batch.record.layout import RunFiles, next_retry_report
from batch.record.lock import RunLock
from batch.record.report_reader import read_results
from batch.record.retry_check import check_against_journals
from batch.record.summary import RunSummary
from batch.store.storage import input_identity

RETRY_STATUSES = frozenset({"failed", "skipped"})
NOT_RETRIED_CODES = frozenset({"Superseded"})
CONNECTION = ("endpoint_url", "profile", "region", "confirm")
PACE = ("rate", "max_rate", "workers", "max_attempts", "max_row_seconds",
        "per_user_rate", "list_rate", "get_rate", "quiet")


def retry_rows(report: Path) -> tuple[int, ...]:
    """The rows to retry, the report streamed: memory is the rows retried, not the report."""
    rows = {r.row for r in read_results(report)
            if r.status in RETRY_STATUSES and r.error_code not in NOT_RETRIED_CODES}
    return tuple(sorted(rows))


def _every_row(report: Path) -> tuple[int, ...]:
    """Every row of the report: what a retry that made it was given (``rows``), which its
    journal's fingerprint holds. Read only for a report a plain run did not make."""
    return tuple(sorted({r.row for r in read_results(report)}))


def next_report_path(report: Path, *, dry_run: bool = False) -> Path:
    """``R.retryN.csv``, the next free N; a dry run's ``R.retryN.dry-run.csv`` keeps N free."""
    return next_retry_report(report, dry_run=dry_run)


def _same_input(
    input_path: str, identity: str, settings: dict[str, Any], profile: str | None
) -> bool:
    """``profile``: the retry's own (flag, --job, or the environment), never the summary's."""
    try:
        source = open_input(input_path, format=settings.get("format") or None,
                            delimiter=settings.get("delimiter") or ",",
                            profile=profile or None)
        return input_identity(source) == identity
    except BatchError:
        return False


def retry_config(report: str, job_file: str | None, overrides: Mapping[str, Any]) -> JobConfig:
    path = Path(report)
    files = RunFiles(path)
    spath = files.summary
    try:
        summary = RunSummary.load(spath)
        settings: dict[str, Any] = dict(summary.settings)
        input_path, input_sha = summary.input, summary.input_sha256
        if summary.dry_run or not settings or not isinstance(input_path, str):
            raise KeyError("settings")
    except FileNotFoundError:
        raise UsageError(
            f"{spath}: missing; retry needs the summary written beside the report"
        ) from None
    except (UsageError, KeyError, TypeError):
        raise UsageError(f"{spath}: not a run summary (a dry run cannot be retried)") from None
    with RunLock(files.lock):  # a run still writing this report: its rows are not final
        rows = retry_rows(path)
    if not rows:
        raise UsageError(f"{path}: no failed or skipped rows to retry")
    check_against_journals(spath, summary, path, lambda: _every_row(path),
                           overrides.get("region"))
    job = load_job_file(job_file) if job_file else {}
    profile = overrides.get("profile") or job.get("profile")
    if not input_sha or not _same_input(input_path, input_sha, settings, profile):
        raise UsageError(
            f"{input_path}: the input has changed or gone since the run; retry needs the same file"
        )
    ran_with = {k: settings.get(k) for k in CONNECTION}
    # A shard's retry reruns that shard's failed rows itself (its rates are already divided).
    for name in ("dry_run", "fresh", "report", "input", "rows", "shard", *CONNECTION):
        settings.pop(name, None)
    settings = replayable(settings)
    if job:
        settings.update({k: v for k, v in job.items()
                         if k in CONNECTION or k in PACE or k == "client_metadata"})
    _require_metadata(summary, settings, overrides)
    _note_connection(ran_with, {**settings, **{k: v for k, v in overrides.items() if v}})
    target = Path(overrides.get("report") or next_report_path(
        path, dry_run=bool(overrides.get("dry_run"))))
    local_input = None if input_path.startswith("s3://") else Path(input_path)
    check_outputs(local_input, run_outputs(target),
                  protected=files.recorded("the report being retried"))
    data = {**settings, "input": input_path, "rows": rows, "report": str(target)}
    data.update({k: v for k, v in overrides.items()
                 if v is not None and k not in ("input", "report")})
    return build_config(None, data)


def _require_metadata(
    summary: RunSummary, settings: Mapping[str, Any], overrides: Mapping[str, Any]
) -> None:
    """The summary keeps client metadata's keys, never its values (they may be secrets a
    Lambda trigger reads): a retry of a run that passed some must be given them again, or its
    rows would reach the triggers without them."""
    keys = summary.client_metadata_keys or []
    given = overrides.get("client_metadata") or settings.get("client_metadata")
    if keys and not given:
        raise UsageError(
            "the run passed client metadata to Lambda triggers (keys: " + ", ".join(keys) + "); "
            "its values are never stored, so give them again: --client-metadata KEY=VALUE "
            "(or client_metadata in --job)"
        )


def _note_connection(ran_with: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    """Say which connection flags the run had that the retry lacks (names only: the values
    are the summary's, which is not to be trusted, or echoed)."""
    missing = [f"--{k.replace('_', '-')}" for k in ("endpoint_url", "profile", "region")
               if ran_with.get(k) and not given.get(k)]
    if missing:
        logging.getLogger("batch").warning(
            "the run being retried was made with %s; retry takes where to connect only from "
            "its own flags, --job or the environment: pass them again if they are needed",
            ", ".join(missing),
        )
