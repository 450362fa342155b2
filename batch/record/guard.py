"""Guards against an operator's mistakes that would cost data: checked before and during a run.

- ``check_outputs``: no file a command writes (a run's whole family, ``layout.RunFiles``, an
  HTML page, a merged report) is the input, another of its outputs, or a file it must not
  touch (``retry``, ``undo``: the original run's files), whether by
  the same name, a symlink or a hard link. Checked before anything is opened for writing, so
  ``--report users.csv`` is refused instead of emptying ``users.csv`` before it is read.
- ``check_dry_run_target``: a dry run never writes over a real run's report.
- ``InputWatch``: the input does not change between the scan and the end of reading. Its
  identity (size, mtime, inode) is taken before the scan and, while applying, checked again
  after every row is read, before the row is handed on; a row beyond the scan's count is never
  handed on; and a small file's SHA-256 is compared at the end, which catches a same-size
  rewrite within one mtime tick. A change stops the run (exit 2, ``stop_on_change``) and every
  row not applied is ``skipped``.
- ``check_journal``: a damaged journal is one line (exit 2), not a traceback or silent loss.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from batch.errors import InputError, ResumeError, UsageError
from batch.models import REPORT_COLUMNS, InputRow, RowResult, Status
from batch.record.journal import JournalHeader, JournalState, read_journal
from batch.record.layout import RunFiles
from batch.record.report import report_format
from batch.store.storage import file_sha256

#: Files at most this big are hashed again when reading ends (~60 ms at 1 GB/s).
REHASH_BYTES = 64 * 1024 * 1024
PLAN_CHECK_EVERY = 256
T = TypeVar("T")
INPUT_CHANGED = "InputChanged"


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_dev, st.st_ino)


def same_file(a: Path, b: Path) -> bool:
    """The same file: by device and inode (a hard link, a symlink, another spelling of the
    name), or by resolved path when either does not exist yet."""
    ia, ib = _identity(a), _identity(b)
    if ia is not None and ib is not None:
        return ia == ib
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):  # a symlink loop: compare the names as given
        return os.path.abspath(a) == os.path.abspath(b)


def check_outputs(
    input: Path | None,
    outputs: Iterable[tuple[str, Path]],
    protected: Iterable[tuple[str, Path]] = (),
    *,
    flag: str = "--report",
) -> None:
    """Refuse (``UsageError``, exit 2) an output that is the input, a protected file, another
    output of the same command, or a folder. ``outputs`` and ``protected`` are ``(what,
    path)`` pairs, for the message. ``input`` is None when it is no local file (an S3 object:
    no local output can be it). Called before anything is opened for writing."""
    keep = [*([("the input", input)] if input is not None else []), *protected]
    seen: list[tuple[str, Path]] = []
    for what, path in outputs:
        for other_what, other in [*keep, *seen]:
            if same_file(path, other):
                same = "" if os.path.normpath(path) == os.path.normpath(other) else f" ({other})"
                raise UsageError(
                    f"{what} {path} is {other_what}{same}: refusing to overwrite it; "
                    f"choose another {flag}"
                )
        if path.is_dir():
            raise UsageError(f"{what} {path} is a folder: give a file name for {flag}")
        seen.append((f"the {what}", path))


@dataclass(frozen=True, slots=True)
class FileState:
    """What identifies a file's content cheaply."""

    size: int
    mtime_ns: int
    inode: int
    device: int

    @classmethod
    def of(cls, path: Path) -> FileState | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return cls(st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)

    def differs(self, now: FileState | None) -> str:
        """Why ``now`` is not the same file content, or ``""``."""
        if now is None:
            return "it was removed"
        if (now.inode, now.device) != (self.inode, self.device):
            return "it was replaced by another file"
        if now.size != self.size:
            return f"its size changed from {self.size} to {now.size} bytes"
        if now.mtime_ns != self.mtime_ns:
            return "it was modified"
        return ""


class InputChanged(InputError):
    """The input changed while the run was reading it."""


