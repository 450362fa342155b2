"""Reading CSV and Parquet: values exactly as written, row numbers, and clean input errors."""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch.errors import InputError
from batch.inputs.reader import (
    InputSource,
    iter_column,
    iter_rows,
    open_input,
    read_header,
    to_cognito_string,
)
from batch.models import InputRow


def csv_file(tmp_path: Path, data: str | bytes, name: str = "in.csv") -> Path:
    path = tmp_path / name
    if isinstance(data, str):
        path.write_bytes(data.encode("utf-8"))
    else:
        path.write_bytes(data)
    return path


def rows_of(path: Path, **kwargs: str) -> list[InputRow]:
    return list(iter_rows(open_input(path, **kwargs)))


def parquet_file(tmp_path: Path, table: pa.Table, name: str = "in.parquet") -> Path:
    path = tmp_path / name
    pq.write_table(table, path)
    return path


# -- CSV values ------------------------------------------------------------------------------


def test_csv_values_are_kept_exactly_as_written(tmp_path: Path) -> None:
    # GIVEN values a type-guessing reader would mangle
    path = csv_file(
        tmp_path,
        "username,zip,phone,score,note,flag,name\n"
        'u1,02134,+15555550100,NaN,null,true," spaced "\n',
    )

    # WHEN it is read
    [row] = rows_of(path)

    # THEN every value is the text in the file
    assert row.values == {
        "username": "u1", "zip": "02134", "phone": "+15555550100", "score": "NaN",
        "note": "null", "flag": "true", "name": " spaced ",
    }
    assert row.error is None


def test_csv_bom_is_stripped_from_the_first_column_name(tmp_path: Path) -> None:
    path = csv_file(tmp_path, b"\xef\xbb\xbfusername,email\nu1,a@example.com\n")
    assert read_header(open_input(path)) == ["username", "email"]
    assert rows_of(path)[0].values["username"] == "u1"


def test_csv_quoted_commas_quotes_and_newlines(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        'username,address,nickname\nu1,"1 Main St, Apt 2\nSpringfield","say ""hi"""\n',
    )
    [row] = rows_of(path)
    assert row.values["address"] == "1 Main St, Apt 2\nSpringfield"
    assert row.values["nickname"] == 'say "hi"'


def test_csv_custom_delimiter(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "login;mail\nu1;a,b@example.com\n")
    source = open_input(path, delimiter=";")
    assert read_header(source) == ["login", "mail"]
    assert [r.values for r in iter_rows(source)] == [{"login": "u1", "mail": "a,b@example.com"}]


def test_csv_crlf_line_endings(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "username,given_name\r\nu1,Ada\r\nu2,Grace\r\n")
    assert [r.values["given_name"] for r in rows_of(path)] == ["Ada", "Grace"]


# -- CSV row numbers -------------------------------------------------------------------------


def test_csv_rows_are_numbered_from_one_after_the_header(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "username\nu1\nu2\nu3\n")
    assert [(r.row, r.values["username"]) for r in rows_of(path)] == [
        (1, "u1"), (2, "u2"), (3, "u3")]


def test_csv_row_numbers_count_data_rows_not_lines(tmp_path: Path) -> None:
    # GIVEN a quoted field over three lines and blank lines between rows
    path = csv_file(
        tmp_path,
        '\nusername,address\n\nu1,"line 1\nline 2\nline 3"\n\n\nu2,x\nu3,"a\nb"\nu4,y\n',
    )

    # WHEN it is read
    rows = rows_of(path)

    # THEN rows are numbered 1..4 whatever lines they start on
    assert [(r.row, r.values["username"]) for r in rows] == [
        (1, "u1"), (2, "u2"), (3, "u3"), (4, "u4")]


def test_csv_ragged_row_becomes_that_rows_error(tmp_path: Path) -> None:
    # GIVEN a row with a missing field and one with an extra field
    path = csv_file(tmp_path, "username,a,b\nu1,1,2\nu2,1\nu3,1,2,3\nu4,1,2\n")

    # WHEN it is read
    rows = rows_of(path)

    # THEN those rows carry an error naming the field counts, and reading goes on
    assert [r.row for r in rows] == [1, 2, 3, 4]
    assert rows[0].error is None and rows[3].error is None
    assert rows[1].error == "row has 2 fields, the header has 3"
    assert rows[2].error == "row has 4 fields, the header has 3"
    # AND they hold no values: which field is which column is unknown once one is missing
    assert rows[1].values == {} and rows[2].values == {}


# -- CSV errors ------------------------------------------------------------------------------


def test_empty_file_is_an_input_error_naming_the_file(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "")
    with pytest.raises(InputError) as info:
        read_header(open_input(path))
    assert info.value.path == str(path)
    assert str(path) in str(info.value)
    assert "empty" in str(info.value)


