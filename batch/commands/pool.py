"""The pool a command writes to: the gateway to it and its description, the same for run,
retry and undo (a pool that is not there, or not ours to read, is one line: exit 2)."""

from __future__ import annotations

import threading
from typing import Any

from batch.cognito import CognitoGateway, ConnectionSettings
from batch.config import JobConfig
from batch.errors import CognitoError, FatalError, UsageError
from batch.pace.pacer import event_waiter
from batch.pace.retrying import Retrier, RetryPolicy


def gateway_for(config: JobConfig) -> CognitoGateway:
    """Where to connect comes from the config's flags or environment, never from a file."""
    return CognitoGateway(ConnectionSettings(
        region=config.region or None, profile=config.profile or None,
        endpoint_url=config.endpoint_url or None, max_connections=config.workers + 4,
    ))


def describe_pool(gateway: Any, pool_id: str, stop: threading.Event) -> dict[str, Any]:
    """DescribeUserPool, retried; a missing or forbidden pool is a ``UsageError``."""
    answer: list[dict[str, Any]] = []
    retrier = Retrier(RetryPolicy(max_attempts=5), wait=event_waiter(stop))
    outcome = retrier.run(lambda: answer.append(gateway.describe_user_pool(pool_id)))
    exc = outcome.error
    if exc is None:
        return answer[0]
    if isinstance(exc, CognitoError) and (
        isinstance(exc, FatalError) or exc.code == "ResourceNotFoundException"
    ):
        raise UsageError(f"user pool {pool_id}: {exc.code}: {exc.message}") from None
    raise exc
