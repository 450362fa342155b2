"""Local files and S3 objects behind one small interface, the way httpx hides its transport.

    location = parse("s3://bucket/exports/users.parquet")   # or "data/users.csv"
    store = storage_for(location)                           # LocalStorage or S3Storage
    info = store.stat(location)                             # size and identity
    with store.open_read(info) as handle: ...               # a seekable binary stream
    for part in store.list(parse("s3://bucket/exports/")): ...

Callers ask *what* (read, stat, list, put), never *where*; boto3 lives in ``batch.store.s3`` only.

Reading S3: ``open_read`` returns a seekable stream that fetches ranged GETs of ``BLOCK``
bytes on demand (one block buffered), pinned to the object it was opened on (its VersionId in
a versioned bucket, else ``If-Match`` its ETag): memory stays at a block whatever the object's
size, no connection is held open for the hours a run may take, every block is its own
retryable request signed with fresh credentials, and an object replaced mid-run is an error,
not a silent mix of two files. The same stream serves Parquet, which seeks to its footer and
then reads one column chunk at a time.

Order: ``list`` yields objects in lexicographic order of their key (UTF-8 bytes, S3's own
listing order); a local folder is listed in the same order, so one dataset numbers its rows
the same on disk and in S3.

Writing (for the S3 report and checkpoint, next): ``put`` writes one whole object;
``if_none_match=True`` creates only (``If-None-Match: *``), ``if_match=ETAG`` replaces only
what was read; a lost race raises ``batch.store.s3.PreconditionFailed``. S3 objects cannot be
appended to, so a checkpoint on S3 is written as immutable segments plus a small commit
object created with ``if_none_match`` (the Delta Lake / Iceberg commit).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from batch.errors import StorageError

if TYPE_CHECKING:
    from batch.store.s3 import ObjectMeta, S3Gateway

BLOCK = 8 * 1024 * 1024  # bytes per ranged GET: ~1 request per 8 MiB, memory one block


@dataclass(frozen=True, slots=True)
class Location:
    """A local path, or an S3 bucket and key (a key ending in ``/`` is a prefix)."""

    text: str
    bucket: str = ""
    key: str = ""

    @property
    def is_s3(self) -> bool:
        return bool(self.bucket)

    @property
    def path(self) -> Path:
        return Path(self.text)

    @property
    def name(self) -> str:
        """The last component (``users.csv``), as a file name would be."""
        if self.is_s3:
            return self.key.rstrip("/").rpartition("/")[2] or self.bucket
        return self.path.name

    def __str__(self) -> str:
        return self.text


def is_s3(text: str) -> bool:
    return text[:5].lower() == "s3://"


def parse(text: str | os.PathLike[str]) -> Location:
    """``s3://bucket/key`` or a local path."""
    raw = os.fspath(text)
    if not is_s3(raw):
        return Location(raw)
    bucket, _, key = raw[5:].partition("/")
    if not bucket:
        raise StorageError("no bucket named: use s3://BUCKET/KEY", uri=raw, code="BadLocation")
    return Location(f"s3://{bucket}/{key}", bucket, key)


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One file or object: where, how big, and what identifies this version of it.

    ``relative`` is its name under the prefix it was listed from (``dt=1/part-0.parquet``);
    ``etag`` and ``version_id`` are S3's (empty for local files)."""

    location: Location
    size: int
    etag: str = ""
    version_id: str = ""
    relative: str = ""


#: What ``delete_many`` could not delete, and S3's (or the OS's) code why.
Refused = list[tuple[Location, str]]