class InputWatch:
    """The input's identity from before the scan, checked while its rows are read."""

    def __init__(self, path: Path | None, *, identity: Callable[[], str] | None = None) -> None:
        """``path``: the local file to watch. None for an S3 object or a dataset, whose reads
        are pinned to each part's VersionId or ETag (``storage``): only the row count is
        checked, and ``identity`` gives the resume identity."""
        self.path = path
        self._identity = identity
        state = FileState.of(path) if path is not None else FileState(0, 0, 0, 0)
        if state is None:
            raise InputError("no such file", path=str(path))
        self.start = state
        self._key = (state.size, state.mtime_ns, state.inode, state.device)
        self.sha256 = ""  # set by ``hashed``
        self.changed = ""  # why the input is no longer the one scanned ("": it is)
        self.last = 0  # the last row handed on (read while the file was the scanned one)
        # Rows between two stats. 1 while applying (``stop_on_change``): no row read after a
        # change is handed on. A stat is a system call (1-10 us, by the machine's load), so
        # the passes that apply nothing (the plan, a dry run) check every PLAN_CHECK_EVERY
        # rows and at the end: they only need to fail, and the apply pass checks again.
        self.check_every = PLAN_CHECK_EVERY

    def check(self) -> None:
        """Raise ``InputChanged`` if the file is not the one the scan saw."""
        if self.changed:
            self._changed(self.changed)
        if self.path is None:
            return
        try:  # the common case: a bare stat and a tuple compare
            st = os.stat(self.path)
            if (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev) == self._key:
                return
        except OSError:
            pass
        why = self.start.differs(FileState.of(self.path))
        if why:
            self._changed(f"the input changed during the run ({why})")

    def _changed(self, reason: str) -> None:
        self.changed = reason
        raise InputChanged(reason + "; rerun once the file is stable", path=str(self.path))

    def hashed(self) -> str:
        """The input's SHA-256, refused if the file changed before or while it was hashed."""
        if self.path is None:
            assert self._identity is not None
            return self._identity()
        self.check()
        self.sha256 = file_sha256(self.path)
        self.check()
        return self.sha256

    def rows(self, rows: Iterable[InputRow], *, expected: int) -> Iterator[InputRow]:
        """``rows``, each handed on only once the file is known unchanged after it was read;
        never a row past ``expected`` (the scan's count); the hash compared at the end."""
        self.last = 0  # each pass (planning, then applying) starts from the first row
        for row in rows:
            if row.row % self.check_every == 0:
                self.check()
            if row.row > expected:
                self._changed(f"the input changed during the run (row {row.row} was not there "
                              f"when it was scanned: {expected} rows)")
            self.last = row.row
            yield row
        self.check()
        small = self.start.size <= REHASH_BYTES
        rehash = self.path is not None and self.sha256 and small
        if rehash and self.path is not None and file_sha256(self.path) != self.sha256:
            self._changed("the input changed during the run (its SHA-256 differs)")


def stop_on_change(
    items: Iterable[T],
    watch: InputWatch,
    *,
    stop: Callable[[str], None],
    expected: int,
    done: Container[int] = (),
    only: Iterable[int] = (),
    foreign: Container[int] | None = None,
) -> Iterator[T | RowResult]:
    """The run's feed: ``items`` until the input changes (``InputChanged``, or a reader error
    the change caused), then ``stop(reason)`` and a ``skipped`` result for every row not read."""
    watch.check_every = 1
    try:
        yield from items
    except InputError:
        if not watch.changed:
            try:
                watch.check()
            except InputChanged:
                pass
            else:
                raise  # a reader error of its own: the file did not change
        reason = f"{watch.changed}: rows not applied are skipped; rerun once the file is stable"
        stop(reason)
        yield from unread_rows(watch.last, expected, reason, done=done, only=only,
                               foreign=foreign)


