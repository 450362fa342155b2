"""A run whose report is in S3: the same run, in a private local spool, its journal
checkpointed to S3 as it goes under a lease that keeps one run per report, and its report,
summary, timeline and before-images put beside the S3 report at the end
(``remote/checkpoint.py``, ``remote/lease.py``)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from pathlib import Path
from typing import Protocol

from batch.config import JobConfig
from batch.engine.pipeline import Pipeline
from batch.errors import ResumeError, UsageError
from batch.models import JobResult
from batch.remote.checkpoint import Checkpoint, S3Report
from batch.view.logs import EventLog


class Job(Protocol):
    """What of ``commands.run.Job`` the S3 wrapper uses (run.py imports this module)."""

    config: JobConfig
    log: EventLog
    pipeline: Pipeline
    checkpoint: Checkpoint | None
    s3: S3Report | None

    def _run_locked(self) -> JobResult: ...

    def _shown(self, path: Path) -> str: ...

    def _stop(self, reason: str) -> None: ...


def run_with_s3_report(job: Job) -> JobResult:
    """The run in a private local spool, its journal checkpointed to S3 as it goes, its
    report, summary and journal put beside the S3 report at the end (``checkpoint.py``)."""
    config = job.config
    if config.dry_run:
        raise UsageError("--dry-run with an s3:// report: give a local --report for the "
                         "planned report")
    s3 = S3Report(config.report, profile=config.profile or None)
    checkpoint: Checkpoint | None = None
    try:
        job.config = dataclasses.replace(config, spool=str(s3.spool))
        lease = s3.lease(ttl=config.lease_seconds, warn=job.log.warning)
        lease.acquire()  # the first write to the prefix: AccessDenied stops the run here
        try:
            job.checkpoint = checkpoint = Checkpoint(
                s3.store, s3.segments, s3.journal, lease=lease,
                interval=config.checkpoint_seconds, on_lost=job._stop,
                warn=job.log.warning,
            )
            checkpoint.start()  # renewing the lease from now on
            s3.restore(fresh=config.fresh)
            job.s3 = s3
            job.pipeline.shown = job._shown
            job.pipeline.after_journal = functools.partial(
                _begin_checkpoint, checkpoint, s3)
            job.pipeline.durable = (checkpoint, checkpoint.interval)
            try:
                result = job._run_locked()
            except ResumeError as exc:
                raise ResumeError(str(exc).replace(str(s3.journal), str(s3.segments))) from None
            except BaseException:
                checkpoint.close()
                with contextlib.suppress(Exception):  # what is journaled reaches S3
                    checkpoint.upload()
                raise
            s3.publish(checkpoint)
            return result
        finally:
            if checkpoint is not None:
                checkpoint.close()
            with contextlib.suppress(Exception):  # a lease that expires is released too
                lease.release()
    finally:
        job.config = config
        s3.remove_spool()


def _begin_checkpoint(checkpoint: Checkpoint, s3: S3Report, resumed: bool) -> None:
    checkpoint.begin(resumed=resumed, restored_segments=s3.restored_segments, clear=s3.clear,
                     run=s3.run)
