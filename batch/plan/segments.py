"""Segments of the pool to page side by side: username prefixes drawn from a sample of keys.

ListUsers pages follow one another (each needs the last one's token), so at 1 s an answer the
snapshot reads 60 users a second however high the UserList quota: far behind writes at 150/s,
and every row it has not reached is read on its own (AdminGetUser, ~100/s), which then caps
the writes. A filter ``username ^= "p"`` pages only the users whose name starts with ``p``;
disjoint prefixes page side by side, up to the UserList rate.

``prefixes`` splits the sample (``inputs.sample``) into prefix groups of about the same number
of keys, until there are ``count``. The cover need not be complete: a key under no prefix (one
the sample missed, or one the pool holds in another case) is not in the snapshot, and
``Overlapped`` reads it on its own. So the prefixes shape only the speed, never what is read.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Sequence

#: The most segments a snapshot is paged in (each costs a call at least).
MAX_SEGMENTS = 256


def _common(keys: Sequence[str]) -> str:
    """The longest common prefix of sorted ``keys`` (first and last suffice)."""
    return os.path.commonprefix([keys[0], keys[-1]]) if keys else ""


def prefixes(sample: Sequence[str], count: int) -> list[str]:
    """About ``count`` disjoint prefixes over ``sample``, sorted (the last split may pass
    ``count``: a group splits into every next character its keys have); [] when fewer than 2
    would do (one prefix pages one segment: no faster than the whole pool)."""
    keys = sorted({k for k in sample if k})
    if count < 2 or len(keys) < 2:
        return []
    # A max-heap of (-sample keys, prefix, keys): split the largest group by the character
    # after its keys' common prefix, until ``count`` groups or none splits.
    heap: list[tuple[int, str, list[str]]] = [(-len(keys), "", keys)]
    done: list[str] = []
    while heap and len(heap) + len(done) < count:
        _, prefix, group = heapq.heappop(heap)
        common = _common(group)
        children: dict[str, list[str]] = {}
        for key in group:
            if len(key) > len(common):  # a key equal to ``common`` falls under no child
                children.setdefault(common + key[len(common)], []).append(key)
        if len(children) < 2:
            done.append(common if children else prefix)  # cannot split further
            continue
        for child, members in children.items():
            heapq.heappush(heap, (-len(members), child, members))
    out = sorted({p for p in [*done, *(p for _, p, _ in heap)] if p})
    return out if len(out) >= 2 else []


def filter_for(prefix: str) -> str:
    """The ListUsers filter of one segment (quotes and backslashes escaped)."""
    escaped = prefix.replace("\\", "\\\\").replace('"', '\\"')
    return f'username ^= "{escaped}"'