def unread_rows(
    after: int, expected: int, reason: str, *, done: Container[int] = (),
    only: Iterable[int] = (), foreign: Container[int] | None = None,
) -> Iterator[RowResult]:
    """``skipped`` results for the rows ``after``+1 .. ``expected`` that a changed input can
    no longer be trusted to give (their values are unknown, so no username either). ``done``
    is only asked ``in`` (a set, or a bitmap of millions of rows: never copied)."""
    wanted = frozenset(only)
    for row in range(after + 1, expected + 1):
        if row in done or (wanted and row not in wanted):
            continue
        if foreign is not None and row in foreign:  # another shard's: not in this report
            continue
        yield RowResult(row, "", Status.SKIPPED, error_code=INPUT_CHANGED, error_message=reason)


def run_outputs(report: Path) -> list[tuple[str, Path]]:
    """Every file a run on ``report`` writes at a fixed name (``layout.RunFiles``)."""
    return RunFiles(report).written()


def check_journal(
    path: Path, *, last_row: int | None = None, of: JournalHeader | None = None,
    beyond: int | None = None,
) -> JournalState | None:
    """``read_journal``, with a damaged journal refused in one line (exit 2): a record that is
    not a result, or a garbled line with whole lines after it. (Only a torn *last* line is a
    crash's mark, which a resume may drop; a bad line in the middle means the file was damaged
    or edited, and silently dropping what follows it would hide that.) ``last_row``: the
    input's last data row: in a journal whose header is ``of`` (this run's), a line naming a
    row outside ``1..last_row`` is damage too (``beyond``: as ``read_journal``). Not checked:
    that a carried line's username is its row's in the input (an edited journal can rename a
    carried row's user in the report).
    The key scan keeps the input's names hashed and *sorted* (8 bytes a row), not by row, and
    the carry streams the journal in its own order; matching them row by row would cost a
    second 8 bytes a row or another pass over the input in journal order. The report is
    written from the journal only for rows the run itself wrote; no call is made for them."""
    fix = "repair or remove it, or pass --fresh to start over"
    try:
        state = read_journal(path, last_row=last_row, of=of, beyond=beyond)
    except ResumeError:
        raise
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ResumeError(
            f"{path}: corrupt journal (a line is not a result record: "
            f"{type(exc).__name__}); {fix}"
        ) from None
    if state is None:
        if path.is_file() and path.stat().st_size > 0:  # written whole and renamed: not torn
            raise ResumeError(f"{path}: corrupt journal (line 1 is not a journal header); {fix}")
        return None
    with open(path, "rb") as handle:
        handle.seek(state.valid_bytes)
        rest = handle.read()
    if rest.count(b"\n") > 0:
        line = 1 + _lines_before(path, state.valid_bytes)
        raise ResumeError(f"{path}: corrupt journal (line {line} is damaged); {fix}")
    return state


def _lines_before(path: Path, offset: int) -> int:
    with open(path, "rb") as handle:
        return handle.read(offset).count(b"\n")


def check_dry_run_target(report: Path) -> None:
    """A dry run writes a planned report and summary: never over a real run's (its journal
    beside it says there is one), which would lose that run's results and make it unretryable."""
    if RunFiles(report).journal.exists():
        raise UsageError(
            f"report {report} holds a real run's results (its journal is beside it): "
            "give the dry run another --report"
        )


def check_html_target(html: Path, report: Path) -> None:
    """``report REPORT --html PAGE``: the page is none of the run's files, nor its input."""
    check_outputs(None, [("HTML page", html)], run_records(report, "the run"),
                  flag="--html")
    check_replaceable(html, "html", "--html")


#: The names a run's records end with beside its report (``layout.RunFiles``).
_RECORD_ENDINGS = tuple(p.name.removeprefix("r.csv") for p in RunFiles(Path("r.csv")).all()[1:])


def check_not_a_record(path: Path, what: str, flag: str, *, reports: bool = True) -> None:
    """``path`` is no run's record: no journal, summary, timeline, before-images or lock (by
    its name), and with ``reports`` no run's report either (a journal beside it). A run's own
    ``--report`` may be a report (that is how it resumes); nothing else may."""
    if path.name.endswith(_RECORD_ENDINGS) or (reports and RunFiles(path).journal.exists()):
        raise UsageError(f"{what} {path} is a run's record: refusing to overwrite it; "
                         f"choose another {flag}")


