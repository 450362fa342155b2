"""batch.store.storage and the batch.store.s3 gateway: local files and S3 (moto over HTTP)
behind one
interface; conditional writes; pinned ranged reads; S3 errors as the project's errors."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

import batch.store.storage as storage
from batch.errors import StorageError
from batch.store.s3 import PreconditionFailed, S3Gateway
from batch.store.storage import LocalStorage, input_identity, parse, storage_for


def test_parse_tells_s3_from_local() -> None:
    # GIVEN / WHEN / THEN an S3 URI splits into bucket and key, anything else is a path
    loc = parse("s3://bucket/a/b.csv")
    assert (loc.is_s3, loc.bucket, loc.key, loc.name) == (True, "bucket", "a/b.csv", "b.csv")
    assert parse("S3://bucket/pre/").key == "pre/"
    assert parse("data/x.csv").is_s3 is False
    with pytest.raises(StorageError):
        parse("s3:///key")


def test_local_listing_is_in_key_byte_order_and_recursive(tmp_path: Path) -> None:
    # GIVEN files whose natural, case-folded and byte orders differ
    for name in ("b/2.parquet", "a=10/x", "a=9/x", "B.parquet", "é.parquet"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    # WHEN the folder is listed
    listed = [info.relative for info in LocalStorage().list(parse(tmp_path))]
    # THEN the order is UTF-8 byte order of the relative key, as S3 lists
    assert listed == ["B.parquet", "a=10/x", "a=9/x", "b/2.parquet", "é.parquet"]


def test_local_conditional_put(tmp_path: Path) -> None:
    # GIVEN local storage and a file written create-only
    store, loc = LocalStorage(), parse(tmp_path / "commit.json")
    first = store.put(loc, b"one", if_none_match=True)
    # WHEN it is written create-only again, or replaced with a stale identity
    with pytest.raises(PreconditionFailed):
        store.put(loc, b"two", if_none_match=True)
    second = store.put(loc, b"two!", if_match=first.etag)
    with pytest.raises(PreconditionFailed):
        store.put(loc, b"three", if_match=first.etag)
    # THEN only the writes whose condition held landed
    assert (tmp_path / "commit.json").read_bytes() == b"two!"
    assert second.etag != first.etag
    assert (tmp_path / "commit.json").stat().st_mode & 0o777 == 0o600


def test_s3_stat_read_and_list(make_bucket: Any, s3_client: Any) -> None:
    # GIVEN objects in the emulator's S3
    bucket = make_bucket()
    s3_client.put_object(Bucket=bucket, Key="in/b.csv", Body=b"bbb")
    s3_client.put_object(Bucket=bucket, Key="in/a.csv", Body=b"a,b\n1,2\n")
    store = storage_for(parse(f"s3://{bucket}/in/a.csv"))
    # WHEN one is read and the prefix listed
    info = store.stat(parse(f"s3://{bucket}/in/a.csv"))
    with store.open_read(info) as handle:
        data = handle.read()
    listed = [(i.relative, i.size) for i in store.list(parse(f"s3://{bucket}/in/"))]
    # THEN the bytes, size and ETag come back, and the listing is in key order
    assert data == b"a,b\n1,2\n" and info.size == 8 and info.etag
    assert listed == [("a.csv", 8), ("b.csv", 3)]


def test_s3_reads_in_ranged_blocks_and_seeks(
    make_bucket: Any, s3_client: Any, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a 10,000-byte object and 1 KiB blocks
    bucket = make_bucket()
    body = bytes(range(256)) * 39 + b"0123456789ABCDEF"[:16]
    s3_client.put_object(Bucket=bucket, Key="big.bin", Body=body)
    monkeypatch.setattr(storage, "BLOCK", 1024)
    store = storage_for(parse(f"s3://{bucket}/big.bin"))
    info = store.stat(parse(f"s3://{bucket}/big.bin"))
    before = emulator.s3.stats().get("GET", 0)
    # WHEN it is read in small pieces, then its tail after a seek
    with store.open_read(info) as handle:
        pieces = []
        while chunk := handle.read(100):
            pieces.append(chunk)
        handle.seek(-16, 2)
        tail = handle.read()
    gets = emulator.s3.stats()["GET"] - before
    # THEN the bytes are exact and each GET fetched a block, not a piece
    assert b"".join(pieces) == body and tail == body[-16:]
    assert 10 <= gets <= 12


def test_s3_read_of_a_replaced_object_fails(make_bucket: Any, s3_client: Any) -> None:
    # GIVEN an object opened for reading
    bucket = make_bucket()
    s3_client.put_object(Bucket=bucket, Key="x.csv", Body=b"one")
    store = storage_for(parse(f"s3://{bucket}/x.csv"))
    info = store.stat(parse(f"s3://{bucket}/x.csv"))
    # WHEN another writer replaces it before the read
    s3_client.put_object(Bucket=bucket, Key="x.csv", Body=b"two")
    # THEN the read refuses to mix two versions (If-Match on the ETag)
    with pytest.raises(PreconditionFailed), store.open_read(info) as handle:
        handle.read()


def test_s3_read_of_a_versioned_object_keeps_its_version(make_bucket: Any, s3_client: Any) -> None:
    # GIVEN an object in a versioned bucket, opened, then overwritten
    bucket = make_bucket(versioned=True)
    s3_client.put_object(Bucket=bucket, Key="x.csv", Body=b"one")
    store = storage_for(parse(f"s3://{bucket}/x.csv"))
    info = store.stat(parse(f"s3://{bucket}/x.csv"))
    s3_client.put_object(Bucket=bucket, Key="x.csv", Body=b"two")
    # WHEN it is read
    with store.open_read(info) as handle:
        data = handle.read()
    # THEN the version that was opened is read
    assert info.version_id and data == b"one"


def test_s3_conditional_put_as_moto_honours_it(make_bucket: Any) -> None:
    # GIVEN an empty bucket
    bucket = make_bucket()
    store, loc = storage_for(parse(f"s3://{bucket}/c")), parse(f"s3://{bucket}/commit/0001")
    # WHEN a commit object is created only if absent, then replaced only if unchanged
    first = store.put(loc, b"a", if_none_match=True)
    with pytest.raises(PreconditionFailed):
        store.put(loc, b"b", if_none_match=True)
    second = store.put(loc, b"c", if_match=first.etag)
    with pytest.raises(PreconditionFailed):
        store.put(loc, b"d", if_match=first.etag)
    # THEN only the writes whose condition held landed
    with store.open_read(store.stat(loc)) as handle:
        assert handle.read() == b"c"
    assert second.etag != first.etag


@pytest.mark.parametrize(
    ("uri", "code"),
    [("s3://no-such-bucket-x/a.csv", "NoSuchKey"), ("s3://{b}/missing.csv", "NoSuchKey"),
     ("s3://{b}/denied/a.csv", "AccessDenied")],
)
def test_s3_errors_are_storage_errors(make_bucket: Any, emulator: Any, uri: str, code: str) -> None:
    # GIVEN a bucket whose denied/ prefix the role may not read
    bucket = make_bucket()
    emulator.s3.deny(bucket, "denied/")
    loc = parse(uri.format(b=bucket))
    # WHEN the object is looked at
    with pytest.raises(StorageError) as caught:
        storage_for(loc).stat(loc)
    # THEN the error names the object and S3's code, in one line
    assert caught.value.code == code
    assert str(caught.value).startswith(str(loc)) and "\n" not in str(caught.value)


def test_listing_a_missing_bucket_says_so(s3_endpoint: str) -> None:
    # GIVEN / WHEN a prefix of a bucket that does not exist is listed
    loc = parse("s3://no-such-bucket-y/prefix/")
    with pytest.raises(StorageError) as caught:
        list(storage_for(loc).list(loc))
    # THEN the code is NoSuchBucket (a HEAD could only say 404)
    assert caught.value.code == "NoSuchBucket"


def test_gateway_translates_status_only_errors_with_stubber() -> None:
    # GIVEN a stubbed client whose HEAD answers 403 and 404 without a body (as S3 does)
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")
    gateway = S3Gateway(client=client)
    with Stubber(client) as stub:
        stub.add_client_error("head_object", service_error_code="403", http_status_code=403)
        stub.add_client_error("head_object", service_error_code="404", http_status_code=404)
        stub.add_client_error("list_objects_v2", service_error_code="AccessDenied",
                              service_message="Access Denied", http_status_code=403)
        # WHEN each is called
        codes = []
        for call in (lambda: gateway.head("b", "k"), lambda: gateway.head("b", "k"),
                     lambda: list(gateway.list("b", "p/"))):
            with pytest.raises(StorageError) as caught:
                call()
            codes.append(caught.value.code)
    # THEN the status becomes S3's code
    assert codes == ["AccessDenied", "NoSuchKey", "AccessDenied"]


def test_input_identity(tmp_path: Path, make_bucket: Any, s3_client: Any) -> None:
    from batch.inputs.reader import open_input

    # GIVEN a local file, and the same bytes in S3
    path = tmp_path / "u.csv"
    path.write_bytes(b"username\nalice\n")
    bucket = make_bucket()
    s3_client.put_object(Bucket=bucket, Key="u.csv", Body=b"username\nalice\n")
    # WHEN their identities are taken, and again after the S3 object is rewritten
    local = input_identity(open_input(path))
    remote = input_identity(open_input(f"s3://{bucket}/u.csv"))
    s3_client.put_object(Bucket=bucket, Key="u.csv", Body=b"username\nbob\n")
    changed = input_identity(open_input(f"s3://{bucket}/u.csv"))
    # THEN a local file keeps its SHA-256 (older journals resume); S3's follows the object
    assert local == hashlib.sha256(b"username\nalice\n").hexdigest()
    assert remote.startswith("parts:") and changed != remote
