"""A bounded, evenly spread sample of the input's keys, taken during the key scan.

The snapshot pages the pool in segments (``plan.segments``: ``username ^= "prefix"``) so that
its pages are read side by side instead of one after another; the prefixes come from this
sample. Systematic, not random: every ``stride``-th key, the stride doubling (and every other
kept key dropped) whenever the sample doubles its bound, so a row costs a counter step, and
the sample spans the whole file whatever its length. Only the first pass samples (the scan's
second pass, for duplicates, reads the same keys again).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


class KeySample:
    """Up to ``2 * size`` keys spread evenly over the input, in input order."""

    def __init__(self, size: int = 2048) -> None:
        self.size = max(1, size)
        self.keys: list[str] = []
        self._passes = 0

    def watch(self, values: Iterable[str]) -> Iterator[str]:
        """``values`` unchanged; on the first pass, every ``stride``-th non-empty key kept."""
        first = self._passes == 0
        self._passes += 1
        if not first:
            yield from values
            return
        keys, stride, n = self.keys, 1, 0
        for value in values:
            n += 1
            if n % stride == 0 and value:
                keys.append(value)
                if len(keys) >= 2 * self.size:
                    del keys[::2]  # the odd multiples of the stride go; the even ones stay
                    stride *= 2
            yield value