def test_blank_lines_only_is_an_empty_file(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "\n\n\r\n")
    with pytest.raises(InputError, match="empty"):
        read_header(open_input(path))


def test_header_only_file_has_a_header_and_no_rows(tmp_path: Path) -> None:
    # A header with no data is a valid, empty input (zero rows to report), not an error.
    path = csv_file(tmp_path, "username,email\n")
    assert read_header(open_input(path)) == ["username", "email"]
    assert rows_of(path) == []


def test_duplicate_column_name_is_an_input_error_naming_the_positions(tmp_path: Path) -> None:
    # GIVEN a header-less file whose first row repeats a value (read as column names)
    path = csv_file(tmp_path, "u1,+15550001111,+15550001111\nu2,a,b\n")
    # WHEN its header is read
    with pytest.raises(InputError) as info:
        read_header(open_input(path))
    # THEN the error names the file and the positions, never the cell text
    assert (info.value.path, info.value.row) == (str(path), 0)
    assert "duplicate column name: columns 2 and 3" in str(info.value)
    assert "+1555" not in str(info.value)


def test_empty_column_name_is_an_input_error(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "username,,email\nu1,a,b\n")
    with pytest.raises(InputError) as info:
        read_header(open_input(path))
    assert info.value.row == 0
    assert "column 2" in str(info.value)


def test_non_utf8_bytes_are_an_input_error_with_a_row(tmp_path: Path) -> None:
    path = csv_file(tmp_path, b"username,given_name\nu1,Ana\nu2,Jos\xe9\n")
    with pytest.raises(InputError) as info:
        rows_of(path)
    assert info.value.row is not None
    assert "UTF-8" in str(info.value)


def test_non_utf8_error_names_the_row_that_holds_the_byte(tmp_path: Path) -> None:
    # GIVEN 2,000 good rows except row 1,500, which is Latin-1
    lines = [b"username,given_name\n"] + [b"u%d,Name%d\n" % (i, i) for i in range(1, 2001)]
    lines[1500] = b"u1500,Jos\xe9\n"
    path = csv_file(tmp_path, b"".join(lines))

    # WHEN the rows are read
    with pytest.raises(InputError) as info:
        rows_of(path)

    # THEN the error names row 1,500
    assert info.value.row == 1500


def test_a_bad_byte_in_a_data_row_does_not_break_the_header(tmp_path: Path) -> None:
    path = csv_file(tmp_path, b"username,given_name\nu1,Ana\nu2,Jos\xe9\n")
    assert read_header(open_input(path)) == ["username", "given_name"]


def test_a_parquet_file_named_csv_says_it_looks_like_parquet(tmp_path: Path) -> None:
    # GIVEN a Parquet file with a .csv name
    real = parquet_file(tmp_path, pa.table({"username": ["u1"], "n": [1.5]}))
    fake_csv = tmp_path / "users.csv"
    fake_csv.write_bytes(real.read_bytes())

    # WHEN it is read as CSV
    with pytest.raises(InputError) as info:
        read_header(open_input(fake_csv))

    # THEN the error says it looks like Parquet
    assert "Parquet" in str(info.value)
    assert info.value.path == str(fake_csv)


def test_a_csv_file_named_parquet_is_an_input_error(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "username\nu1\n", name="users.parquet")
    with pytest.raises(InputError) as info:
        read_header(open_input(path))
    assert "Parquet" in str(info.value)
    assert info.value.path == str(path)


def test_format_flag_wins_over_the_suffix(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "username\nu1\n", name="users.parquet")
    assert open_input(path, format="CSV").format == "csv"


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.csv", "csv"), ("a.TSV", "csv"), ("a.txt", "csv"), ("a.parquet", "parquet"),
     ("a.pq", "parquet"), ("a.csv.parquet", "parquet")],
)
def test_format_from_suffix(tmp_path: Path, name: str, fmt: str) -> None:
    path = csv_file(tmp_path, "x", name=name)
    assert open_input(path).format == fmt


def test_open_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        open_input(tmp_path / "missing.csv")
    unknown = csv_file(tmp_path, "x", name="users.xlsx")
    with pytest.raises(InputError, match="cannot tell the format"):
        open_input(unknown)
    with pytest.raises(InputError, match="unknown format"):
        open_input(unknown, format="xlsx")
    with pytest.raises(InputError, match="one character"):
        open_input(csv_file(tmp_path, "x"), delimiter=";;")


# -- Parquet ---------------------------------------------------------------------------------


