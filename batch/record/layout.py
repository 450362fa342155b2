"""Every file a run writes, named in one place: read this module to know what lands where.

A run on ``out.csv`` writes, beside it::

    out.csv                    the report (one row per input row)
    out.csv.journal            every result as it is decided: what a resume trusts
    out.csv.summary.json       the counts and figures (``summary.RunSummary``)
    out.csv.timeline.json      rate, throttles and latency over time (for the HTML page)
    out.csv.undo.jsonl         before-images: what ``undo`` puts back
    out.csv.state.parquet      ``--incremental``: what the last finished run applied
    out.csv.keyscan.npz        the key scan, kept for a resume (checked against the input)
    out.csv.lock               held while the run writes (``lock.RunLock``)
    out.csv.snapshot-XXXXXXXX.sqlite3   the pool's users while a run compares (removed after)
    .out.csv.XXXXXXXX.tmp      a temporary renamed over its file (``files.atomic_path``)

and, for an ``s3://`` report, ``out.csv.lease`` and ``out.csv.journal.d/`` (the journal's
segments) beside the object. The undo of ``out.csv`` is a run of its own on ``out.undo.csv``
(the same family, its names built here too); a retry's is ``out.retryN.csv``; shard K of N
writes ``out.shard-K-of-N.csv``; ``merge`` assembles through ``.out.csv.merging.csv``.

Two of these rules sit in lower layers that need them before a report exists (the shard's
name in ``specs.Shard.path``, the snapshot's prefix in ``plan.lookup``): they are used from
here, not restated, so this module stays the one list. ``RunFiles.written()`` is that list for
the output guard (``guard.check_outputs``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from batch.errors import UsageError
from batch.plan.lookup import snapshot_prefix
from batch.specs import Shard


def _stem(report: Path) -> str:
    return report.name[: -len(report.suffix)] if report.suffix else report.name


def journal_path(report: Path) -> Path:
    return report.with_name(report.name + ".journal")


def summary_path(report: Path) -> Path:
    return report.with_name(report.name + ".summary.json")


def timeline_path(report: Path) -> Path:
    return report.with_name(report.name + ".timeline.json")


def undo_path(report: Path) -> Path:
    """The before-images a run records for its undo."""
    return report.with_name(report.name + ".undo.jsonl")


def state_path(report: Path) -> Path:
    """The applied state an incremental run leaves for the next (``record.state``)."""
    return report.with_name(report.name + ".state.parquet")


def keyscan_path(report: Path) -> Path:
    """The key scan and the carried prefix's input offset, kept for a resume."""
    return report.with_name(report.name + ".keyscan.npz")


def lock_path(report: Path) -> Path:
    return report.with_name(report.name + ".lock")


def undo_report_path(report: Path) -> Path:
    """The report of the undo of ``report``: ``out.csv`` -> ``out.undo.csv``."""
    return report.with_name(f"{_stem(report)}.undo{report.suffix}")


def retry_report_path(report: Path, n: int, *, dry_run: bool = False) -> Path:
    """``out.csv`` -> ``out.retryN.csv`` (a dry run's: ``out.retryN.dry-run.csv``)."""
    tail = ".dry-run" if dry_run else ""
    return report.with_name(f"{_stem(report)}.retry{n}{tail}{report.suffix}")


def next_retry_report(report: Path, *, dry_run: bool = False) -> Path:
    """The next free ``out.retryN.csv``, or the first whose retry did not finish (killed or
    stopped: its journal has no end), so the same ``retry`` command resumes it as ``run``
    resumes, instead of writing its rows again under the next N. A dry run's name keeps
    that N free."""
    for n in range(1, 1000):
        path = retry_report_path(report, n)
        if not path.exists() or _unfinished(journal_path(path)):
            return retry_report_path(report, n, dry_run=dry_run)
    raise UsageError(f"{report}: too many retry reports beside it")


def _unfinished(journal: Path) -> bool:
    """A journal whose last line is not ``=complete`` (read from its end)."""
    try:
        with open(journal, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 10))
            return handle.read() != b"=complete\n"
    except OSError:
        return False


def merging_path(report: Path) -> Path:
    """Where ``merge`` streams the merged report before renaming it over ``report``."""
    return report.with_name(f".{report.name}.merging{report.suffix}")


def lease_name(report_name: str) -> str:
    """The lease object beside an ``s3://`` report (``remote.lease``)."""
    return f"{report_name}.lease"


def segments_name(report_name: str) -> str:
    """The folder of journal segments beside an ``s3://`` report (``remote.checkpoint``)."""
    return f"{report_name}.journal.d/"


@dataclass(frozen=True, slots=True)
class RunFiles:
    """The family of files of one run on ``report``."""

    report: Path

    @property
    def journal(self) -> Path:
        return journal_path(self.report)

    @property
    def summary(self) -> Path:
        return summary_path(self.report)

    @property
    def timeline(self) -> Path:
        return timeline_path(self.report)

    @property
    def before_images(self) -> Path:
        return undo_path(self.report)

    @property
    def lock(self) -> Path:
        return lock_path(self.report)

    @property
    def state(self) -> Path:
        return state_path(self.report)

    @property
    def keyscan(self) -> Path:
        return keyscan_path(self.report)

    @property
    def snapshot_prefix(self) -> str:
        return snapshot_prefix(self.report)

    @property
    def lease(self) -> str:
        return lease_name(self.report.name)

    @property
    def segments(self) -> str:
        return segments_name(self.report.name)

    @property
    def merging(self) -> Path:
        return merging_path(self.report)

    def undo(self) -> RunFiles:
        """The files of the undo of this run (a run of its own)."""
        return RunFiles(undo_report_path(self.report))

    def shard(self, shard: Shard) -> RunFiles:
        return RunFiles(shard.path(self.report))

    def written(self) -> list[tuple[str, Path]]:
        """Every local file a run on this report writes at a fixed name, for the guard."""
        return [("report", self.report), ("journal", self.journal),
                ("summary", self.summary), ("timeline", self.timeline),
                ("before-images", self.before_images), ("lock", self.lock),
                ("applied state", self.state), ("key scan", self.keyscan)]

    def all(self) -> list[Path]:
        return [path for _, path in self.written()]

    def recorded(self, whose: str) -> list[tuple[str, Path]]:
        """The same list, each named as a file to keep (``whose``: "the run being undone")."""
        return [(f"the {what} of {whose}", path) for what, path in self.written()]
