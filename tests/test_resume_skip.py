"""A resume reads the input from after its carried prefix (issue 22 item 4): the rows it
gets are exactly those a full read gives past that row, whatever the file holds."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch.inputs.reader import iter_rows, open_input
from batch.inputs.source import csv_row_offset

TRICKY = (
    '\ufeffusername,"note\nwith newline"\r\n'
    "\r\n"
    'a1,"x\n\ny"\r\n'
    '""\r\n'
    "a2,plain\r\n"
    "\n"
    'a3,"he said ""hi"""\r\n'
    "a4,short,extra\r\n"
    'a5,"multi\r\nline"\r\n'
    "a6,last"
)


@pytest.mark.parametrize("after", range(0, 7))
def test_rows_after_a_prefix_are_the_full_reads(tmp_path: Path, after: int) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(TRICKY.encode("utf-8"))
    source = open_input(path)
    full = [r for r in iter_rows(source) if r.row > after]
    assert len(list(iter_rows(source))) == 6
    # the skip is taken (not the fallback) and gives the same rows
    assert after == 0 or csv_row_offset(source, after + 1, 6) is not None or after == 6
    assert list(iter_rows(source, after=after, rows=6)) == full


def test_a_file_the_byte_count_disagrees_with_is_read_from_the_start(tmp_path: Path) -> None:
    # GIVEN a quote inside an unquoted field (the csv module reads it as a character)
    path = tmp_path / "in.csv"
    path.write_text('username,v\nb1,ab"c\nb2,x\nb3,y"z\nb4,w\n', encoding="utf-8")
    source = open_input(path)
    rows = list(iter_rows(source))
    assert len(rows) == 4
    # THEN the byte skip refuses (its count differs), and the rows are still right
    assert csv_row_offset(source, 3, 4) is None
    assert list(iter_rows(source, after=2, rows=4)) == rows[2:]


def test_parquet_skips_whole_row_groups(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    table = pa.table({"username": [f"u{i}" for i in range(1, 101)], "n": list(range(1, 101))})
    pq.write_table(table, path, row_group_size=16)
    source = open_input(path)
    for after in (0, 15, 16, 17, 64, 99, 100):
        got = list(iter_rows(source, after=after))
        assert [r.row for r in got] == list(range(after + 1, 101))
        assert all(r.values["username"] == f"u{r.row}" for r in got)
