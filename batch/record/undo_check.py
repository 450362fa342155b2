"""Before an undo writes anything: the undo file is checked against the run's journal.

The undo file (``REPORT.undo.jsonl``) says which users to write, which attributes and which
values: anyone who can edit it could aim the undo at any user, with our credentials. So
nothing in it is trusted on its own. The run kept, in each journal line of a row whose
before-image it recorded, that image's digest (``before_images.digest``), and in the
journal's header the pool it wrote to. ``check`` reads both files, streamed, before the first
call, and refuses the whole undo (one line, naming the file and the row) when:

- the undo file names another pool or region than the journal records (``--user-pool-id``
  given to the undo must name that pool too);
- a record's digest differs from its row's journal line: its user, an attribute, a value,
  the row number changed (or the line names no image: the record was added);
- a row appears twice in the undo file;
- the journal says a row was written with an image the undo file lacks (a record dropped);
- a record has no journal line at all, in a run that finished (a record added).

A record whose row has no journal line in a run that did *not* finish (killed between the
image and the journal line) cannot be checked: it is not restored, and reported ``skipped``
(``NotJournaled``). A record whose row the run never sent a call for (``unchanged``,
``invalid``, a ``skipped`` row with no attempt) is not restored either (``unchanged``): only
users the run wrote, or tried to write, are touched. Rows the journal says were ``updated``
with no image at all are named in the undo's report (``skipped``, ``NoBeforeImage``).

What it does not catch: someone who can rewrite the journal too (its checksums are CRC32,
not a key) can make both agree. Keeping the journal out of their reach (another folder's
permissions, an S3 prefix they cannot write) is what makes the check hold; a key kept
elsewhere would be the next step. The same holds for an ``s3://`` report's objects: a record
planted with PutObject in the undo file is refused, unless the journal object is rewritten
to match.

Memory: one 16-byte digest and a row number per imaged row (numpy arrays), not the records.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from batch.errors import UsageError
from batch.record.before_images import digest, iter_records, read_header
from batch.record.journal import JournalState, read_journal
from batch.record.layout import journal_path, undo_path
from batch.rowset import RowSet

#: Journal statuses of rows the run sent a call for, whatever the call's end: an ``updated``
#: or ``created`` row, and a ``failed`` one (its update may have landed before its delete
#: failed, or before an answer was lost). ``Status`` letters (``journal._LETTER``).
_CALLED = frozenset("ufc")
_WROTE = frozenset("uc")  # rows that must have an image: the run changed their user


@dataclass(slots=True)
class Checked:
    """What the undo may restore, and what it must say it cannot."""

    pool: str
    region: str
    restorable: RowSet = field(default_factory=RowSet)  # records checked, of rows written
    not_journaled: RowSet = field(default_factory=RowSet)  # a killed run's last images
    no_image: list[tuple[int, str]] = field(default_factory=list)  # updated, never imaged

    def unrestorable(self) -> Iterator[tuple[int, str]]:
        """(row, username) of the rows updated with no image, for the undo's report."""
        return iter(self.no_image)


def run_journal(report: Path) -> JournalState:
    """The journal of the run on ``report``; a UsageError when there is none."""
    path = journal_path(report)
    state = read_journal(path)
    if state is None:
        raise UsageError(f"{path}: no journal for this run: its before-images cannot be "
                         "checked, so they are not trusted (undo never writes on a file's "
                         "word)")
    return state


def run_pool(report: Path, flag_pool: str | None, flag_region: str | None) -> tuple[str, str]:
    """The pool the undo writes to: the one the run's journal records. ``--user-pool-id``
    (and ``--region``), when given, must name the same; the undo file's header is not asked."""
    return _pool_of(run_journal(report), flag_pool, flag_region)


def _pool_of(
    state: JournalState, flag_pool: str | None, flag_region: str | None
) -> tuple[str, str]:
    pool, region = state.header.pool, state.header.region
    if not pool:
        raise UsageError(f"{state.path}: the journal does not record the pool the run wrote "
                         "to (written by an older cognito-batch): its before-images cannot be "
                         "checked; undo that run with the version that made it")
    if flag_pool and flag_pool != pool:
        raise UsageError(f"--user-pool-id {flag_pool}: the run being undone wrote to {pool} "
                         f"(its journal, {state.path}); an undo writes only there")
    if flag_region and region and flag_region != region:
        raise UsageError(f"--region {flag_region}: the run being undone wrote to {pool} in "
                         f"{region} (its journal); an undo writes only there")
    return pool, flag_region or region


def check(report: Path) -> Checked:
    """Check the undo file of the run on ``report`` against its journal (module docstring):
    a UsageError on the first edit found, before any call is made."""
    state = run_journal(report)
    upath = undo_path(report)
    header = read_header(upath)
    pool, region = _pool_of(state, None, None)
    changed = f"{upath}: changed after the run wrote it"
    if header.get("pool") != pool or (region and header.get("region") not in (region, None)):
        raise UsageError(f"{changed}: it names pool {header.get('pool')!r}, the run's journal "
                         f"{pool!r}; nothing was written")
    rows, digests, called, lined, no_image = _journal_images(state)
    checked = Checked(pool, region, no_image=no_image)
    seen = np.zeros(rows.size, dtype=bool)
    for record in iter_records(upath):
        at = int(np.searchsorted(rows, record.row))
        if at < rows.size and rows[at] == record.row:
            if seen[at]:
                raise UsageError(f"{changed}: row {record.row} has two records; nothing was "
                                 "written")
            seen[at] = True
            if bytes.fromhex(digest(record)) != digests[at].tobytes():
                raise UsageError(f"{changed}: row {record.row}'s record is not the one the run "
                                 f"recorded (its journal, {state.path}, says otherwise); "
                                 "nothing was written")
            if called[at]:
                checked.restorable.add(record.row)
        elif state.complete or record.row in lined:
            raise UsageError(f"{changed}: row {record.row} has a record the run's journal "
                             f"({state.path}) does not vouch for; nothing was written")
        else:
            checked.not_journaled.add(record.row)
    if not seen.all():
        dropped = rows[~seen]
        raise UsageError(f"{changed}: {dropped.size} rows the run recorded a before-image "
                         f"for have none there (row {int(dropped[0])} first); nothing was "
                         "written")
    return checked


def _journal_images(state: JournalState) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                  RowSet, list[tuple[int, str]]]:
    """Rows with an image digest (sorted), their digests (16 bytes), whether the run called
    for them; every row with a line; and (row, username) of the ``updated`` rows with none."""
    rows, digests, called = array("q"), bytearray(), bytearray()
    lined = RowSet()
    no_image: list[tuple[int, str]] = []
    for row, letter, attempts, username, image in state.images():
        lined.add(row)
        if image:
            try:
                raw = bytes.fromhex(image)
            except ValueError:
                raw = b""
            if len(raw) != 16:
                raise UsageError(f"{state.path}: row {row}'s line holds no digest this tool "
                                 "wrote; the journal was changed")
            rows.append(row)
            digests += raw
            called.append(letter in _CALLED or attempts > 0)
        elif letter in _WROTE:
            no_image.append((row, username))
    keys = np.frombuffer(rows, dtype=np.int64) if rows else np.zeros(0, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    table = np.frombuffer(bytes(digests), dtype=np.uint8).reshape(-1, 16)
    return (keys[order], table[order], np.frombuffer(bytes(called), dtype=bool)[order],
            lined, no_image)
