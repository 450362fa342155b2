"""A kind of work the pipeline applies: what a command supplies, and nothing more.

``run`` (and ``retry``, which is a run of chosen rows) and ``undo`` are the two kinds today;
the next operations (create a user, disable or enable one, add to or remove from a group) are
new subclasses, not new pipelines. What a kind decides:

- ``feed``: its rows, in order, as planned items (``UserUpdate``) or results already decided
  (``RowResult``: invalid, a duplicate, a row a changed input cannot give);
- ``resolve``: the step a worker runs on a row right before its calls (a read, a diff, a
  before-image, the undo's conflict check); it holds the row's slot in the window;
- ``writer``: the calls a row makes. **The seam for new operations**: today the runner sends
  a ``UserUpdate`` as AdminUpdateUserAttributes then AdminDeleteUserAttributes
  (``Runner._apply`` and ``Runner._send``, under the one UserUpdate pacer). A create or a
  group change is a new item type whose ``writer`` makes its own call; the runner's two
  places above dispatch on it, and each kind paces under its own quota category
  (``pace.quota.CATEGORY_OF``) with its own controller;
- ``sinks``: anything else that must see every result in the journal's order;
- its part of the summary, and what it says when it ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from batch.engine.runner import Runner, Writer
from batch.engine.sinks import Sink
from batch.models import RowResult, UserUpdate
from batch.pace.controllers import RateController
from batch.record.summary import RunSummary
from batch.rowset import RowSet
from batch.view.logs import EventLog

Resolve = Callable[[UserUpdate], UserUpdate | RowResult]


@dataclass(frozen=True, slots=True)
class Unreached:
    """Rows a stopped feed never read, with their users as the input names them (the
    report is per user): ``usernames`` and ``keys`` one a row, as a planned row has them."""

    rows: np.ndarray
    usernames: Sequence[str]
    keys: Sequence[str]


class Work:
    """The defaults: no resolve step, no extra sink, nothing unreached, nothing to add."""

    def writer(self) -> Writer | Any:
        """The gateway (or a wrapper of it) whose calls each row makes."""
        raise NotImplementedError

    def feed(
        self, reported: RowSet, stop: Callable[[str], None]
    ) -> Iterable[UserUpdate | RowResult]:
        """Every row still to report (``reported`` has the carried ones); ``stop`` ends the
        apply (a changed input, say)."""
        raise NotImplementedError

    def resolve(self) -> Resolve | None:
        return None

    def empty_rows(self) -> RowSet:
        """The set of reported rows for a fresh start (sized when the count is known)."""
        return RowSet()

    def unreached(self, reported: RowSet, reason: str) -> Iterator[np.ndarray | Unreached]:
        """Rows a stopped feed never read, to be reported ``skipped`` in bulk (named when it
        can: ``Unreached``); a feed that reads to its end whatever happens (the runner
        reports each row) has none."""
        return iter(())

    def sinks(self) -> list[Sink]:
        return []

    def image(self, row: int) -> str:
        """The digest of the before-image recorded for ``row`` ('' for none), for its
        journal line: what an undo checks the undo file against."""
        return ""

    def controllers(self) -> Mapping[str, RateController]:
        """A controller for each quota category besides UserUpdate that its rows call (a
        sync's UserCreation): each paced on its own lane (``engine.lanes``)."""
        return {}

    def started(self, runner: Runner) -> None:
        """The runner exists: a writer that paces a second call takes its pacer here."""

    def stopped_job(self) -> bool:
        """Something of the work's own stopped the job (exit 2), e.g. a changed input."""
        return False

    def summary(self, summary: RunSummary) -> RunSummary:
        """The work's own fields (input, lookup, before-images...)."""
        return summary

    def announce(self, log: EventLog, summary: RunSummary) -> None:
        """What it says after the summary line."""
