"""Before a retry reads its input or writes: the summary is confirmed against the journal.

What a retry writes (the pool, the input and so its users and values, the mapping) is taken
from the run's ``REPORT.summary.json``, a file anyone who can write the report folder can
edit. The run's journal header recorded the same facts when the run began: the input's
SHA-256, the fingerprint of the settings that decide what is written (``fingerprint()``, which
holds the pool) and the pool itself. The summary's settings must hash to that fingerprint, its
input hash must be the journal's and its pool the journal's, or the retry is refused in one
line naming the summary. A merged report's summary is checked against each shard's journal.

What it does not catch: someone who rewrites the journal header too (see undo_check).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from batch.config import build_config, replayable
from batch.errors import BatchError, UsageError
from batch.record.journal import JournalHeader, read_journal
from batch.record.layout import journal_path
from batch.record.summary import RunSummary


def check_against_journals(
    spath: Path,
    summary: RunSummary,
    report: Path,
    report_rows: Callable[[], Sequence[int]],
    flag_region: str | None,
) -> None:
    """Refuse (``UsageError``, exit 2) a summary that its run's journal does not vouch for.

    ``report_rows``: reads every row of the report, what a retry that made it was given as
    ``rows`` (the summary does not keep it; the fingerprint does); called only when the
    settings alone do not hash to the journal's fingerprint."""
    runs: list[tuple[Path, dict[str, Any]]] = [(journal_path(report), {})]
    if summary.shards:
        runs = [(journal_path(Path(str(s.get("report")))), {"shard": s.get("shard")})
                for s in summary.shards if isinstance(s, Mapping)]
        if not runs:
            raise UsageError(f"{spath}: changed after the run: its shards name no report")
    for path, extra in runs:
        try:
            state = read_journal(path)
        except BatchError as exc:
            raise UsageError(str(exc)) from None
        if state is None:
            raise UsageError(f"{spath}: the run's journal {path} is missing: retry confirms "
                             "the summary against it, and cannot")
        region = state.header.region
        if region and flag_region and flag_region != region:
            raise UsageError(f"--region {flag_region}: the run being retried wrote in {region} "
                             f"(its journal, {path}); a retry writes only there")
        bad = _mismatch(summary, state.header, extra, report_rows)
        if bad:
            raise UsageError(f"{spath}: changed after the run: {bad} is not what its journal "
                             f"{path} recorded; nothing was written")


def _mismatch(
    summary: RunSummary,
    header: JournalHeader,
    extra: Mapping[str, Any],
    report_rows: Callable[[], Sequence[int]],
) -> str:
    settings = dict(summary.settings)
    if summary.input_sha256 != header.input_sha256:
        return "its input's SHA-256"
    if header.pool and settings.get("user_pool_id") != header.pool:
        return "its pool"
    settings.update(extra)
    for attempt in range(2):  # a run; a retry, given the rows its report holds
        rows = tuple(report_rows()) if attempt else None
        try:
            config = build_config(None, {**replayable(settings), "rows": rows})
        except (BatchError, TypeError, ValueError):
            return "its settings"
        if config.fingerprint() == header.settings:
            return ""
    return "its settings"
