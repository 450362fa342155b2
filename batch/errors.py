"""The project's exception tree: every exception the code raises on purpose.

    BatchError                a one-line refusal or failure; the cli prints it  -> exit 2
    ├── UsageError            bad flags or job file                     -> exit 2
    │   └── LockedError       another live run holds the report (record/lock.py)
    │       └── LeaseLost     another run took this run's S3 lease over (remote/lease.py)
    ├── InputError            unreadable input: file, row, column named -> exit 2
    │   └── InputChanged      the input changed while the run read it (record/guard.py)
    ├── ResumeError           a journal that does not match this run    -> exit 2
    ├── StorageError          S3 (or a local file) refused: bucket, key, access -> exit 2
    │   └── PreconditionFailed    a conditional S3 write or read lost its race (store/s3.py)
    ├── Cancelled             the job is stopping: a row's call not (re)sent (pace/retrying.py)
    └── CognitoError          an answer (or no answer) from Cognito, with its code
        ├── RetryableError    try the same call again, after a back-off
        │   ├── ThrottledError    TooManyRequestsException
        │   ├── TransientError    InternalErrorException, HTTP 5xx, connection drops, timeouts
        │   └── TriggerError      a broken Lambda trigger: retried a little; repeated -> fatal
        ├── RowError          permanent for this one user: the row fails, the job goes on
        │                         UserNotFound, InvalidParameter, AliasExists, UserLambdaValidation
        └── FatalError        no later row can succeed: stop the whole job
                                  pool not found, credentials, permissions, pool misconfigured,
                                  LimitExceededException (a message limit in Cognito, not a rate)

Outside the tree, on purpose: ``ValueError`` for a programming mistake in an argument (a
pacer's rate, an endpoint URL, a log format), ``NotImplementedError`` in the runner's abstract
work item, ``commands/run.py``'s private ``_CarryStopped`` (caught where it is raised), and the
emulator's own ``EmulatorError``.

Cognito's error codes are mapped onto this tree in one place, ``classify_code``, so that the
gateway (``cognito.py``) and the retry policy (``retrying.py``) agree.
"""

from __future__ import annotations

THROTTLE_CODES = frozenset({"TooManyRequestsException", "ThrottlingException", "Throttling"})
TRANSIENT_CODES = frozenset(
    {"InternalErrorException", "InternalFailure", "ServiceUnavailable", "InternalServerError"}
)
TRIGGER_CODES = frozenset({"UnexpectedLambdaException", "InvalidLambdaResponseException"})
ROW_CODES = frozenset(
    {
        "UserNotFoundException",
        "InvalidParameterException",
        "AliasExistsException",
        "UserLambdaValidationException",
        "CodeDeliveryFailureException",
        "InvalidUserPoolConfigurationException",
        # AdminCreateUser of a username that exists: that row fails, the next can be created
        "UsernameExistsException",
        "UnsupportedUserStateException",
        # AdminCreateUser's: the pool's password rules or a create precondition refuse this
        # user (we send no temporary password; Cognito makes one): that row fails.
        "InvalidPasswordException",
        "PreconditionNotMetException",
    }
)
FATAL_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "NotAuthorizedException",
        "AccessDeniedException",
        "AccessDenied",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredTokenException",
        "ExpiredToken",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "InvalidSmsRoleAccessPolicyException",
        "InvalidSmsRoleTrustRelationshipException",
        "InvalidEmailRoleAccessPolicyException",
        "LimitExceededException",
        "ForbiddenException",
        # The operation is switched off for this pool or account: no later call succeeds.
        "OperationNotEnabledException",
        # DescribeUserPool's: the pool's tags are broken; the pool cannot be read as it is.
        "UserPoolTaggingException",
    }
)


class BatchError(Exception):
    """Root of every error this project raises on purpose."""


class UsageError(BatchError):
    """Flags or the job file make no sense; nothing was written."""


class InputError(BatchError):
    """The input cannot be read. Names the file, and the row and column where known."""

    def __init__(
        self, message: str, *, path: str, row: int | None = None, column: str | None = None
    ) -> None:
        self.path = path
        self.row = row
        self.column = column
        where = path
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {message}")


class ResumeError(BatchError):
    """A journal exists that this run may not continue."""


class StorageError(BatchError):
    """An object or file could not be read or written (S3's code kept: ``NoSuchBucket``,
    ``NoSuchKey``, ``AccessDenied``, ``PreconditionFailed`` ...). Raised by ``batch.store.s3``."""

    def __init__(self, message: str, *, uri: str, code: str = "") -> None:
        self.uri = uri
        self.code = code
        super().__init__(f"{uri}: {message}")


class CognitoError(BatchError):
    """Cognito refused a call, or the call never got an answer."""

    def __init__(self, code: str, message: str, *, operation: str = "", status: int = 0) -> None:
        self.code = code
        self.message = message
        self.operation = operation
        self.status = status
        super().__init__(f"{code}: {message}" if message else code)


class RetryableError(CognitoError):
    """The same call may succeed later."""


class ThrottledError(RetryableError):
    """Over a request-rate quota."""


class TransientError(RetryableError):
    """A service fault or a transport failure."""


class TriggerError(RetryableError):
    """A Lambda trigger failed unexpectedly; retried a little, and repeated it stops the job."""


class RowError(CognitoError):
    """Permanent for this user; other rows may still succeed."""


class FatalError(CognitoError):
    """No later call can succeed: the job stops."""


def classify_code(code: str, status: int = 0) -> type[CognitoError]:
    """The exception class for a Cognito error code (and HTTP status, for unknown codes)."""
    if code in THROTTLE_CODES:
        return ThrottledError
    if code in TRANSIENT_CODES:
        return TransientError
    if code in TRIGGER_CODES:
        return TriggerError
    if code in ROW_CODES:
        return RowError
    if code in FATAL_CODES:
        return FatalError
    if status >= 500:
        return TransientError
    if status in (401, 403):
        return FatalError
    # An unknown 4xx concerns this request: fail the row rather than the job.
    return RowError