class Storage(Protocol):
    """What the tool asks of a place that holds files."""

    def stat(self, location: Location) -> ObjectInfo: ...

    def open_read(self, info: ObjectInfo) -> BinaryIO:
        """A seekable binary stream of exactly that version of the object."""
        ...

    def list(self, prefix: Location) -> Iterator[ObjectInfo]:
        """Every object under ``prefix`` (recursively), in lexicographic key order."""
        ...

    def put(
        self,
        location: Location,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> ObjectInfo: ...

    def delete(self, location: Location) -> None:
        """Remove one file or object; nothing happens if it is already gone."""
        ...

    def delete_many(self, locations: Sequence[Location]) -> Refused:
        """Remove many (in one request per 1,000 in S3); those refused, with the code why."""
        ...

    def read(self, location: Location) -> tuple[ObjectInfo, bytes]:
        """A whole (small) object and what identifies the version read."""
        ...

    def put_file(self, location: Location, path: Path) -> None:
        """A local file as one whole object, streamed (a report of any size)."""
        ...


# -- local -----------------------------------------------------------------------------------


class LocalStorage:
    """Files on this machine; written owner-only and atomically (``batch.store.files``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def stat(self, location: Location) -> ObjectInfo:
        try:
            st = location.path.stat()
        except FileNotFoundError:
            raise StorageError("no such file", uri=str(location), code="NoSuchKey") from None
        except OSError as exc:
            what = str(exc.strerror or exc)
            raise StorageError(what, uri=str(location), code="OSError") from None
        if not location.path.is_file():
            raise StorageError("not a file", uri=str(location), code="NotAFile")
        return ObjectInfo(location, st.st_size, etag=_local_etag(st))

    def open_read(self, info: ObjectInfo) -> BinaryIO:
        try:
            return open(info.location.path, "rb")
        except OSError as exc:
            raise StorageError(exc.strerror or str(exc), uri=str(info.location)) from None

    def list(self, prefix: Location) -> Iterator[ObjectInfo]:
        base = prefix.path
        if not base.is_dir():
            raise StorageError("no such folder", uri=str(prefix), code="NoSuchKey")
        found: list[tuple[bytes, Path]] = []
        for folder, _dirs, files in os.walk(base):
            for name in files:
                path = Path(folder) / name
                rel = path.relative_to(base).as_posix()
                found.append((rel.encode("utf-8", "surrogateescape"), path))
        for rel_bytes, path in sorted(found):
            st = path.stat()
            yield ObjectInfo(Location(str(path)), st.st_size, etag=_local_etag(st),
                             relative=rel_bytes.decode("utf-8", "surrogateescape"))

    def put(
        self,
        location: Location,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> ObjectInfo:
        from batch.store.files import atomic_write
        from batch.store.s3 import PreconditionFailed

        path = location.path
        # One process at a time per folder is the local contract: the lock makes the check
        # and the rename one step for the threads of this process.
        with self._lock:
            exists = path.exists()
            if if_none_match and exists:
                raise PreconditionFailed("exists", uri=str(location), code="PreconditionFailed")
            if if_match is not None and (not exists or _local_etag(path.stat()) != if_match):
                raise PreconditionFailed("changed", uri=str(location), code="PreconditionFailed")
            with atomic_write(path, "wb") as handle:
                handle.write(data)
            return ObjectInfo(location, len(data), etag=_local_etag(path.stat()))

    def delete(self, location: Location) -> None:
        location.path.unlink(missing_ok=True)

    def delete_many(self, locations: Sequence[Location]) -> Refused:
        refused: list[tuple[Location, str]] = []
        for location in locations:
            try:
                location.path.unlink(missing_ok=True)
            except OSError as exc:
                refused.append((location, errno_name(exc)))
        return refused

    def read(self, location: Location) -> tuple[ObjectInfo, bytes]:
        info = self.stat(location)
        with self.open_read(info) as handle:
            return info, handle.read()

    def put_file(self, location: Location, path: Path) -> None:
        from batch.store.files import atomic_write

        with open(path, "rb") as source, atomic_write(location.path, "wb") as out:
            while block := source.read(1 << 20):
                out.write(block)


def errno_name(exc: OSError) -> str:
    import errno

    return errno.errorcode.get(exc.errno or 0, "OSError")


def _local_etag(st: os.stat_result) -> str:
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


# -- S3 --------------------------------------------------------------------------------------


class S3Storage:
    """Objects in S3, through the ``batch.store.s3`` gateway."""

    def __init__(self, gateway: S3Gateway) -> None:
        self.gateway = gateway

    def stat(self, location: Location) -> ObjectInfo:
        return _info(self.gateway.head(location.bucket, location.key))

    def open_read(self, info: ObjectInfo) -> BinaryIO:
        from batch.store.s3 import ObjectMeta

        meta = ObjectMeta(info.location.bucket, info.location.key, info.size, info.etag,
                          info.version_id)
        return io.BufferedReader(_RangeReader(self.gateway, meta), buffer_size=BLOCK)

    def list(self, prefix: Location) -> Iterator[ObjectInfo]:
        for meta in self.gateway.list(prefix.bucket, prefix.key):
            yield _info(meta, relative=meta.key[len(prefix.key) :])

    def put(
        self,
        location: Location,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> ObjectInfo:
        meta = self.gateway.put(location.bucket, location.key, data,
                                if_none_match=if_none_match, if_match=if_match)
        return _info(meta)

    def delete(self, location: Location) -> None:
        self.gateway.delete(location.bucket, location.key)

    def delete_many(self, locations: Sequence[Location]) -> Refused:
        by_bucket: dict[str, dict[str, Location]] = {}
        for location in locations:
            by_bucket.setdefault(location.bucket, {})[location.key] = location
        refused: list[tuple[Location, str]] = []
        for bucket, keyed in by_bucket.items():
            for key, code in self.gateway.delete_objects(bucket, list(keyed)):
                refused.append((keyed.get(key) or Location(f"s3://{bucket}/{key}", bucket, key),
                                code))
        return refused

    def read(self, location: Location) -> tuple[ObjectInfo, bytes]:
        # Pinned to the ETag the HEAD saw: a version replaced in between is an error, never a
        # mix (the lease's takeover relies on knowing exactly which version it read).
        info = self.stat(location)
        with self.open_read(info) as handle:
            return info, handle.read()

    def put_file(self, location: Location, path: Path) -> None:
        self.gateway.upload_file(location.bucket, location.key, str(path))


def _info(meta: ObjectMeta, *, relative: str = "") -> ObjectInfo:
    location = Location(f"s3://{meta.bucket}/{meta.key}", meta.bucket, meta.key)
    return ObjectInfo(location, meta.size, meta.etag, meta.version_id, relative)


class _RangeReader(io.RawIOBase):
    """A seekable raw stream over ranged GETs of one pinned object version."""

    def __init__(self, gateway: S3Gateway, meta: ObjectMeta) -> None:
        self._gateway = gateway
        self._meta = meta
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._meta.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        end = min(self._pos + len(buffer), self._meta.size)
        if end <= self._pos:
            return 0
        data = self._gateway.read_range(self._meta, self._pos, end)
        n = len(data)
        buffer[:n] = data
        self._pos += n
        return n


# -- choosing one ----------------------------------------------------------------------------

_LOCAL = LocalStorage()
_S3: dict[str | None, S3Storage] = {}
_S3_LOCK = threading.Lock()


def reset_clients() -> None:
    """Forget the S3 clients made so far (after the environment's endpoint changed)."""
    with _S3_LOCK:
        _S3.clear()


def storage_for(location: Location, *, profile: str | None = None) -> Storage:
    """The storage that holds ``location``: one S3 client per profile, made on first use."""
    if not location.is_s3:
        return _LOCAL
    with _S3_LOCK:
        store = _S3.get(profile)
        if store is None:
            from batch.store.s3 import S3Gateway

            store = _S3[profile] = S3Storage(S3Gateway(profile=profile))
        return store


# -- identity --------------------------------------------------------------------------------


class HasParts(Protocol):
    @property
    def path(self) -> Path: ...

    @property
    def parts(self) -> tuple[ObjectInfo, ...]: ...

    @property
    def dataset(self) -> bool: ...


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def input_identity(source: HasParts) -> str:
    """What a resume checks to know the input is the same one.

    A single local file: the SHA-256 of its bytes (as the journal has always recorded, so an
    older journal still resumes). An S3 object or a dataset: ``sha256:`` of every part's
    relative name, size, ETag and VersionId (local parts: their SHA-256 instead of the ETag);
    S3 gives the ETag without a read, so a 50 GB dataset is identified in one listing."""
    parts = source.parts
    if not parts:  # a source made by hand around a local file
        return file_sha256(source.path)
    if not source.dataset and len(parts) == 1 and not parts[0].location.is_s3:
        return file_sha256(parts[0].location.path)
    return parts_identity(parts)


def parts_identity(parts: Sequence[ObjectInfo]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        tag = part.etag if part.location.is_s3 else file_sha256(part.location.path)
        record = [part.relative or part.location.name, part.size, tag, part.version_id]
        digest.update(json.dumps(record).encode() + b"\n")
    return "parts:" + digest.hexdigest()
