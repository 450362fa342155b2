"""cognito-batch: bulk, throttled, resumable attribute updates for Amazon Cognito user pools.

The command line (``cognito-batch``, ``python -m batch``) is a thin shell over this API::

    from batch import build_config, run_job
    result = run_job(build_config("jobs/nightly-sync.toml", {"confirm": False}))
    result.exit_code, result.summary, result.report
"""

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
    "Status",
    "ThrottledError",
    "TransientError",
    "TriggerError",
    "UsageError",
    "UserUpdate",
    "build_config",
    "run_job",
]
