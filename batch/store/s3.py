"""The S3 gateway: with ``cognito.py``, the only modules that import boto3 or botocore.

The client is made the way the AWS CLI makes one, so a job finds S3 where ``aws s3 ls`` does:
boto3's session resolves credentials (environment, ``~/.aws`` profiles, SSO, web identity,
the ECS task role, instance metadata), region and endpoint. botocore 1.31+ reads
``AWS_ENDPOINT_URL_S3`` and ``AWS_ENDPOINT_URL`` (and ``endpoint_url`` in a profile's
``[services]`` section) itself, so nothing here takes an S3 endpoint: tests set
``AWS_ENDPOINT_URL_S3`` to moto's server and nothing else changes. ``--endpoint-url`` is
Cognito's and is deliberately not used for S3.

Retries: S3 is not behind the Cognito pacer, so botocore's ``standard`` retry mode (jittered
back-off on throttles, 5xx and dropped connections; ``total_max_attempts`` 6 HTTP attempts a
request) is the one retry layer for S3 calls: reads, lists, the lease and the checkpoint's puts
alike, none of them wrapped in a retry loop of its own (a failed checkpoint segment stays
pending for the next interval instead). ``cognito.py`` is the other way round for the same
reason, one layer: there botocore is pinned to one attempt and the pacer-aware layer retries.

Every botocore exception becomes a ``StorageError`` here, with S3's code, so nothing above
this module knows what a ``ClientError`` is. ``PreconditionFailed`` (a conditional write or
read that lost) is its own subclass, for the checkpoint code that will rely on it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.exceptions as bex
from botocore.config import Config

from batch.errors import StorageError

#: Keys a DeleteObjects request may name (S3's limit).
DELETE_BATCH = 1000
# S3 answers HEAD requests without a body, so botocore only has the status to go on.
_STATUS_CODES = {"403": "AccessDenied", "404": "NoSuchKey", "412": "PreconditionFailed"}
_MESSAGES = {
    "AccessDenied": "access denied (check the role's s3:GetObject / s3:ListBucket permissions)",
    "AllAccessDisabled": "access denied (all access to this object has been disabled)",
    "NoSuchBucket": "no such bucket",
    "NoSuchKey": "no such object",
    "PreconditionFailed": "a condition did not hold (it exists, or it changed)",
    "InvalidAccessKeyId": "the AWS access key is not valid",
    "SignatureDoesNotMatch": "the AWS secret key does not match the access key",
    "ExpiredToken": "the AWS session token has expired",
    "PermanentRedirect": "the bucket is in another region",
}
_CREDENTIAL_ERRORS: tuple[type[Exception], ...] = (
    bex.NoCredentialsError,
    bex.PartialCredentialsError,
    bex.CredentialRetrievalError,
    bex.ProfileNotFound,
    bex.TokenRetrievalError,
)


KeyCodes = list[tuple[str, str]]  # (key, S3's code) of the objects a request refused


class PreconditionFailed(StorageError):
    """An ``If-Match`` / ``If-None-Match`` condition did not hold: someone else wrote first."""


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """What S3 says about one object: enough to read it again and to know it is the same."""

    bucket: str
    key: str
    size: int
    etag: str
    version_id: str = ""


def translate(exc: Exception, uri: str) -> StorageError:
    """A botocore exception as the project's error: one line, S3's code kept."""
    if isinstance(exc, bex.ClientError):
        error = exc.response.get("Error", {})
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or "")
        code = str(error.get("Code") or "")
        code = _STATUS_CODES.get(code, code) if code.isdigit() or not code else code
        code = code or _STATUS_CODES.get(status, f"HTTP{status}")
        message = _MESSAGES.get(code) or str(error.get("Message") or "") or code
        kind = PreconditionFailed if code == "PreconditionFailed" else StorageError
        return kind(f"{code}: {message}", uri=uri, code=code)
    if isinstance(exc, _CREDENTIAL_ERRORS):
        return StorageError(f"AWS credentials: {exc}", uri=uri, code=type(exc).__name__)
    return StorageError(f"{type(exc).__name__}: {exc}", uri=uri, code=type(exc).__name__)


class S3Gateway:
    """Thin, thread-safe wrapper over one ``s3`` client."""

    def __init__(
        self, *, profile: str | None = None, region: str | None = None, client: Any = None
    ) -> None:
        self._client = client if client is not None else self._make_client(profile, region)

    @staticmethod
    def _make_client(profile: str | None, region: str | None) -> Any:
        config = Config(
            retries={"mode": "standard", "total_max_attempts": 6},
            connect_timeout=10,
            read_timeout=60,
            tcp_keepalive=True,
        )
        try:
            session = boto3.session.Session(profile_name=profile or None)
            # The bucket's region, if it differs, is found by botocore's redirect handling;
            # a region is only needed to sign the first request.
            return session.client(
                "s3", region_name=session.region_name or region or "us-east-1", config=config
            )
        except _CREDENTIAL_ERRORS as exc:
            raise StorageError(f"AWS configuration: {exc}", uri="s3://", code="Config") from None

    def _call(self, uri: str, operation: str, **params: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = getattr(self._client, operation)(**params)
        except Exception as exc:  # noqa: BLE001 - translated at this boundary
            raise translate(exc, uri) from exc
        return result

    def head(self, bucket: str, key: str) -> ObjectMeta:
        answer = self._call(f"s3://{bucket}/{key}", "head_object", Bucket=bucket, Key=key)
        size, etag = int(answer.get("ContentLength") or 0), str(answer.get("ETag") or "")
        return ObjectMeta(bucket, key, size, etag, str(answer.get("VersionId") or ""))

    def read_range(self, meta: ObjectMeta, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (exclusive) of exactly the object ``meta`` describes:
        the version when the bucket keeps versions, else ``If-Match`` its ETag, so an object
        replaced in the middle of a run is an error rather than a silent mix of two files."""
        uri = f"s3://{meta.bucket}/{meta.key}"
        params: dict[str, Any] = {"Bucket": meta.bucket, "Key": meta.key,
                                  "Range": f"bytes={start}-{end - 1}"}
        if meta.version_id and meta.version_id != "null":
            params["VersionId"] = meta.version_id
        elif meta.etag:
            params["IfMatch"] = meta.etag
        try:
            answer = self._call(uri, "get_object", **params)
        except PreconditionFailed:
            raise PreconditionFailed("the object was replaced while this run was reading it",
                                     uri=uri, code="PreconditionFailed") from None
        try:
            data: bytes = answer["Body"].read()
        except Exception as exc:  # noqa: BLE001 - a connection dropped mid-body
            raise translate(exc, uri) from exc
        return data

    def list(self, bucket: str, prefix: str) -> Iterator[ObjectMeta]:
        """Every object under ``prefix``, in S3's order (UTF-8 binary order of the key)."""
        uri = f"s3://{bucket}/{prefix}"
        token: str | None = None
        while True:
            params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
            if token:
                params["ContinuationToken"] = token
            answer = self._call(uri, "list_objects_v2", **params)
            for item in answer.get("Contents", []):
                yield ObjectMeta(bucket, str(item["Key"]), int(item.get("Size") or 0),
                                 str(item.get("ETag") or ""))
            if not answer.get("IsTruncated"):
                return
            token = str(answer["NextContinuationToken"])

    def put(
        self,
        bucket: str,
        key: str,
        body: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> ObjectMeta:
        """One whole object. ``if_none_match``: create only (``If-None-Match: *``);
        ``if_match``: replace only the version with that ETag. A lost race raises
        ``PreconditionFailed``."""
        params: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": body}
        if if_none_match:
            params["IfNoneMatch"] = "*"
        if if_match is not None:
            params["IfMatch"] = if_match
        answer = self._call(f"s3://{bucket}/{key}", "put_object", **params)
        return ObjectMeta(bucket, key, len(body), str(answer.get("ETag") or ""),
                          str(answer.get("VersionId") or ""))

    def delete(self, bucket: str, key: str) -> None:
        """Remove one object (no error if it is already gone: S3's own rule)."""
        self._call(f"s3://{bucket}/{key}", "delete_object", Bucket=bucket, Key=key)

    def delete_objects(self, bucket: str, keys: Sequence[str]) -> KeyCodes:
        """Remove many objects, ``DELETE_BATCH`` keys a request (DeleteObjects, quiet mode);
        the (key, S3 code) of each that S3 refused. A key already gone is no error (S3's
        rule). A refusal of the whole request (a missing bucket) raises ``StorageError``."""
        refused: list[tuple[str, str]] = []
        for start in range(0, len(keys), DELETE_BATCH):
            chunk = keys[start : start + DELETE_BATCH]
            answer = self._call(f"s3://{bucket}/{chunk[0]}", "delete_objects", Bucket=bucket,
                                Delete={"Objects": [{"Key": k} for k in chunk],
                                        "Quiet": True})
            refused += [(str(e.get("Key") or ""), str(e.get("Code") or "Error"))
                        for e in answer.get("Errors", [])]
        return refused

    def upload_file(self, bucket: str, key: str, path: str) -> None:
        """A local file as one object, streamed from disk (multipart above 8 MiB, by boto3's
        transfer manager): a report of millions of rows is never held in memory."""
        uri = f"s3://{bucket}/{key}"
        try:
            self._client.upload_file(path, bucket, key)
        except Exception as exc:  # noqa: BLE001 - translated at this boundary
            cause = exc.__context__ if isinstance(exc.__context__, bex.ClientError) else exc
            raise translate(cause, uri) from exc
