"""S3 calls have one retry layer: botocore's standard mode (store/s3.py), not it inside another.

A counting ``before-send`` hook answers every PutObject with a 503, so the test sees each HTTP
attempt without a network; botocore's back-off sleeps are recorded, not slept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import botocore.endpoint
import pytest
from botocore.awsrequest import AWSResponse

from batch.errors import StorageError
from batch.remote.checkpoint import Checkpoint
from batch.store.s3 import S3Gateway
from batch.store.storage import S3Storage, parse


class _Body:
    def stream(self, **_: Any) -> Any:
        yield b"<Error><Code>SlowDown</Code><Message>slow down</Message></Error>"


def _always_503(sent: list[str]) -> Any:
    def before_send(request: Any, **_: Any) -> AWSResponse:
        sent.append(request.method)
        return AWSResponse(request.url, 503, {}, _Body())

    return before_send


def test_a_checkpoint_put_that_keeps_failing_is_sent_only_as_often_as_botocore_tries_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN the S3 client the tool makes, and S3 answering every put with 503 SlowDown
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    slept: list[float] = []
    monkeypatch.setattr(botocore.endpoint.time, "sleep", slept.append)
    gateway = S3Gateway()
    sent: list[str] = []
    gateway._client.meta.events.register("before-send.s3.PutObject", _always_503(sent))
    journal = tmp_path / "report.csv.journal"
    journal.write_bytes(b"x\n")
    checkpoint = Checkpoint(S3Storage(gateway), parse("s3://bucket/report.csv.journal.d/"),
                            journal, sleep=slept.append)

    # WHEN the checkpoint puts an object
    with pytest.raises(StorageError):
        checkpoint.put(parse("s3://bucket/report.csv"), journal)

    # THEN it went out as often as botocore's standard mode tries one request (6), not that
    # many times for each of the checkpoint's own attempts (6 x 6 = 36 before)
    assert sent == ["PUT"] * 6
