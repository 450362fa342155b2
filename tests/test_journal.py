"""The resume journal: round trip, torn lines, versions, last-wins, atomic carry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from batch.errors import ResumeError
from batch.journal import (
    Journal,
    JournalHeader,
    file_sha256,
    journal_path,
    read_journal,
)
from batch.models import RowResult, Status

HEADER = JournalHeader(input_sha256="ab" * 32, settings="0123456789abcdef")


def results() -> list[RowResult]:
    return [
        RowResult(1, "u1", Status.UPDATED, attempts=1, elapsed_ms=12),
        RowResult(2, "u2", Status.INVALID, error_code="InvalidValue",
                  error_message="column 'email': not an email address — é"),
        RowResult(3, "", Status.FAILED, attempts=8, error_code="TooManyRequestsException",
                  error_message="gave up after 8 attempts", key="c@example.com"),
        RowResult(4, "u4", Status.SKIPPED, error_code="Stopped", error_message="SIGINT"),
    ]  # fmt: skip


def write_journal(path: Path, items: list[RowResult], *, complete: bool = False) -> None:
    journal = Journal(path, HEADER)
    for item in items:
        journal.write(item)
    if complete:
        journal.complete()
    journal.close()


def test_journal_path_sits_beside_the_report() -> None:
    assert journal_path(Path("reports/run.report.csv")) == Path("reports/run.report.csv.journal")


def test_round_trip(tmp_path: Path) -> None:
    # GIVEN a journal with four results
    path = tmp_path / "r.csv.journal"
    write_journal(path, results())

    # WHEN it is read back
    state = read_journal(path)

    # THEN header and results are as written, and the run is not complete
    assert state is not None
    assert state.header == HEADER
    assert state.results == {r.row: r for r in results()}
    assert state.complete is False
    assert state.valid_bytes == path.stat().st_size


def test_finished_keeps_only_rows_a_resume_does_not_redo(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write_journal(path, results())
    state = read_journal(path)
    assert state is not None
    assert sorted(state.finished()) == [1, 2]


def test_complete_marker(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write_journal(path, results(), complete=True)
    state = read_journal(path)
    assert state is not None and state.complete is True
    assert len(state.results) == 4


def test_no_journal_reads_as_none(tmp_path: Path) -> None:
    assert read_journal(tmp_path / "missing") is None
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert read_journal(empty) is None


@pytest.mark.parametrize(
    "torn",
    [b'{"row": 5, "status": "upd', b'{"row": 5, "status": "updated"}', b"{", b"\xe2\x82"],
    ids=["half-object", "whole-object-no-newline", "brace", "half-utf8"],
)
def test_a_torn_last_line_is_ignored_and_the_rest_kept(tmp_path: Path, torn: bytes) -> None:
    # GIVEN a journal whose last write was cut off mid-line
    path = tmp_path / "j"
    write_journal(path, results())
    whole = path.stat().st_size
    with open(path, "ab") as handle:
        handle.write(torn)

    # WHEN it is read
    state = read_journal(path)

    # THEN the earlier results are all there, row 5 is not, and the valid length excludes it
    assert state is not None
    assert sorted(state.results) == [1, 2, 3, 4]
    assert state.valid_bytes == whole


def test_a_garbled_last_line_with_a_newline_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write_journal(path, results())
    with open(path, "ab") as handle:
        handle.write(b'{"row": 5, "status": "upd\n')
    state = read_journal(path)
    assert state is not None
    assert sorted(state.results) == [1, 2, 3, 4]


def test_a_header_of_another_version_is_a_resume_error(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.write_text(json.dumps({"journal": 2, "input_sha256": "x", "settings": "y"}) + "\n")
    with pytest.raises(ResumeError, match="version"):
        read_journal(path)


def test_a_file_that_is_not_a_journal_is_a_resume_error(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.write_text('{"row": 1, "status": "updated"}\n')
    with pytest.raises(ResumeError):
        read_journal(path)


def test_the_last_record_for_a_row_wins(tmp_path: Path) -> None:
    # GIVEN row 3 failed, then (in a resumed run) was updated; row 1 updated then skipped
    path = tmp_path / "j"
    write_journal(path, [
        RowResult(3, "u3", Status.FAILED, error_code="InternalErrorException"),
        RowResult(1, "u1", Status.UPDATED),
        RowResult(3, "u3", Status.UPDATED, attempts=2),
    ])  # fmt: skip

    # WHEN read
    state = read_journal(path)

    # THEN row 3's final result is the later one
    assert state is not None
    assert state.results[3] == RowResult(3, "u3", Status.UPDATED, attempts=2)
    assert sorted(state.finished()) == [1, 3]


def test_opening_carries_finished_rows_into_a_fresh_file(tmp_path: Path) -> None:
    # GIVEN an unfinished journal with a torn last line
    path = tmp_path / "j"
    write_journal(path, results())
    with open(path, "ab") as handle:
        handle.write(b'{"row": 9')
    old = read_journal(path)
    assert old is not None
    old_inode = path.stat().st_ino

    # WHEN a resumed run opens it, carrying the finished rows
    journal = Journal(path, HEADER, carry=iter(old.finished().values()))
    journal.write(RowResult(3, "u3", Status.UPDATED, attempts=1))
    journal.close()

    # THEN the file was replaced (not rewritten in place), and holds the carry then new rows
    assert path.stat().st_ino != old_inode
    assert not path.with_name(path.name + ".tmp").exists()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == HEADER.as_record()
    assert [json.loads(line)["row"] for line in lines[1:]] == [1, 2, 3]
    state = read_journal(path)
    assert state is not None and sorted(state.results) == [1, 2, 3]


def test_a_carry_that_fails_leaves_the_old_journal_intact(tmp_path: Path) -> None:
    # GIVEN an existing journal
    path = tmp_path / "j"
    write_journal(path, results())
    before = path.read_bytes()

    def broken_carry() -> Iterator[RowResult]:
        yield results()[0]
        raise OSError("disk full")

    # WHEN opening with a carry fails part-way
    with pytest.raises(OSError, match="disk full"):
        Journal(path, HEADER, carry=broken_carry())

    # THEN the old journal is untouched
    assert path.read_bytes() == before


def test_every_write_is_on_disk_before_close(tmp_path: Path) -> None:
    # A crash after a write loses nothing the OS has: lines are flushed as they are written.
    path = tmp_path / "j"
    journal = Journal(path, HEADER, fsync_every=1000, fsync_seconds=1000.0)
    journal.write(results()[0])
    state = read_journal(path)
    journal.close()
    assert state is not None and sorted(state.results) == [1]


def test_file_sha256(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert file_sha256(path) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
