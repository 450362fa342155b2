"""The applied state of an incremental run (``--incremental``): per user key, a hash of the
desired state the run made true, kept beside the report (``REPORT.state.parquet``).

Why Parquet and numpy, not DuckDB: the diff is one equi-join on a 64-bit key hash, which numpy
does with ``searchsorted`` on sorted arrays; pyarrow (already a dependency) writes the state
sorted by key hash in row groups whose statistics let a reader take one key range at a time.
Both the input's side and the state's are split into the same key-hash ranges (the top bits of
the hash, ~1 M rows a range), so memory holds one range at a time: flat at 10 M rows, with no
new dependency to vet and ship.

Columns: ``key_hash`` (uint64, ``scan.key_hash`` of the key), ``state`` (uint64, the hash of the
desired state; 0: nothing known to be applied, so the next run sends the row), ``key`` (the key
itself, for the leavers of ``--disable-missing``). The schema's metadata holds the version and
the settings that shape the hashes (``state_settings``): a state of other settings is not used.

Written only at the end of a finished run, atomically (a temporary renamed over the file): a
killed run leaves the previous state, and its journal resumes as for any run.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from batch.models import UserUpdate
from batch.rowset import RowSet
from batch.store.files import atomic_path, private_dir

STATE_VERSION = 1
RANGE_ROWS = 1 << 18  # rows of one key-hash range: what the diff holds at once
_CHUNK = 1 << 14  # rows the spill buffers before it writes them to their ranges
_SCHEMA = pa.schema([("key_hash", pa.uint64()), ("state", pa.uint64()), ("key", pa.string())])
_SPILL = pa.schema([("row", pa.int64()), ("key_hash", pa.uint64()), ("desired", pa.uint64()),
                    ("key", pa.string())])


def desired_hash(update: UserUpdate, sync: Sequence[tuple[str, str]] = ()) -> int:
    """The desired state a planned row makes true, as a non-zero 64-bit number: its attributes
    to set and delete (order-free) and the sync columns (``enabled``, ``groups``) it carries."""
    parts = {"set": sorted(update.attributes), "delete": sorted(update.deletes),
             "sync": sorted(sync)}
    digest = hashlib.blake2b(json.dumps(parts, separators=(",", ":")).encode("utf-8"),
                             digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1


def state_settings(settings: Mapping[str, Any]) -> str:
    """The fingerprint of what shapes the hashes: pool, key, mapping (a state made under other
    settings describes other desired states)."""
    return hashlib.sha256(json.dumps(dict(settings), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class StateInfo:
    path: Path
    version: int
    settings: str
    rows: int


def read_state_info(path: Path) -> StateInfo | None:
    """The state's header, or None when there is none (or it is unreadable: a full run)."""
    if not path.is_file():
        return None
    try:
        meta = pq.read_metadata(path)
        raw = (meta.metadata or {}).get(b"cognito-batch", b"{}")
        record = json.loads(raw)
        return StateInfo(path, int(record["version"]), str(record["settings"]), meta.num_rows)
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException):
        return None


def _bits(rows: int) -> int:
    """Top bits of the key hash that name a range: ranges of ~``RANGE_ROWS`` rows."""
    return max(0, math.ceil(math.log2(max(1, rows) / RANGE_ROWS)))


def _bounds(bucket: int, bits: int) -> tuple[int, int]:
    if bits == 0:
        return 0, (1 << 64) - 1
    shift = 64 - bits
    return bucket << shift, ((bucket + 1) << shift) - 1


