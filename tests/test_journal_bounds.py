"""A tampered journal names no row its input lacks (review items 7 and 10): a resume refuses a
line naming row 0 or a row past the input's last in one line (exit 2), and a row number read
from a file never makes a bitmap allocate gigabytes (``RowSet(limit=)``)."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest
from test_guard import fake_job, fake_users, write_input

from batch.errors import ResumeError
from batch.record.journal import JournalHeader, journal_path, read_journal
from batch.rowset import RowSet


def add_line(path: Path, payload: str) -> None:
    data = payload.encode()
    with open(path, "ab") as handle:
        handle.write(b"%08x\t%s\n" % (zlib.crc32(data), data))


def interrupted(tmp_path: Path, n: int = 40) -> tuple[Path, Path]:
    source = write_input(tmp_path / "in.csv", n)
    report = tmp_path / "out.csv"
    fake = fake_users(n)
    job = fake_job(report, source, fake)
    fake.hook = lambda user: (
        job.runner.stop("interrupted") if user == "k00020" and job.runner else None
    )
    job.run()
    return source, report


@pytest.mark.parametrize("row", [0, 41, 500, 99_999_999_999])
def test_a_row_outside_the_input_is_refused_as_damage(tmp_path: Path, row: int) -> None:
    # GIVEN an unfinished run over 40 rows, its journal given a well-formed line for `row`
    source, report = interrupted(tmp_path)
    add_line(journal_path(report), f"{row}\tu\t1\t5\tghost")
    # WHEN it is resumed THEN it is refused in one line naming the journal
    with pytest.raises(ResumeError, match=r"out\.csv\.journal: corrupt journal .*--fresh"):
        fake_job(report, source, fake_users(40)).run()
    assert not report.exists() or "ghost" not in report.read_text()


def test_a_journal_read_with_no_input_stops_at_an_absurd_row(tmp_path: Path) -> None:
    # GIVEN a journal naming row 99,999,999,999 (a 12 GB bitmap)
    path = tmp_path / "j"
    path.write_text('{"journal": 2, "input_sha256": "a", "settings": "b"}\n')
    add_line(path, "1\tu\t1\t5\tu1")
    add_line(path, "99999999999\tu\t1\t5\tx")
    # WHEN it is read with no input to bound it THEN the line ends what is trusted, no MemoryError
    state = read_journal(path)
    assert state is not None and len(state.finished) == 1
    # ... and with its own input's bound, row 2 of a 1-row input is past it too
    add_line(path, "2\tu\t1\t5\tu2")
    header = JournalHeader("a", "b")
    state = read_journal(path, last_row=1, of=header)
    assert state is not None and 2 not in state.finished


def test_a_rowset_never_grows_past_its_limit() -> None:
    rows = RowSet(limit=1000)
    rows.add(1000)
    with pytest.raises(ValueError, match="bound"):
        rows.add(1001)
    with pytest.raises(ValueError, match="bound"):
        rows.add(99_999_999_999)
    assert rows.nbytes < 1000 and 1000 in rows and len(rows) == 1


def test_the_rows_past_the_input_are_read_from_their_first_line_last_record_last(
    tmp_path: Path,
) -> None:
    # GIVEN a --disable-missing journal over a 3-row input: leaver rows 4 and 5 among input
    # rows, marks, a leaver recorded twice (failed, then done), the end and a torn line
    path = tmp_path / "j"
    path.write_text('{"journal": 3, "input_sha256": "a", "settings": "b"}\n')
    for payload in ("1\tu\t1\t5\tk1", ">40", "4\tf\t1\t5\tx4\t\tBoom", "2\tn\t1\t5\tk2",
                    "5\tu\t1\t5\tx5", ">48", "4\tu\t2\t5\tx4", "=complete"):
        add_line(path, payload)
    with open(path, "ab") as handle:
        handle.write(b"0000")
    # WHEN it is read with the input's end as ``beyond``
    state = read_journal(path, beyond=3)
    # THEN every record of rows 4 and 5 comes back in order, nothing of the input's rows
    assert state is not None and state.past_row == 3
    assert list(state.beyond()) == [(4, "x4", False), (5, "x5", True), (4, "x4", True)]
    # ... and a journal that never passed the input reads nothing more
    no_leavers = read_journal(path, beyond=5)
    assert no_leavers is not None and list(no_leavers.beyond()) == []
