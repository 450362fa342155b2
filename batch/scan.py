"""A cheap first pass over the input's key column: the row count and duplicate keys.

Duplicate rule: by default every row of a key that appears more than once is ``invalid``
(two different values for one user is an input error, and which should win is not ours to
guess). With ``on_duplicate = "last"`` the last row wins and earlier copies end ``skipped``
with the code ``Superseded`` (never retried). Either way, two writes to one user never run at
once: the runner's per-user gate serialises them.

Memory: one 8-byte hash per row (a 1M-row file needs 8 MB, not a set of strings), and a small
map for the keys that are duplicated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np


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


def scan_column(values: Iterable[str]) -> KeyScan:
    """Scan the key column's values in row order (row 1 first)."""
    rows = 0
    hashes: list[np.ndarray] = []
    positions: list[np.ndarray] = []
    chunk_h: list[int] = []
    chunk_r: list[int] = []
    for value in values:
        rows += 1
        if value == "":
            continue
        chunk_h.append(key_hash(value))
        chunk_r.append(rows)
        if len(chunk_h) >= 65536:
            hashes.append(np.array(chunk_h, dtype=np.uint64))
            positions.append(np.array(chunk_r, dtype=np.int64))
            chunk_h, chunk_r = [], []
    hashes.append(np.array(chunk_h, dtype=np.uint64))
    positions.append(np.array(chunk_r, dtype=np.int64))
    all_h = np.concatenate(hashes)
    all_r = np.concatenate(positions)
    if all_h.size == 0:
        return KeyScan(rows)
    order = np.argsort(all_h, kind="stable")
    sorted_h = all_h[order]
    same_as_next = sorted_h[1:] == sorted_h[:-1]
    if not same_as_next.any():
        return KeyScan(rows, hashes=sorted_h)
    dup_values, counts = np.unique(sorted_h[np.concatenate([same_as_next, [False]])
                                            | np.concatenate([[False], same_as_next])],
                                   return_counts=True)  # fmt: skip
    dup_set = set(int(h) for h in dup_values)
    last_row: dict[int, int] = {}
    for h, r in zip(all_h.tolist(), all_r.tolist(), strict=True):
        if h in dup_set:
            last_row[h] = r
    dup_counts = {int(h): int(c) for h, c in zip(dup_values, counts, strict=True)}
    return KeyScan(rows, last_row, dup_counts, sorted_h)