@dataclass
class Spill:
    """Today's input as (row, key hash, desired hash, key), written to one file per key-hash
    range in a private temporary folder: what the diff and the new state read back."""

    folder: Path
    rows: int  # the input's rows (sizes the ranges)
    bits: int = field(init=False)
    _buf: list[tuple[int, int, int, str]] = field(default_factory=list, init=False)
    _writers: list[Any] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        private_dir(self.folder)
        self.bits = _bits(self.rows)
        for b in range(1 << self.bits):
            self._writers.append(ipc.new_file(str(self._path(b)), _SPILL))

    def _path(self, bucket: int) -> Path:
        return self.folder / f"range-{bucket:05d}.arrow"

    @property
    def buckets(self) -> int:
        return 1 << self.bits

    def add(self, row: int, key_hash: int, desired: int, key: str) -> None:
        self._buf.append((row, key_hash, desired, key))
        if len(self._buf) >= _CHUNK:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        rows, hashes, desired, keys = zip(*self._buf, strict=True)
        self._buf.clear()
        batch = pa.record_batch([pa.array(rows, pa.int64()), pa.array(hashes, pa.uint64()),
                                 pa.array(desired, pa.uint64()), pa.array(keys, pa.string())],
                                schema=_SPILL)
        if self.bits == 0:
            self._writers[0].write_batch(batch)
            return
        top = np.asarray(hashes, dtype=np.uint64) >> np.uint64(64 - self.bits)
        order = np.argsort(top, kind="stable")
        cuts = np.searchsorted(top[order], np.arange(1, self.buckets, dtype=np.uint64))
        for b, part in enumerate(np.split(order, cuts)):
            if part.size:
                self._writers[b].write_batch(batch.take(pa.array(part)))

    def close(self) -> None:
        self._flush()
        for writer in self._writers:
            writer.close()
        self._writers = []

    def bucket(self, b: int, *, keys: bool = False) -> pa.Table:
        with ipc.open_file(str(self._path(b))) as reader:
            table = reader.read_all()
        return table if keys else table.drop_columns(["key"])

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def open_spill(beside: Path, rows: int) -> Spill:
    private_dir(beside)
    return Spill(Path(tempfile.mkdtemp(prefix=".state-spill-", dir=beside)), rows)


