"""The resume journal: round trip, compact lines, torn and garbled lines, versions, last-wins,
atomic carry, owner-only files, and the flat memory of its finished-row bitmap."""

from __future__ import annotations

import json
import stat
import sys
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from batch.errors import ResumeError
from batch.models import RowResult, Status
from batch.record.journal import (
    Journal,
    JournalHeader,
    encode,
    journal_path,
    read_journal,
)
from batch.rowset import RowSet
from batch.store.storage import file_sha256

HEADER = JournalHeader(input_sha256="ab" * 32, settings="0123456789abcdef")


def results() -> list[RowResult]:
    return [
        RowResult(1, "u1", Status.UPDATED, attempts=1, elapsed_ms=12),
        RowResult(2, "u2", Status.INVALID, error_code="InvalidValue",
                  error_message="column 'email': not an email address — é"),
        RowResult(3, "", Status.FAILED, attempts=8, error_code="TooManyRequestsException",
                  error_message="gave up after 8 attempts", key="c@example.com"),
        RowResult(4, "u4", Status.SKIPPED, error_code="Stopped", error_message="SIGINT"),
    ]


def write_journal(path: Path, items: list[RowResult], *, complete: bool = False) -> None:
    journal = Journal(path, HEADER)
    for item in items:
        journal.write(item)
    if complete:
        journal.complete()
    journal.close()


def test_journal_path_sits_beside_the_report() -> None:
    assert journal_path(Path("reports/run.report.csv")) == Path("reports/run.report.csv.journal")


def records(path: Path) -> dict[int, RowResult]:
    state = read_journal(path)
    assert state is not None
    return {r.row: r for r in state.records()}


def test_round_trip(tmp_path: Path) -> None:
    # GIVEN a journal with four results (tabs, newlines, backslashes and non-ASCII in texts)
    path = tmp_path / "r.csv.journal"
    odd = RowResult(5, "a\tb", Status.FAILED, attempts=2, error_code="X",
                    error_message="line1\nline2\r\\n — \\ \udcff", key="k\\t")
    write_journal(path, [*results(), odd])

    # WHEN it is read back
    state = read_journal(path)

    # THEN header and results are as written, and the run is not complete
    assert state is not None
    assert state.header == HEADER
    assert list(state.records()) == [*results(), odd]
    assert state.complete is False
    assert state.valid_bytes == path.stat().st_size
    assert state.records_count == 5


def test_a_line_is_compact_and_checksummed(tmp_path: Path) -> None:
    # GIVEN an updated row as most rows end
    line = encode(RowResult(1234567, "user1234567", Status.UPDATED, attempts=1, elapsed_ms=23))
    # THEN it is one short tab-separated line whose first field is the CRC32 of the rest
    assert line == b"%08x\t1234567\tu\t1\t23\tuser1234567\n" % zlib.crc32(
        b"1234567\tu\t1\t23\tuser1234567"
    )
    assert len(line) < 40


