"""Write-ahead marks: before a row goes to a worker, the journal says it may have been sent.

After a ``kill -9`` (or a lost container) the journal holds the rows that finished; the rows
that were in flight have no line. Writing them again is not free (each repeated email change
sends another verification message, each call runs the pool's Lambda triggers again), so a
resume reads their users first and writes only what does not hold yet (issue 20 item 6). It
must know which rows may have been sent: the journal's mark ``>ROW`` (``journal.mark_line``),
written before any row above the previous mark is handed out. On a resume, an unfinished row
at or under the highest mark is in doubt; a row above it was never sent and costs no read.

Marks run ``step`` rows ahead and are raised when the feed passes half of that lead, so they
cost one journal line per ``step / 2`` rows. Where the journal's copy that survives a lost
machine is elsewhere (an S3 report's segments), a row may go out only once a mark covering it
is there: ``Durable.through`` (the checkpoint) puts the journal's lines up to the mark first.
The timed segment uploads mostly carry the next mark before the feed reaches it, because
the lead is one upload interval at the planned rate; when not, the feed puts it first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, TypeVar

from batch.models import UserUpdate
from batch.record.journal import Journal

#: The lead of a local journal's marks: its lines are the OS's when written (kill -9 keeps
#: them), so a short lead costs nothing and keeps a resume's reads to what was in flight.
LOCAL_STEP = 32
#: The most rows a mark runs ahead when it must first reach S3: what a resume may read in vain.
MAX_STEP = 4096

T = TypeVar("T")


class Durable(Protocol):
    """Where the journal must be copied before its marks count (an S3 report's checkpoint)."""

    def through(self, offset: int) -> str:
        """Return once the journal's first ``offset`` bytes are there: '', or why they cannot
        be (the run stops: it must not send rows its surviving record does not cover)."""


def step_for(rate: float, *, lead_seconds: float) -> int:
    """How far ahead marks run: ``LOCAL_STEP``, or for a copied journal the rows the planned
    ``rate`` sends in ``lead_seconds`` (the upload interval), within bounds: a new mark is
    written half of that ahead of the feed, so the next timed upload mostly carries it."""
    if lead_seconds <= 0:
        return LOCAL_STEP
    if not math.isfinite(rate) or rate <= 0:  # no ceiling planned: the most it may be
        return MAX_STEP
    return max(LOCAL_STEP, min(MAX_STEP, int(rate * lead_seconds)))


class Handout:
    """Wraps a feed: marks the journal before a row above the last mark is yielded."""

    def __init__(
        self,
        journal: Journal,
        *,
        step: int,
        durable: Durable | None = None,
        start: int = 0,
        stop: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.journal, self.step, self.durable, self.stop = journal, max(1, step), durable, stop
        self.mark = start  # the highest mark written (an earlier attempt's counts: none lower)
        self.safe = start  # the highest mark that counts (an earlier one is in S3 already)
        self._pending: tuple[int, int] | None = None  # (mark, journal bytes) not yet copied
        self.marks = 0

    def feed(self, items: Iterable[T]) -> Iterator[T]:
        """``items``, each update once a mark covers its row; the feed ends (and the run
        stops, its other rows reported ``skipped``) if no mark can be made to count."""
        for item in items:
            if isinstance(item, UserUpdate):  # a result (invalid, unchanged) is never sent
                why = self._cover(item.row)
                if why:
                    self.stop(why)
                    return
            yield item

    def _cover(self, row: int) -> str:
        if row > self.mark - self.step // 2:
            self.mark = row + self.step  # > the last mark: row passed half of its lead
            offset = self.journal.mark(self.mark)
            self.marks += 1
            if self.durable is None:
                self.safe = self.mark
            else:
                self._pending = (self.mark, offset)
        if row > self.safe and self._pending is not None:
            mark, offset = self._pending
            assert self.durable is not None
            why = self.durable.through(offset)
            if why:
                return why
            self.safe, self._pending = mark, None
        return ""
