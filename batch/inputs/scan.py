"""A cheap first pass over the input's key column: the row count and duplicate keys.

Duplicate rule: by default every row of a key that appears more than once is ``invalid``
(two different values for one user is an input error, and which should win is not ours to
guess). With ``on_duplicate = "last"`` the last row wins and earlier copies end ``skipped``
with the code ``Superseded`` (never retried). Either way, two writes to one user never run at
once: the runner's per-user gate serialises them.

Memory: one 8-byte hash per row (a 1M-row file needs 8 MB, not a set of strings), sorted in
place, and a small map for the keys that are duplicated.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from batch.rowset import RowSet


def key_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little")


@dataclass(frozen=True, slots=True)
class KeyScan:
    """What the first pass learned."""

    rows: int
    last_row: dict[int, int] = field(default_factory=dict)  # duplicated key hash -> last row
    counts: dict[int, int] = field(default_factory=dict)  # duplicated key hash -> copies
    hashes: np.ndarray = field(
        default_factory=lambda: np.empty(0, dtype=np.uint64)
    )  # every key's hash, sorted: membership for the snapshot
    #: Rows of the input that are not this run's (another shard's); None: every row is.
    foreign: RowSet | None = None
    input_rows: int = -1  # the input's last data row; -1: ``rows``

    @property
    def last_input_row(self) -> int:
        return self.rows if self.input_rows < 0 else self.input_rows

    def __contains__(self, key: str) -> bool:
        h = np.uint64(key_hash(key))
        i = int(np.searchsorted(self.hashes, h))
        return i < self.hashes.size and self.hashes[i] == h

    def duplicate(self, key: str) -> tuple[int, int] | None:
        """(copies, last row) when ``key`` appears more than once, else None."""
        if not self.counts:
            return None
        h = key_hash(key)
        if h not in self.counts:
            return None
        return self.counts[h], self.last_row[h]


def scan_column(values: Iterable[str] | Callable[[], Iterable[str]]) -> KeyScan:
    """Scan the key column's values in row order (row 1 first).

    ``values`` is an iterable that can be iterated twice, or a function returning a fresh
    one: a second pass, only when there are duplicates, finds their last rows. Peak memory is
    about 9 bytes a row (the hashes, sorted in place, and one comparison mask).
    """
    source = values if callable(values) else (lambda: values)
    hashes = array("Q")
    rows = 0
    for value in source():
        rows += 1
        if value != "":
            hashes.append(key_hash(value))
    ordered = np.frombuffer(hashes, dtype=np.uint64) if hashes else np.empty(0, np.uint64)
    ordered.sort()  # in place, on the array's own buffer
    if ordered.size < 2:
        return KeyScan(rows, hashes=ordered)
    same = ordered[1:] == ordered[:-1]
    if not same.any():
        return KeyScan(rows, hashes=ordered)
    dup_values, counts = np.unique(ordered[1:][same], return_counts=True)
    # np.unique over the second of each equal pair counts copies - 1.
    dup_counts = {int(h): int(c) + 1 for h, c in zip(dup_values, counts, strict=True)}
    del same
    last_row: dict[int, int] = {}
    for row, value in enumerate(source(), start=1):
        if value != "":
            h = key_hash(value)
            if h in dup_counts:
                last_row[h] = row
    return KeyScan(rows, last_row, dup_counts, ordered)