def _old_range(state: Any, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """The previous state's (key hashes, states) with a key hash in ``lo..hi``, sorted: only
    the row groups whose statistics overlap the range are read (``state``: a ParquetFile)."""
    keys, states = [np.empty(0, np.uint64)], [np.empty(0, np.uint64)]
    if state is not None:
        meta = state.metadata
        for group in range(meta.num_row_groups):
            stats = meta.row_group(group).column(0).statistics
            if stats is not None and stats.has_min_max and (stats.max < lo or stats.min > hi):
                continue
            table = state.read_row_group(group, columns=["key_hash", "state"])
            k = table.column(0).to_numpy().astype(np.uint64, copy=False)
            inside = (k >= np.uint64(lo)) & (k <= np.uint64(hi))
            keys.append(k[inside])
            states.append(table.column(1).to_numpy().astype(np.uint64, copy=False)[inside])
    return np.concatenate(keys), np.concatenate(states)


def _lookup(old_keys: np.ndarray, old_states: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """The previous state of each key (0 where the state has none)."""
    if old_keys.size == 0:
        return np.zeros(keys.size, np.uint64)
    at = np.minimum(np.searchsorted(old_keys, keys), old_keys.size - 1)
    return np.where(old_keys[at] == keys, old_states[at], np.uint64(0))


def rowset_of(rows: np.ndarray, size: int) -> RowSet:
    """A ``RowSet`` of ``rows`` built in one vectorised pass (no Python loop a row)."""
    marks = np.zeros(size + 1, dtype=bool)
    marks[rows] = True
    return RowSet.from_bits(np.packbits(marks, bitorder="little").tobytes(), int(rows.size))


@dataclass(frozen=True, slots=True)
class Diff:
    unchanged: RowSet  # rows whose desired state the previous run already made true
    count: int
    changed: int


def diff(spill: Spill, state: Path | None, duplicated: np.ndarray, last_row: int) -> Diff:
    """Rows of today's input whose desired state equals the one the state holds. A key that
    appears more than once (``duplicated``, sorted) is never unchanged: its rows go through the
    duplicate rule as in any run."""
    marks = np.zeros(last_row + 1, dtype=bool)  # one byte a row: 10 MB at 10 M rows
    total = 0
    old_file = pq.ParquetFile(state) if state is not None else None
    for b in range(spill.buckets):
        table = spill.bucket(b)
        total += table.num_rows
        if not table.num_rows:
            continue
        rows = table.column("row").to_numpy()
        keys = table.column("key_hash").to_numpy().astype(np.uint64, copy=False)
        wanted = table.column("desired").to_numpy().astype(np.uint64, copy=False)
        del table
        old = _lookup(*_old_range(old_file, *_bounds(b, spill.bits)), keys)
        same = (old == wanted) & (wanted != 0)
        if duplicated.size:
            same &= ~np.isin(keys, duplicated)
        marks[rows[same]] = True
    count = int(np.count_nonzero(marks))
    bits = np.packbits(marks, bitorder="little").tobytes()
    del marks
    return Diff(RowSet.from_bits(bits, count), count, total - count)


def write_state(
    spill: Spill,
    path: Path,
    *,
    settings: str,
    applied: Callable[[np.ndarray], np.ndarray],
) -> int:
    """The new state, atomically: each of today's keys with its desired hash where ``applied``
    (a mask over rows: the row's last result is updated or unchanged), else 0. A key in several
    rows keeps its last row's. Returns the rows written."""
    meta = {b"cognito-batch": json.dumps({"version": STATE_VERSION,
                                          "settings": settings}).encode()}
    written = 0
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(str(tmp), _SCHEMA.with_metadata(meta),
                              use_dictionary=False) as writer:  # unique keys: no dictionary
            for b in range(spill.buckets):
                table = spill.bucket(b, keys=True)
                if not table.num_rows:
                    continue
                rows = table.column("row").to_numpy()
                keys = table.column("key_hash").to_numpy().astype(np.uint64, copy=False)
                wanted = table.column("desired").to_numpy().astype(np.uint64, copy=False)
                order = np.lexsort((rows, keys))  # by key, then row: the last row of a key last
                keys, rows, wanted = keys[order], rows[order], wanted[order]
                last = np.ones(keys.size, dtype=bool)
                last[:-1] = keys[1:] != keys[:-1]
                state = np.where(applied(rows) & (wanted != 0), wanted, np.uint64(0))
                pick = order[last]
                out = pa.table({"key_hash": pa.array(keys[last], pa.uint64()),
                                "state": pa.array(state[last], pa.uint64()),
                                "key": table.column("key").take(pa.array(pick))},
                               schema=_SCHEMA)
                writer.write_table(out, row_group_size=RANGE_ROWS)
                written += out.num_rows
        if written == 0:  # a file with a schema and no rows
            pq.write_table(pa.table({n: pa.array([], t) for n, t in
                                     zip(_SCHEMA.names, _SCHEMA.types, strict=True)},
                                    schema=_SCHEMA.with_metadata(meta)), str(tmp))
    return written


def leavers_from_state(state: Path, today: np.ndarray) -> Iterator[str]:
    """The keys the state holds that today's input lacks (``today``: the sorted key hashes of
    today's input, ``KeyScan.hashes``): with ``--disable-missing``, the leavers, found without
    listing the pool. Streams the state a row group at a time."""
    handle = pq.ParquetFile(state)
    for group in range(handle.num_row_groups):
        table = handle.read_row_group(group, columns=["key_hash", "key"])
        keys = table.column(0).to_numpy().astype(np.uint64, copy=False)
        if today.size:
            at = np.minimum(np.searchsorted(today, keys), today.size - 1)
            gone = today[at] != keys
        else:
            gone = np.ones(keys.size, dtype=bool)
        yield from table.column(1).filter(pa.array(gone)).to_pylist()