def check_own_report(report: Path, input_sha256: str, flag: str = "--report") -> None:
    """A report with a journal beside it may be replaced only by the run that journal is of
    (the same input: an undo resuming its own report); another run's report is refused, not
    overwritten with its records (``check_not_a_record``'s rule, for commands that resume)."""
    try:
        with open(RunFiles(report).journal, "rb") as handle:
            first = handle.readline(1 << 16)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError:
        first = b""
    try:
        same = json.loads(first).get("input_sha256") == input_sha256
    except (ValueError, AttributeError):
        same = False
    if not same:
        raise UsageError(f"report {report} is another run's record (its journal is beside it): "
                         f"refusing to overwrite it; choose another {flag}")


def check_export_target(out: Path, *, fresh: bool = False) -> None:
    """``export OUT``: never over a run's records, and over an existing file only when it is
    an unfinished export of its own (its checkpoint beside it) or ``--fresh`` says replace it:
    an export's contents (a ``username`` column, then attributes) look like any run's input,
    so nothing in the file can tell an old export from someone's input."""
    check_not_a_record(out, "export", "OUT")
    checkpoint = out.with_name(out.name + ".export.json")
    if not fresh and out.exists() and not checkpoint.exists():
        raise UsageError(f"export {out} exists: pass --fresh to replace it, or choose another "
                         "OUT")


#: The first line of every HTML page this tool writes (``view.html_page``): what lets a later
#: run replace the page, and nothing else, at its path.
HTML_MARKER = "<!-- cognito-batch report page -->"


_KINDS = {"report": "report", "html": "HTML page", "metrics": "metrics file"}


def check_replaceable(path: Path, kind: str, flag: str) -> None:
    """An output replaces an existing file only when that file is one this tool wrote, of the
    same kind (``report``: a results header; ``html``: the page's marker). Anything else at
    the name (someone's input, a spreadsheet, another tool's page) is refused, not lost; and
    never a run's record (``check_not_a_record``; a report may be a report: it resumes)."""
    what = _KINDS[kind]
    check_not_a_record(path, what, flag, reports=kind != "report")
    try:
        if path.is_dir():
            raise UsageError(f"{flag} {path} is a folder; give a file name")
        if not path.is_file() or path.stat().st_size == 0:
            return
        ours = _looks_like(path, kind)
    except OSError:
        return  # unreadable: the write itself says why, in one line
    if not ours:
        raise UsageError(f"{path} exists and is not a cognito-batch {what}: refusing to "
                         f"overwrite it; remove it or choose another {flag}")


def _looks_like(path: Path, kind: str) -> bool:
    if kind == "html":  # the marker, or the title pages had before it (an upgrade's page)
        with open(path, "rb") as handle:
            head = handle.read(4096)
        return HTML_MARKER.encode() in head or b"<title>cognito-batch report: " in head
    if kind == "metrics":  # a node_exporter textfile of ours: our metric names in it
        with open(path, "rb") as handle:
            return handle.read(4096).startswith(b"# HELP cognito_batch_")
    fmt = report_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            names = set(pq.read_schema(path).names)
        except Exception:  # noqa: BLE001 - not Parquet at all: not ours
            return False
        return {"row", "status", "username"} <= names
    with open(path, "rb") as handle:
        first = handle.readline(1 << 16).decode("utf-8", "replace").lstrip("\ufeff").strip()
    if fmt == "csv":
        return first.split(",")[:3] == list(REPORT_COLUMNS[:3])
    try:
        record = json.loads(first)
    except ValueError:
        return False
    return isinstance(record, dict) and {"row", "status", "username"} <= set(record)


def run_records(report: Path, whose: str) -> list[tuple[str, Path]]:
    """What a command that reads a run must keep: the run's files and, when its summary
    names a local one, the run's input."""
    from batch.record.summary import RunSummary

    try:
        named = RunSummary.of(report).input
    except (OSError, UsageError):
        named = None
    kept = RunFiles(report).recorded(whose)
    if named and "://" not in named:
        kept.append((f"the input of {whose}", Path(named)))
    return kept