def test_parquet_typed_columns_become_cognito_strings(tmp_path: Path) -> None:
    # GIVEN typed columns, with nulls where a column allows them
    utc = dt.UTC
    table = pa.table({
        "username": pa.array(["u1", "u2"]),
        "active": pa.array([True, False]),
        "level": pa.array([7, -3], pa.int64()),
        "level_null": pa.array([7, None], pa.int64()),
        "level_float": pa.array([7.0, None], pa.float64()),  # ints with nulls, via pandas
        "score": pa.array([1.5, float("nan")]),
        "born": pa.array([dt.date(1990, 1, 2), dt.date(2024, 2, 29)]),
        "seen": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=utc),
                          dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=utc)],
                         pa.timestamp("us", tz="UTC")),
        "local": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5), None], pa.timestamp("s")),
        "nickname": pa.array(["x", None]),
        "zip": pa.array(["02134", ""]),
    })
    path = parquet_file(tmp_path, table)

    # WHEN it is read
    rows = rows_of(path)

    # THEN values are in Cognito's string forms
    assert [r.row for r in rows] == [1, 2]
    assert rows[0].values == {
        "username": "u1", "active": "true", "level": "7", "level_null": "7",
        "level_float": "7", "score": "1.5", "born": "1990-01-02",
        "seen": "2024-01-02T03:04:05Z", "local": "2024-01-02T03:04:05", "nickname": "x",
        "zip": "02134",
    }
    assert rows[1].values == {
        "username": "u2", "active": "false", "level": "-3", "level_null": "",
        "level_float": "", "score": "", "born": "2024-02-29",
        "seen": "2024-01-02T03:04:05.123456Z", "local": "", "nickname": "", "zip": "",
    }


def test_parquet_timestamp_in_another_zone_keeps_its_offset(tmp_path: Path) -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    table = pa.table({"username": ["u1"],
                      "t": pa.array([dt.datetime(2024, 1, 2, 12, 0, tzinfo=paris)],
                                    pa.timestamp("s", tz="+01:00"))})
    [row] = rows_of(parquet_file(tmp_path, table))
    assert row.values["t"] == "2024-01-02T12:00:00+01:00"


def test_parquet_decimals(tmp_path: Path) -> None:
    table = pa.table({"username": ["u1", "u2"],
                      "d": pa.array([decimal.Decimal("7.00"), decimal.Decimal("12.50")],
                                    pa.decimal128(6, 2))})
    assert [r.values["d"] for r in rows_of(parquet_file(tmp_path, table))] == ["7", "12.50"]


@pytest.mark.parametrize(
    ("column", "array"),
    [
        ("tags", pa.array([["a", "b"]], pa.list_(pa.string()))),
        ("blob", pa.array([b"\x00\x01"], pa.binary())),
        ("where", pa.array([{"lat": 1.0}], pa.struct([("lat", pa.float64())]))),
    ],
)
def test_parquet_nested_or_binary_columns_are_an_input_error(
    tmp_path: Path, column: str, array: pa.Array
) -> None:
    path = parquet_file(tmp_path, pa.table({"username": ["u1"], column: array}))
    with pytest.raises(InputError) as info:
        read_header(open_input(path))
    assert info.value.column == column
    assert repr(column) in str(info.value)
    with pytest.raises(InputError):
        rows_of(path)


def test_parquet_many_batches_keep_row_order_and_numbers(tmp_path: Path) -> None:
    names = [f"u{i}" for i in range(1, 5001)]
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"username": names}), path, row_group_size=1000)
    rows = rows_of(path)
    assert [r.row for r in rows] == list(range(1, 5001))
    assert [r.values["username"] for r in rows] == names


# -- iter_column -----------------------------------------------------------------------------


def test_iter_column_on_csv(tmp_path: Path) -> None:
    path = csv_file(tmp_path, 'username,x\nu1,1\n\nu2,"a\nb"\n,3\nu4,4\n')
    assert list(iter_column(open_input(path), "username")) == ["u1", "u2", "", "u4"]


def test_iter_column_on_parquet(tmp_path: Path) -> None:
    path = parquet_file(tmp_path, pa.table({"username": ["u1", None, "u3"], "n": [1, 2, 3]}))
    assert list(iter_column(open_input(path), "username")) == ["u1", "", "u3"]
    assert list(iter_column(open_input(path), "n")) == ["1", "2", "3"]


def test_iter_column_agrees_with_iter_rows(tmp_path: Path) -> None:
    # The key scan and the row pass must see the same rows in the same order.
    path = csv_file(tmp_path, 'username,a\n"u\n1",x\nu2\nu3,y\n')
    source = InputSource(path, "csv")
    assert list(iter_column(source, "username")) == [
        r.values.get("username", "") for r in iter_rows(source)]


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, ""), (True, "true"), (False, "false"), (0, "0"), (7.0, "7"), (-2.0, "-2"),
     (0.1, "0.1"), (1e20, "100000000000000000000"), (float("nan"), ""),
     (dt.time(9, 30), "09:30:00"), (b"caf\xc3\xa9", "café")],
)
def test_to_cognito_string(value: object, text: str) -> None:
    assert to_cognito_string(value) == text
