"""cognito-batch: bulk, throttled, resumable attribute updates for Amazon Cognito user pools.

The command line (``cognito-batch``, ``python -m batch``) is a thin shell over this API
(``batch.api``; docs/python-api.md)::

    import batch
    result = batch.run("jobs/nightly-sync.toml", confirm=False, on_progress=print)
    result.success, result.exit_code, result.counts, result.report, result.summary.calls

``run_job(build_config(...))`` (the older form, returning ``JobResult`` with the summary as a
dict) stays.
"""

from batch.api import RunResult, run
from batch.commands.run import Job, run_job
from batch.config import JobConfig, build_config
from batch.errors import (
    BatchError,
    CognitoError,
    FatalError,
    InputError,
    ResumeError,
    RetryableError,
    RowError,
    ThrottledError,
    TransientError,
    TriggerError,
    UsageError,
)
from batch.models import JobResult, RowResult, Status, UserUpdate
from batch.plan.summary import PlanSummary
from batch.record.summary import RunSummary
from batch.view.progress import Tick

__all__ = [
    "BatchError",
    "CognitoError",
    "FatalError",
    "InputError",
    "Job",
    "JobConfig",
    "JobResult",
    "PlanSummary",
    "ResumeError",
    "RetryableError",
    "RowError",
    "RowResult",
    "RunResult",
    "RunSummary",
    "Status",
    "Tick",
    "ThrottledError",
    "TransientError",
    "TriggerError",
    "UsageError",
    "UserUpdate",
    "build_config",
    "run",
    "run_job",
]
