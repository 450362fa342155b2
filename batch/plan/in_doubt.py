"""Rows an earlier attempt may have sent: read first, written only where they do not hold yet.

A resume after a ``kill -9`` or a lost container does not know whether the rows that were in
flight reached Cognito: their results never reached the journal. Sending them again is not
free (a repeated email change sends another verification message, an SMS costs money, the
pool's Lambda triggers run again), so each such row's user is read (UserRead, its own quota)
and the row is written only if the user does not already hold its values (issue 20 item 6).
Which rows: the journal's write-ahead marks bound them (``engine.handout``); rows above the
highest mark were never sent and are written as any row is, with no read.

A row found holding its values is ``unchanged`` here; where an earlier attempt recorded its
before-image (so it was about to write it), ``before_images.BeforeImages`` makes it
``updated``: the run changed that user, and its undo must put it back.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

from batch.models import RowResult, Status, UserUpdate
from batch.plan.lookup import Resolver
from batch.plan.operations import SyncUpdate

Resolve = Callable[[UserUpdate], UserUpdate | RowResult]

HELD = "already holds the row's values (read after a restart: not written again)"


def diffing(resolve: Resolve | None) -> Resolve | None:
    """``resolve`` made to leave out what the user already holds (``--skip-unchanged``'s
    rule); None when there is no resolver (nothing reads the pool in this run)."""
    if isinstance(resolve, Resolver) and not resolve.skip_unchanged:
        return dataclasses.replace(resolve, skip_unchanged=True)
    return resolve  # a sync's resolver, or --skip-unchanged: it diffs already


class ReadFirst:
    """Rows up to ``below`` go through ``read`` (it diffs against the user), the others
    through ``resolve`` (None: as they are). Counts what it read and what held."""

    def __init__(self, resolve: Resolve | None, read: Resolve, below: int) -> None:
        self.resolve, self.read, self.below = resolve, read, below
        self._lock = threading.Lock()
        self.checked = 0  # rows in doubt read
        self.held = 0  # ... whose user held the row's values (no write)

    def __call__(self, update: UserUpdate) -> UserUpdate | RowResult:
        if update.row > self.below or (isinstance(update, SyncUpdate) and update.preplanned):
            # (a --disable-missing leaver is planned from the pool's listing: nothing to read)
            return self.resolve(update) if self.resolve is not None else update
        result = self.read(update)
        held = isinstance(result, RowResult) and result.status is Status.UNCHANGED
        with self._lock:
            self.checked += 1
            self.held += held
        if held:
            assert isinstance(result, RowResult)
            return dataclasses.replace(result, error_message=HELD)
        return result

    def figures(self) -> dict[str, int]:
        with self._lock:
            return {"read": self.checked, "held": self.held}