def test_finished_holds_only_rows_a_resume_does_not_redo(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write_journal(path, results())
    state = read_journal(path)
    assert state is not None
    assert [r for r in range(10) if r in state.finished] == [1, 2]
    assert len(state.finished) == 2
    assert [cells for _, cells in state.carried()] == [
        (1, "u1", "", "updated", 1, "", "", 12),
        (2, "u2", "", "invalid", 0, "InvalidValue", "column 'email': not an email address — é", 0),
    ]


def test_complete_marker(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write_journal(path, results(), complete=True)
    state = read_journal(path)
    assert state is not None and state.complete is True
    assert len(records(path)) == 4


def test_no_journal_reads_as_none(tmp_path: Path) -> None:
    assert read_journal(tmp_path / "missing") is None
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert read_journal(empty) is None


@pytest.mark.parametrize(
    "torn",
    [b"1a2b3c4d\t5\tu\t1", b"%08x\t5\tu\t1\t2\tu5" % zlib.crc32(b"5\tu\t1\t2\tu5"),
     b"\x00\x00\x00\x00", b"\xe2\x82"],
    ids=["half-line", "whole-line-no-newline", "zeros", "half-utf8"],
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
    assert sorted(records(path)) == [1, 2, 3, 4]
    assert state.valid_bytes == whole


@pytest.mark.parametrize(
    "garbled",
    [b"1a2b3c4d\t5\tu\t1\t2\tu5\n",  # a checksum that does not match
     b"%08x\t5\tX\t1\n" % zlib.crc32(b"5\tX\t1"),  # a status that does not exist
     b"%08x\tfive\tu\t1\n" % zlib.crc32(b"five\tu\t1"),  # a row that is not a number
     b'{"row": 5, "status": "updated"}\n',  # a version 1 line
     b"\n"],
    ids=["bad-crc", "bad-status", "bad-row", "json", "empty"],
)
def test_a_garbled_line_ends_what_is_trusted(tmp_path: Path, garbled: bytes) -> None:
    # GIVEN a garbled line (with its newline) and then a good one after it
    path = tmp_path / "j"
    write_journal(path, results())
    whole = path.stat().st_size
    with open(path, "ab") as handle:
        handle.write(garbled + encode(RowResult(6, "u6", Status.UPDATED)))

    # WHEN it is read
    state = read_journal(path)

    # THEN reading stopped at the garbled line: row 6 after it is not trusted either
    assert state is not None
    assert sorted(records(path)) == [1, 2, 3, 4]
    assert 6 not in state.finished
    assert state.valid_bytes == whole


def test_an_unfinished_journal_of_an_older_version_is_a_one_line_resume_error(
    tmp_path: Path,
) -> None:
    # GIVEN a version 1 journal (JSON lines) of a run that did not finish
    path = tmp_path / "j"
    path.write_text(json.dumps({"journal": 1, "input_sha256": "x", "settings": "y"}) + "\n"
                    + '{"row": 1, "status": "updated"}\n')
    # WHEN it is read, THEN the error names the version and the way out, on one line
    with pytest.raises(ResumeError, match="version 1") as caught:
        read_journal(path)
    assert "--fresh" in str(caught.value) and "\n" not in str(caught.value)


def test_a_finished_journal_of_an_older_version_reads_as_complete(tmp_path: Path) -> None:
    # GIVEN a version 1 journal of a run that finished: the next run may simply replace it
    path = tmp_path / "j"
    path.write_text(json.dumps({"journal": 1, "input_sha256": "x", "settings": "y"}) + "\n"
                    + '{"row": 1, "status": "updated"}\n{"complete": true}\n')
    state = read_journal(path)
    assert state is not None and state.complete and state.version == 1


def test_a_journal_of_a_newer_version_is_a_resume_error(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.write_text(json.dumps({"journal": 4, "input_sha256": "x", "settings": "y"}) + "\n")
    with pytest.raises(ResumeError, match="newer"):
        read_journal(path)


@pytest.mark.parametrize("first", [b'{"row": 1, "status": "updated"}\n', b"garbage\n", b"[1]\n"])
def test_a_file_that_is_not_a_journal_is_a_resume_error(tmp_path: Path, first: bytes) -> None:
    path = tmp_path / "j"
    path.write_bytes(first)
    with pytest.raises(ResumeError, match="not a cognito-batch journal"):
        read_journal(path)


def test_the_last_record_for_a_row_wins(tmp_path: Path) -> None:
    # GIVEN row 3 failed, then (in a resumed run) was updated; row 1 updated then skipped
    path = tmp_path / "j"
    write_journal(path, [
        RowResult(3, "u3", Status.FAILED, error_code="InternalErrorException"),
        RowResult(1, "u1", Status.UPDATED),
        RowResult(3, "u3", Status.UPDATED, attempts=2),
        RowResult(1, "u1", Status.SKIPPED, error_code="Stopped"),
    ])

    # WHEN read
    state = read_journal(path)

    # THEN each row's final result is its later one, and only that one is streamed
    assert state is not None
    assert list(state.records()) == [
        RowResult(3, "u3", Status.UPDATED, attempts=2),
        RowResult(1, "u1", Status.SKIPPED, error_code="Stopped"),
    ]
    assert 3 in state.finished and 1 not in state.finished
    again = encode(RowResult(3, "u3", Status.UPDATED, attempts=2))
    assert [line for line, _ in state.carried()] == [again]


def test_opening_carries_finished_rows_into_a_fresh_file(tmp_path: Path) -> None:
    # GIVEN an unfinished journal with a torn last line
    path = tmp_path / "j"
    write_journal(path, results())
    with open(path, "ab") as handle:
        handle.write(b"0000\t9")
    old = read_journal(path)
    assert old is not None
    old_inode = path.stat().st_ino

    # WHEN a resumed run opens it, carrying the finished rows (streamed from the old file)
    journal = Journal(path, HEADER, carry=(line for line, _ in old.carried()))
    journal.write(RowResult(3, "u3", Status.UPDATED, attempts=1))
    journal.close()

    # THEN the file was replaced (not rewritten in place), and holds the carry then new rows
    assert path.stat().st_ino != old_inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j"]  # no temporary left
    lines = path.read_bytes().splitlines()
    assert json.loads(lines[0]) == HEADER.as_record()
    assert [r.row for r in read_journal(path).records()] == [1, 2, 3]  # type: ignore[union-attr]


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

    # THEN the old journal is untouched, and no temporary is left beside it
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j"]


def test_a_resume_appends_to_the_journal_it_read_cutting_only_a_torn_last_line(
    tmp_path: Path,
) -> None:
    # GIVEN an unfinished journal whose last line was torn by a kill -9
    path = tmp_path / "j"
    write_journal(path, results())
    whole = path.read_bytes()
    with open(path, "ab") as handle:
        handle.write(b"0000\t9")
    old = read_journal(path)
    assert old is not None and old.valid_bytes == len(whole)
    inode = path.stat().st_ino

    # WHEN a resume opens it at its trusted length and redoes rows 3 and 4
    journal = Journal(path, HEADER, append_at=old.valid_bytes)
    journal.write(RowResult(3, "u3", Status.UPDATED, attempts=1))
    journal.write(RowResult(4, "u4", Status.UPDATED, attempts=1))
    journal.close()

    # THEN nothing before the torn line was rewritten (the same file, the same bytes), the
    # new lines follow the trusted ones, and each row's last record wins
    assert path.stat().st_ino == inode
    assert path.read_bytes().startswith(whole) and b"0000\t9" not in path.read_bytes()
    state = read_journal(path)
    assert state is not None and state.records_count == 6
    assert [(r.row, r.status) for r in state.records()] == [
        (1, Status.UPDATED), (2, Status.INVALID), (3, Status.UPDATED), (4, Status.UPDATED)]
    assert [cells[0] for _, cells in state.carried()] == [1, 2, 3, 4]


def test_last_wins_after_resumes_in_the_journal_order_of_each_rows_last_line(
    tmp_path: Path,
) -> None:
    # GIVEN rows failed, redone, failed again across three appended attempts, a completion
    # marker between lines (as an older run's journal may hold), a bitmap bigger than a block
    path = tmp_path / "j"
    journal = Journal(path, HEADER)
    for row in range(1, 2001):
        journal.write(RowResult(row, f"u{row}", Status.FAILED, error_code="E1"))
    journal.complete()
    for row in range(1, 2001, 2):
        journal.write(RowResult(row, f"u{row}", Status.UPDATED))
    for row in range(2, 2001, 4):
        journal.write(RowResult(row, f"u{row}", Status.FAILED, error_code="E2"))
    journal.close()

    # WHEN read (the backward pass in small blocks too)
    state = read_journal(path)
    assert state is not None

    # THEN each row is streamed once, as its last record, in the order of those last lines
    got = [(r.row, r.status, r.error_code) for r in state.records()]
    want = ([(row, Status.FAILED, "E1") for row in range(4, 2001, 4)]
            + [(row, Status.UPDATED, "") for row in range(1, 2001, 2)]
            + [(row, Status.FAILED, "E2") for row in range(2, 2001, 4)])
    assert got == want
    assert [cells[0] for _, cells in state.carried()] == list(range(1, 2001, 2))


def test_rows_recorded_twice_cost_bitmaps_not_a_dict(tmp_path: Path) -> None:
    # GIVEN journals where 20,000 and 100,000 rows failed and were redone (appended twice)
    def redone(path: Path, n: int) -> Path:
        with open(path, "wb") as handle:
            handle.write(json.dumps(HEADER.as_record()).encode() + b"\n")
            for status in (Status.FAILED, Status.UPDATED):
                handle.write(b"".join(encode(RowResult(r, f"user{r}", status))
                                      for r in range(1, n + 1)))
        return path

    def peak(path: Path) -> int:
        tracemalloc.start()
        state = read_journal(path)
        assert state is not None
        for _ in state.carried():
            pass
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    # WHEN each is read and its finished rows streamed, allocations traced
    grown = peak(redone(tmp_path / "l", 100_000)) - peak(redone(tmp_path / "s", 20_000))
    # THEN 80,000 more redone rows cost bitmaps (about 0.4 byte a row; measured ~40 kB),
    # not the ~9 MB of a dict from row to its last record (some 100 bytes a row)
    assert grown < 150_000, grown


def test_every_write_is_on_disk_before_close(tmp_path: Path) -> None:
    # A crash after a write loses nothing the OS has: lines are written unbuffered.
    path = tmp_path / "j"
    journal = Journal(path, HEADER, fsync_every=1000, fsync_seconds=1000.0)
    journal.write(results()[0])
    state = read_journal(path)
    journal.close()
    assert state is not None and 1 in state.finished


def test_the_journal_is_owner_only_and_refuses_a_planted_link(tmp_path: Path) -> None:
    # GIVEN a folder where someone planted a link at the journal's name
    victim = tmp_path / "victim"
    victim.write_text("precious")
    path = tmp_path / "j"
    path.symlink_to(victim)
    # WHEN the journal is created THEN the link is replaced, not followed, and the file is 0600
    write_journal(path, results())
    assert victim.read_text() == "precious"
    assert not path.is_symlink()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_finished_row_set_takes_a_bit_a_row_at_a_million_rows() -> None:
    # GIVEN a million finished rows, in the bitmap and (for scale) in a set
    n = 1_000_000
    finished = RowSet(n)
    for row in range(1, n + 1):
        finished.add(row)
    as_set = set(range(1, n + 1))
    # THEN the bitmap holds them in an eighth of a byte each, where a set costs > 30 bytes
    assert len(finished) == n and n in finished and 0 not in finished and n + 1 not in finished
    assert sys.getsizeof(finished._bits) <= n // 8 + 100  # noqa: SLF001 - what it costs
    assert sys.getsizeof(as_set) > 30 * n
    # AND the rows missing from it come out in bulk
    finished.discard(7)
    finished.discard(n)
    assert [int(r) for chunk in finished.missing(n + 2, chunk=4096) for r in chunk] == [
        7, n, n + 1, n + 2
    ]


def journal_of(path: Path, n: int) -> Path:
    with open(path, "wb") as handle:
        handle.write(json.dumps(HEADER.as_record()).encode() + b"\n")
        handle.write(b"".join(encode(RowResult(r, f"user{r}", Status.UPDATED, attempts=1))
                              for r in range(1, n + 1)))
    return path


def scan_peak(path: Path) -> int:
    tracemalloc.start()
    state = read_journal(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert state is not None
    return peak


def test_scanning_a_journal_does_not_grow_per_row_like_a_dict(tmp_path: Path) -> None:
    # GIVEN journals of 10,000 and 100,000 finished rows
    small, large = journal_of(tmp_path / "s", 10_000), journal_of(tmp_path / "l", 100_000)
    # WHEN each is scanned, allocations traced
    grown = scan_peak(large) - scan_peak(small)
    # THEN 90,000 more rows cost some 36 kB more (measured: the bitmaps and their growth),
    # never the ~77 MB a dict of results (860 bytes a row) took, the ~5 MB of a set of ints,
    # nor even the 360 kB of an array of 4-byte row numbers: under 0.8 byte a row.
    # (tracemalloc sees every thread's allocations: in the full suite a daemon thread left by
    # an earlier test adds noise of some 10 kB, so the bound leaves room for it.)
    assert grown < 72_000, grown


def test_file_sha256(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert file_sha256(path) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_a_line_with_an_image_digest_reads_as_before_and_old_lines_have_none(
    tmp_path: Path,
) -> None:
    # GIVEN a journal with a line of the old shape (no image field) and one with a digest
    path = tmp_path / "r.csv.journal"
    header = JournalHeader("x", "s", "us-east-1_A", "eu-west-1")
    journal = Journal(path, header)
    journal.write(RowResult(1, "a", Status.UPDATED, attempts=1))
    journal.write(RowResult(2, "b", Status.UPDATED, attempts=1), "ab" * 16)
    journal.close()

    # WHEN read back  THEN both rows are finished, the result fields are as written, the
    # digest is there for the second only, and the header names the pool (not compared)
    state = read_journal(path)
    assert state is not None and 1 in state.finished and 2 in state.finished
    assert [r.username for r in state.records()] == ["a", "b"]
    assert [(row, image) for row, _, _, _, image in state.images()] == [(1, ""), (2, "ab" * 16)]
    assert (state.header.pool, state.header.region) == ("us-east-1_A", "eu-west-1")
    assert state.header == JournalHeader("x", "s")
