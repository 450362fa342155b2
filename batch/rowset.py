"""A set of row numbers in one bit a row: what a resume knows is done, in flat memory.

A resume needs to know, for every input row, whether it is finished (carried over) or has
been reported in this run. A ``set`` of ints costs about 60 bytes a row and a dict of results
about 860; one bit a row holds 2 M rows in 250 kB and 40 M in 5 MB. Rows are dense (1..N), so a
bitmap is as small as any index and answers ``row in done`` in constant time.

``add`` and ``discard`` are not atomic as a whole: callers that share a set between threads
hold their own lock around them (the job does); ``in`` may run beside them under the GIL.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class RowSet:
    """Row numbers (``>= 0``) in a growable bitmap, with a count; with ``limit``, never a row
    past it (a ``ValueError``): a row number read from a file must not make it allocate
    gigabytes."""

    __slots__ = ("_bits", "_count", "_limit")

    def __init__(self, size: int = 0, *, limit: int | None = None) -> None:
        # Sized up front when the row count is known, so no add has to grow it.
        self._bits = bytearray((size >> 3) + 1)
        self._count = 0
        self._limit = limit

    @classmethod
    def from_bits(cls, bits: bytes, count: int) -> RowSet:
        """A set from a little-endian bitmap (``np.packbits(..., bitorder="little")``) and
        the number of bits set: built in one pass, for millions of rows."""
        made = cls(0)
        made._bits = bytearray(bits) + b"\0"
        made._count = count
        return made

    def _grow(self, index: int) -> None:
        if self._limit is not None and index > self._limit >> 3:
            raise ValueError(f"row {index << 3} or more is past this set's bound {self._limit}")
        self._bits.extend(bytes(max(index + 1, 2 * len(self._bits)) - len(self._bits)))

    def add(self, row: int) -> None:
        if self._limit is not None and row > self._limit:
            raise ValueError(f"row {row} is past this set's bound {self._limit}")
        index, mask = row >> 3, 1 << (row & 7)
        if index >= len(self._bits):
            self._grow(index)
        if not self._bits[index] & mask:
            self._bits[index] |= mask
            self._count += 1

    def discard(self, row: int) -> None:
        index, mask = row >> 3, 1 << (row & 7)
        if index < len(self._bits) and self._bits[index] & mask:
            self._bits[index] &= ~mask & 0xFF
            self._count -= 1

    def __contains__(self, row: object) -> bool:
        if not isinstance(row, int) or row < 0:
            return False
        index = row >> 3
        return index < len(self._bits) and bool(self._bits[index] >> (row & 7) & 1)

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        """The bitmap's size: an eighth of a byte a row."""
        return len(self._bits)

    def to_bytes(self) -> bytes:
        """The bitmap (``from_bits`` reads it back)."""
        return bytes(self._bits)

    def mask(self, size: int) -> np.ndarray:
        """A boolean array over rows ``0..size``: True where the row is in the set."""
        raw = np.frombuffer(bytes(self._bits[: (size >> 3) + 1]), np.uint8)
        bits = np.unpackbits(raw, bitorder="little").astype(bool)
        out = np.zeros(size + 1, dtype=bool)
        n = min(size + 1, bits.size)
        out[:n] = bits[:n]
        return out

    def missing(
        self, last: int, *, chunk: int = 1 << 20, besides: RowSet | None = None
    ) -> Iterator[np.ndarray]:
        """The rows ``1..last`` not in the set (nor in ``besides``), ascending, as int64 arrays
        of at most ``chunk`` rows: the bulk pass that reports rows a stopped run never
        reached (``besides``: another shard's rows, which are not this run's to report)."""
        chunk = max(8, chunk - chunk % 8)  # whole bytes per chunk
        for low in range(0, last + 1, chunk):
            high = min(low + chunk, last + 1)
            size = (high - low + 7) >> 3
            raw = np.zeros(size, dtype=np.uint8)  # rows past a bitmap: absent
            for bitmap in (self._bits, besides._bits if besides is not None else None):
                if bitmap is not None:
                    part = np.frombuffer(bytes(bitmap[low >> 3 : (high + 7) >> 3]), np.uint8)
                    raw[: part.size] |= part
            bits = np.unpackbits(raw, bitorder="little")
            rows = np.flatnonzero(bits[: high - low] == 0).astype(np.int64) + low
            rows = rows[rows >= 1]
            if rows.size:
                yield rows
