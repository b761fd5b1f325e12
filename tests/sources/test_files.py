"""Reading series from CSV and Parquet files."""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relia.errors import DataError
from relia.signals import SeriesIndex
from relia.sources.base import MetricSource
from relia.sources.files import FileSource, read_columns, read_series

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
T1990 = 631_152_000_000  # 1990-01-01T00:00:00Z
T1960 = -315_619_200_000  # 1960-01-01T00:00:00Z


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_iso_times_with_and_without_zone(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "a.csv",
        "Time,Value\n"
        "2024-01-01T00:00:00Z,1\n"
        "2024-01-01 00:00:01,2\n"
        "2024-01-01T02:00:02+02:00,3\n"
        "2024-01-01T00:00:03.250,4\n"
        "2024-01-01T00:00:04.5+0000,5\n"
        "2024-01-01T00:01,6\n"
        "2024-01-02,7\n",
    )
    f = read_series(p)
    assert f.time_col == "Time" and f.value_col == "Value" and f.path == p
    assert f.ts.dtype == np.int64 and f.values.dtype == np.float64
    expected = [T0, T0 + 1000, T0 + 2000, T0 + 3250, T0 + 4500, T0 + 60_000, T0 + 86_400_000]
    assert f.ts.tolist() == expected
    assert f.values.tolist() == [1, 2, 3, 4, 5, 6, 7]


def test_rare_iso_shapes_read_like_common_ones(tmp_path: Path) -> None:
    # A comma before the fraction, a week date and an offset with seconds are read by the
    # fallback parser; sub-millisecond digits are cut off there as in the common shapes.
    p = write(
        tmp_path,
        "rare.csv",
        "ts;value\n"
        "1969-12-31T23:59:59.9999Z;1\n"
        "1969-12-31T23:59:59,9999Z;2\n"
        "2024-01-01T00:00:00.9999Z;3\n"
        "2024-01-01T00:00:00,9999Z;4\n"
        "2024-W01-1T00:00:01;5\n"
        "2024-01-01T05:30:02.123456789+05:30:00;6\n",
    )
    f = read_series(p)
    assert f.ts.tolist() == [-1, -1, T0 + 999, T0 + 999, T0 + 1000, T0 + 2123]
    assert f.values.tolist() == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    ("stamps", "expected"),
    [
        (["1704067200", "1704067201"], [T0, T0 + 1000]),
        (["1704067200.5", "1704067201.25"], [T0 + 500, T0 + 1250]),
        ([str(T0), str(T0 + 7)], [T0, T0 + 7]),
        ([str(T0 * 1000), str(T0 * 1000 + 7000)], [T0, T0 + 7]),
        ([str(T0 * 1_000_000), str(T0 * 1_000_000 + 7_000_000)], [T0, T0 + 7]),
        (["631152000", "631152001"], [T1990, T1990 + 1000]),
        ([str(T1990), str(T1990 + 7)], [T1990, T1990 + 7]),
        ([str(T1990 * 1000), str(T1990 * 1000 + 7000)], [T1990, T1990 + 7]),
        ([str(T1990 * 10**6), str(T1990 * 10**6 + 7 * 10**6)], [T1990, T1990 + 7]),
        ([f"{T1990}.25", f"{T1990 + 7}.25"], [T1990, T1990 + 7]),
        ([f"{T1990 * 1000}.25", f"{T1990 * 1000 + 7000}.25"], [T1990, T1990 + 7]),
        ([str(T1960), str(T1960 + 7)], [T1960, T1960 + 7]),
        (["1704067200.0004", "1704067200.0009"], [T0, T0 + 1]),
        ([str(T0 * 10**6 + 3_999_999)], [T0 + 3]),
    ],
    ids=[
        "seconds",
        "fractional-seconds",
        "ms",
        "us",
        "ns",
        "seconds-1990",
        "ms-1990",
        "us-1990",
        "ns-1990",
        "fractional-ms-1990",
        "fractional-us-1990",
        "ms-before-1970",
        "fractions-round-to-nearest-ms",
        "ns-stay-exact",
    ],
)
def test_epoch_units_by_magnitude(tmp_path: Path, stamps: list[str], expected: list[int]) -> None:
    p = write(tmp_path, "e.csv", "ts,value\n" + "".join(f"{s},1\n" for s in stamps))
    assert read_series(p).ts.tolist() == expected


def test_the_smallest_int64_is_epoch_nanoseconds(tmp_path: Path) -> None:
    # np.abs of it overflows (stays negative): it read as seconds, times 1000 wrapped to 1970.
    p = write(tmp_path, "e.csv", "ts,value\n-9223372036854775808,1\n")
    assert read_series(p).ts.tolist() == [-9223372036854775808 // 1_000_000]


def test_a_whole_number_written_as_float_is_the_same_time(tmp_path: Path) -> None:
    stamp = str(T0 * 1000 + 999)  # microseconds
    as_int = read_series(write(tmp_path, "i.csv", f"ts,value\n{stamp},1\n"))
    as_float = read_series(write(tmp_path, "f.csv", f"ts,value\n{stamp}.0,1\n"))
    assert as_int.ts.tolist() == as_float.ts.tolist()


def test_spaces_around_times_are_ignored(tmp_path: Path) -> None:
    epoch = write(tmp_path, "e.csv", "ts, value\n 1704067200 , 1\n1704067201 ,2\n")
    assert read_series(epoch).ts.tolist() == [T0, T0 + 1000]
    iso = write(tmp_path, "i.csv", "ts, value\n 2024-01-01T00:00:00Z , 1\n 2024-W01-1 ,2\n")
    assert read_series(iso).ts.tolist() == [T0, T0]


def test_naive_rare_iso_shapes_are_utc_whatever_the_local_zone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        p = write(tmp_path, "w.csv", "ts,value\n2024-W01-1T00:00:01,1\n")
        assert read_series(p).ts.tolist() == [T0 + 1000]
    finally:
        monkeypatch.undo()
        time.tzset()


def test_empty_values_are_nan_and_kept_in_order(tmp_path: Path) -> None:
    p = write(tmp_path, "n.csv", "timestamp,value\n1,1.5\n2,\n3,NaN\n4, 7 \n5,inf\n")
    f = read_series(p)
    assert f.ts.tolist() == [1000, 2000, 3000, 4000, 5000]
    assert f.values[0] == 1.5 and np.isnan(f.values[1]) and np.isnan(f.values[2])
    assert f.values[3] == 7.0 and np.isinf(f.values[4])


def test_quoted_empty_and_blank_values_are_nan(tmp_path: Path) -> None:
    p = write(tmp_path, "q.csv", 'ts,value\n1,""\n2,"  "\n3,4\n')
    f = read_series(p)
    assert f.ts.tolist() == [1000, 2000, 3000]
    assert np.isnan(f.values[0]) and np.isnan(f.values[1]) and f.values[2] == 4.0


def test_column_names_case_insensitive_and_explicit(tmp_path: Path) -> None:
    p = write(tmp_path, "c.csv", "host,@Timestamp,Count,other\nx,10,1,9\ny,20,2,8\n")
    f = read_series(p)
    assert (f.time_col, f.value_col) == ("@Timestamp", "Count")
    g = read_series(p, time_col="@TIMESTAMP", value_col=" OTHER ")
    assert g.value_col == "other" and g.values.tolist() == [9.0, 8.0]


def test_an_exact_column_name_wins_over_one_in_another_case(tmp_path: Path) -> None:
    p = write(tmp_path, "c.csv", "ts,Value,value\n1,1,2\n")
    assert read_series(p).value_col == "value"
    assert read_series(p, value_col="Value").values.tolist() == [1.0]


def test_header_names_with_spaces_after_the_separator_are_found(tmp_path: Path) -> None:
    p = write(tmp_path, "s.csv", "host, ts, value\nx, 1, 2\n")
    f = read_series(p)
    assert (f.time_col, f.value_col) == (" ts", " value") and f.values.tolist() == [2.0]


def test_timestamp_is_preferred_over_date(tmp_path: Path) -> None:
    p = write(tmp_path, "d.csv", "date,timestamp,value\n2024-01-01,1704067205,1\n")
    f = read_series(p)
    assert f.time_col == "timestamp" and f.ts.tolist() == [T0 + 5000]


def test_the_same_column_for_time_and_value_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path, "a.csv", "ts,value\n1,2\n")
    with pytest.raises(DataError, match=r"a\.csv: time and value column are the same \('ts'\)"):
        read_series(p, time_col="ts", value_col="TS")


def test_a_chosen_column_whose_name_appears_twice_is_refused(tmp_path: Path) -> None:
    # Polars renames the second `value` to `value_duplicated_0`; taking the first silently
    # would score one of two columns without saying which.
    p = write(tmp_path, "d.csv", "timestamp,value,value\n2024-01-01T00:00:00,1,2\n")
    with pytest.raises(
        DataError, match=r"d\.csv: the header names 'value' twice \(columns 2 and 3\)"
    ):
        read_series(p)
    with pytest.raises(DataError, match=r"names 'value' twice"):
        read_series(p, value_col="value")
    q = write(tmp_path, "t.csv", "time,time,value\n1700000000,1700000000,3\n")
    with pytest.raises(DataError, match=r"t\.csv: the header names 'time' twice"):
        read_series(q, time_col="time")
    # A duplicated column that is not used is harmless.
    r = write(tmp_path, "u.csv", "timestamp,value,host,host\n1700000000,3,a,b\n")
    assert read_series(r).values.tolist() == [3.0]


def test_a_named_column_is_not_also_picked_for_the_other_role(tmp_path: Path) -> None:
    # `time` here is a response time: naming it the value leaves `date` as the time column.
    p = write(tmp_path, "r.csv", "date,time,status\n2024-01-01,12.5,200\n2024-01-02,7,500\n")
    f = read_series(p, value_col="time")
    assert (f.time_col, f.value_col) == ("date", "time")
    assert f.ts.tolist() == [T0, T0 + 86_400_000] and f.values.tolist() == [12.5, 7.0]
    # And the other way round: a time column named like a value is not the value as well.
    q = write(tmp_path, "v.csv", "value,y\n1700000000,3\n1700000060,4\n")
    g = read_series(q, time_col="value")
    assert (g.time_col, g.value_col) == ("value", "y") and g.values.tolist() == [3.0, 4.0]


def test_a_value_column_is_not_taken_for_the_time_by_elimination(tmp_path: Path) -> None:
    # `--value-col timestamp` left only `value` for the time: read as epoch seconds, it failed
    # later with "time goes back", far from the cause.
    p = write(tmp_path, "a.csv", "timestamp,value\n1700000000,5\n1700000060,3\n")
    with pytest.raises(
        DataError, match=r"a\.csv: column 'value' is named like a value, not a time; name the time"
    ):
        read_series(p, value_col="timestamp")
    with pytest.raises(DataError, match=r"column 'timestamp' is named like a time, not a value"):
        read_series(p, time_col="value")


def test_two_unnamed_columns_are_time_then_value(tmp_path: Path) -> None:
    p = write(tmp_path, "two.csv", "when,reading\n1700000000,3\n1700000060,4\n")
    f = read_series(p)
    assert (f.time_col, f.value_col) == ("when", "reading")
    assert f.values.tolist() == [3.0, 4.0]


@pytest.mark.parametrize(
    ("header", "time_col", "value_col"),
    [("value,when", "when", "value"), ("reading,ts", "ts", "reading")],
)
def test_two_columns_one_named_the_other_takes_the_other_role(
    tmp_path: Path, header: str, time_col: str, value_col: str
) -> None:
    p = write(tmp_path, "two.csv", f"{header}\n3,1700000000\n")  # time is the second column
    f = read_series(p)
    assert (f.time_col, f.value_col) == (time_col, value_col)
    assert f.ts.tolist() == [1_700_000_000_000] and f.values.tolist() == [3.0]


def test_tsv_and_semicolon_and_txt(tmp_path: Path) -> None:
    assert read_series(write(tmp_path, "a.tsv", "ts\tvalue\n1\t2\n")).values.tolist() == [2.0]
    assert read_series(write(tmp_path, "b.csv", "ts;value\n1;2\n")).values.tolist() == [2.0]
    assert read_series(write(tmp_path, "c.txt", "ts,value\n1,2\n")).values.tolist() == [2.0]
    assert read_series(write(tmp_path, "d.csv", "ts|value\n1|2\n")).values.tolist() == [2.0]


def test_file_suffix_case_does_not_matter(tmp_path: Path) -> None:
    assert read_series(write(tmp_path, "A.CSV", "ts,value\n1,2\n")).values.tolist() == [2.0]
    upper = tmp_path / "B.PARQUET"
    pl.DataFrame({"ts": [1], "value": [3.0]}).write_parquet(upper)
    assert read_series(upper).values.tolist() == [3.0]


def test_separator_comes_from_the_header_line(tmp_path: Path) -> None:
    # Commas in the data (or in a .tsv header) do not make the file comma-separated.
    semi = write(tmp_path, "s.csv", "ts;value;note\n1;2;a,b,c,d,e\n")
    assert read_series(semi).values.tolist() == [2.0]
    tsv = write(tmp_path, "t.tsv", "ts\tload (1m, 5m, 15m)\n1\t2\n")
    assert read_series(tsv).values.tolist() == [2.0]

    # Blank lines before the header are skipped when reading, so also when sniffing.
    late = write(tmp_path, "late.csv", "\n\nts;value\n1;2\n")
    assert read_series(late).values.tolist() == [2.0]
    late_crlf = write(tmp_path, "late.txt", "\r\nts\tvalue\r\n1\t2\r\n")
    assert read_series(late_crlf).values.tolist() == [2.0]
    # Lines ended by a carriage return alone (old Mac OS, some spreadsheet exports).
    cr_only = write(tmp_path, "mac.csv", "ts;value\r1;2\r2;3\r")
    assert read_series(cr_only).values.tolist() == [2.0, 3.0]


def test_utf8_byte_order_mark_is_not_part_of_the_first_name(tmp_path: Path) -> None:
    p = tmp_path / "bom.csv"
    p.write_bytes("\ufeffts,host,value\n1,x,2\n".encode())
    f = read_series(p)
    assert (f.time_col, f.value_col) == ("ts", "value") and f.ts.tolist() == [1000]


def test_blank_lines_are_skipped_but_lines_counted(tmp_path: Path) -> None:
    p = write(tmp_path, "b.csv", "ts,value\n1,1\n\n2,2\n\n3,oops\n")
    with pytest.raises(DataError) as err:
        read_series(p)
    msg = str(err.value)
    assert "row 3 (line 6)" in msg and "'oops'" in msg and str(p) in msg


def test_lines_of_only_spaces_or_separators_are_blank(tmp_path: Path) -> None:
    p = write(tmp_path, "b.csv", "ts,value\n1,1\n   \n,\n , \n2,2\n")
    f = read_series(p)
    assert f.ts.tolist() == [1000, 2000] and f.values.tolist() == [1.0, 2.0]


def test_a_file_not_in_utf8_still_gets_row_and_line(tmp_path: Path) -> None:
    p = tmp_path / "latin1.csv"
    p.write_bytes(b"ts,value,note\n1,1,caf\xe9\n2,oops,x\n")
    with pytest.raises(DataError) as err:
        read_series(p)
    assert str(err.value) == f"{p}: row 2 (line 3): non-numeric value 'oops' in column 'value'"


def test_a_field_too_long_to_rescan_still_names_file_and_row(tmp_path: Path) -> None:
    note = "x" * 200_000  # longer than the csv module's field limit
    p = write(tmp_path, "long.csv", f'ts,value,note\n1,1,"{note}"\n2,oops,y\n')
    with pytest.raises(DataError) as err:
        read_series(p)
    assert str(err.value) == f"{p}: row 2: non-numeric value 'oops' in column 'value'"


@pytest.mark.parametrize(
    ("text", "place"),
    [
        ('ts,value,note\n1,1,"two\nlines"\n2,oops,x\n', "row 2 (line 4)"),
        ('ts,value,note\n1,1,"a ""quoted""\n\nnote"\n\n2,oops,x\n', "row 2 (line 6)"),
        ("\n\nts,value\n1,1\n2,oops\n", "row 2 (line 5)"),
        ("\r\nts,value\r\n1,1\r\n\r\n2,oops\r\n", "row 2 (line 5)"),
        ("ts,value\r1,1\r\r2,oops\r", "row 2 (line 4)"),
    ],
    ids=["quoted-newline", "quoted-blank-line", "blank-lines-before-header", "crlf", "cr-only"],
)
def test_error_line_is_the_physical_line_of_the_row(tmp_path: Path, text: str, place: str) -> None:
    p = tmp_path / "q.csv"
    p.write_bytes(text.encode())
    with pytest.raises(DataError, match=re.escape(f"{p}: {place}: non-numeric value 'oops'")):
        read_series(p)


_blank_line = st.sampled_from(["", "  ", ",,", " , ,"])  # commas stand for the separator
_note = st.text(alphabet='ab \n",\x0c\u2028', max_size=8)  # form feed, line separator: not newlines


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    newline=st.sampled_from(["\n", "\r\n"]),
    sep=st.sampled_from([",", ";", "\t", "|"]),
    before_header=st.integers(0, 2),
    rows=st.lists(st.tuples(_note, st.lists(_blank_line, max_size=2)), min_size=1, max_size=8),
    data=st.data(),
)
def test_error_names_the_line_the_bad_row_starts_on(
    tmp_path: Path,
    newline: str,
    sep: str,
    before_header: int,
    rows: list[tuple[str, list[str]]],
    data: st.DataObject,
) -> None:
    bad = data.draw(st.integers(0, len(rows) - 1), label="bad row")
    text = newline * before_header + sep.join(["ts", "value", "note"]) + newline
    for i, (note, blanks_after) in enumerate(rows):
        if i == bad:
            bad_line = text.count("\n") + 1
        value = "oops" if i == bad else "1.5"
        quoted = '"' + note.replace('"', '""') + '"'
        text += sep.join([str(1_700_000_000 + i), value, quoted]) + newline
        text += "".join(blank.replace(",", sep) + newline for blank in blanks_after)
    p = tmp_path / "lines.csv"
    p.write_bytes(text.encode())
    with pytest.raises(DataError) as err:
        read_series(p)
    assert str(err.value) == (
        f"{p}: row {bad + 1} (line {bad_line}): non-numeric value 'oops' in column 'value'"
    )


def test_parquet_datetime_and_numbers(tmp_path: Path) -> None:
    naive = tmp_path / "naive.parquet"
    pl.DataFrame(
        {
            "timestamp": [dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, 0, 0, 1)],
            "value": [1, None],
        }
    ).write_parquet(naive)
    f = read_series(naive)
    assert f.ts.tolist() == [T0, T0 + 1000] and np.isnan(f.values[1])

    aware = tmp_path / "aware.pq"
    pl.DataFrame(
        {"time": [dt.datetime(2024, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))]}
    ).with_columns(pl.lit(2.5).alias("y")).write_parquet(aware)
    assert read_series(aware).ts.tolist() == [T0]

    epoch = tmp_path / "epoch.parquet"
    pl.DataFrame({"ts": [T0, T0 + 5], "val": [1.0, 2.0]}).write_parquet(epoch)
    assert read_series(epoch).ts.tolist() == [T0, T0 + 5]

    dates = tmp_path / "dates.parquet"
    pl.DataFrame({"date": [dt.date(2024, 1, 1)], "value": ["3"]}).write_parquet(dates)
    assert read_series(dates).ts.tolist() == [T0]


def test_parquet_errors_name_the_row_without_a_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.parquet"
    pl.DataFrame({"timestamp": [T0, None], "value": [1.0, 2.0]}).write_parquet(missing)
    with pytest.raises(DataError) as err:
        read_series(missing)
    assert str(err.value) == f"{missing}: row 2: missing time in column 'timestamp'"
    infinite = tmp_path / "inf.parquet"
    pl.DataFrame({"ts": [1.5, float("inf")], "value": [1.0, 2.0]}).write_parquet(infinite)
    with pytest.raises(DataError) as err:
        read_series(infinite)
    assert str(err.value) == f"{infinite}: row 2: unparsable time inf in column 'ts'"


def test_parquet_datetime_in_a_named_zone_is_the_same_instant(tmp_path: Path) -> None:
    p = tmp_path / "paris.parquet"
    pl.DataFrame({"timestamp": [dt.datetime(2024, 1, 1, 1)], "value": [1.0]}).with_columns(
        pl.col("timestamp").dt.replace_time_zone("Europe/Paris")
    ).write_parquet(p)
    assert read_series(p).ts.tolist() == [T0]  # 01:00 in Paris is midnight UTC


def test_parquet_boolean_values_are_zero_and_one(tmp_path: Path) -> None:
    p = tmp_path / "up.parquet"
    pl.DataFrame({"ts": [1, 2, 3], "value": [True, False, None]}).write_parquet(p)
    f = read_series(p)
    assert f.values[:2].tolist() == [1.0, 0.0] and np.isnan(f.values[2])


@pytest.mark.parametrize(
    ("frame", "fragment"),
    [
        ({"ts": [True], "value": [1.0]}, "time column 'ts' has unsupported type Boolean"),
        ({"ts": [1], "value": [[1, 2]]}, "value column 'value' has unsupported type List(Int64)"),
    ],
    ids=["boolean-time", "list-value"],
)
def test_parquet_column_of_an_unusable_type_is_a_data_error(
    tmp_path: Path, frame: dict[str, list[object]], fragment: str
) -> None:
    p = tmp_path / "odd.parquet"
    pl.DataFrame(frame).write_parquet(p)
    with pytest.raises(DataError) as err:
        read_series(p)
    assert str(err.value) == f"{p}: {fragment}"


def test_a_file_that_cannot_be_read_is_a_data_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> bytes:
        raise PermissionError(13, "Permission denied")

    csv_file = write(tmp_path, "a.csv", "ts,value\n1,2\n")
    parquet_file = tmp_path / "a.parquet"
    pl.DataFrame({"ts": [1], "value": [2.0]}).write_parquet(parquet_file)
    monkeypatch.setattr(Path, "read_bytes", refuse)
    monkeypatch.setattr(pl, "read_parquet", refuse)
    with pytest.raises(DataError) as err:
        read_series(csv_file)
    assert str(err.value) == f"{csv_file}: cannot read: Permission denied"
    with pytest.raises(DataError) as err:
        read_series(parquet_file)
    assert str(err.value) == f"{parquet_file}: cannot read Parquet: [Errno 13] Permission denied"


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("a.csv", "", "empty file"),
        ("a.csv", "\n\n", "empty file"),
        ("a.csv", " \n \n", "empty file"),
        ("a.csv", "\ufeff", "empty file"),
        ("a.csv", "ts,value\nnan,1\n", "row 1 (line 2): unparsable time nan in column 'ts'"),
        ("a.csv", "ts,value\n1,1\n1e300,1\n", "row 2 (line 3): time 1e+300 in column 'ts' is out"),
        # Past year 9999: formatting the output crashed (a Polars panic, a Python ValueError).
        ("a.csv", "ts,value\n1,1\n1e24,1\n", "row 2 (line 3): time '1e24' in column 'ts' is out"),
        ("a.csv", "ts,value\n", "no data rows"),
        ("a.csv", "a,b,c\n1,2,3\n", "columns are 'a', 'b', 'c'"),
        ("a.csv", "ts,value\nyesterday,1\n", "row 1 (line 2): unparsable time 'yesterday'"),
        ("a.csv", "ts,value\n1,2\n2,x1\n", "row 2 (line 3): non-numeric value 'x1'"),
        ("a.csv", "ts,value\n,2\n", "row 1 (line 2): missing time"),
        ("a.csv", 'ts,value\n"1,2\n', "line 2: a quoted field starts here and is never closed"),
        (
            "a.csv",
            'ts,value\n1,"a ""b"" c"\n2,3\n3,"4\n4,5\n',
            "line 4: a quoted field starts here and is never closed",
        ),
        # Polars' own message for this names no line.
        ("a.csv", "ts,value\n1,1\n2,3,4\n", "line 3: 3 fields, but the header has 2"),
        ("a.csv", "\nts;value\n1;1\n\n2;3;4;5\n", "line 5: 4 fields, but the header has 2"),
        ("a.json", "{}", "unknown format '.json'"),
        ("a.parquet", "not parquet", "cannot read Parquet"),
    ],
)
def test_bad_input_is_one_line_data_error(
    tmp_path: Path, name: str, text: str, fragment: str
) -> None:
    p = write(tmp_path, name, text)
    with pytest.raises(DataError) as err:
        read_series(p)
    msg = str(err.value)
    assert fragment in msg
    assert str(p) in msg
    assert "\n" not in msg


def test_missing_path_and_directory_and_unknown_column(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_series(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="not a file"):
        read_series(tmp_path)
    p = write(tmp_path, "a.csv", "ts,value\n1,2\n")
    with pytest.raises(DataError, match=r"no value column 'v'; columns are 'ts', 'value'"):
        read_series(p, value_col="v")
    with pytest.raises(DataError, match=r"no time column 'when'"):
        read_series(p, time_col="when")


# Cells drawn from things that look like times, numbers, junk and CSV syntax.
_cell = st.one_of(
    st.sampled_from(["", "1", "1.5", "NaN", "inf", "-3", "1e400", "nan", '"', '""', ",", " "]),
    st.sampled_from(["2024-01-01", "2024-01-01T00:00:00Z", "2024-13-45", "1704067200000"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\x00"), max_size=6),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
_csv = st.lists(st.lists(_cell, min_size=0, max_size=4), min_size=0, max_size=6).map(
    lambda rows: "\n".join(",".join(r) for r in rows)
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(header=st.sampled_from(["ts,value", "time,Value,x", "a,b", "Date;y", ""]), body=_csv)
def test_random_csv_parses_or_raises_data_error(tmp_path: Path, header: str, body: str) -> None:
    p = tmp_path / "fuzz.csv"
    p.write_text(f"{header}\n{body}" if header else body, encoding="utf-8")
    try:
        f = read_series(p)
    except DataError as exc:
        assert str(exc).startswith(f"{p}: ") and "\n" not in str(exc)
        return
    assert f.ts.dtype == np.int64 and f.values.dtype == np.float64
    assert len(f.ts) == len(f.values) > 0


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    header=st.sampled_from(["time,cpu,mem", "Time,a,host,b", "ts,value", "a,b", "time", ""]),
    body=_csv,
    value_cols=st.one_of(st.none(), st.lists(st.sampled_from(["cpu", "mem", "a", "b", "x"]))),
)
def test_random_wide_csv_reads_or_raises_data_error(
    tmp_path: Path, header: str, body: str, value_cols: list[str] | None
) -> None:
    p = tmp_path / "fuzz.csv"
    p.write_text(f"{header}\n{body}" if header else body, encoding="utf-8")
    try:
        frames = read_columns(p, value_cols=value_cols)
    except DataError as exc:
        assert str(exc).startswith(f"{p}: ") and "\n" not in str(exc)
        return
    assert frames and len({f.value_col for f in frames}) == len(frames)
    for f in frames:
        assert f.ts.dtype == np.int64 and f.values.dtype == np.float64
        assert len(f.ts) == len(f.values) == len(frames[0].ts) > 0


_epoch_ms = st.integers(10**11 + 1, 4_102_444_800_000)  # 1973 to 2100: read as milliseconds
_any_value = st.floats(allow_nan=True, allow_infinity=True)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(st.tuples(_epoch_ms, _any_value), min_size=1, max_size=20).map(
        lambda rows: sorted(rows, key=lambda row: row[0])  # stable: equal times keep their order
    ),
    layout=st.sampled_from(["csv-epoch", "csv-iso", "parquet-epoch", "parquet-datetime"]),
)
def test_a_series_written_out_reads_back_the_same(
    tmp_path: Path, rows: list[tuple[int, float]], layout: str
) -> None:
    ts = pl.Series("timestamp", [t for t, _ in rows], dtype=pl.Int64)
    if layout.endswith(("iso", "datetime")):
        ts = ts.cast(pl.Datetime("ms", "UTC"))
    frame = pl.DataFrame([ts, pl.Series("value", [v for _, v in rows], dtype=pl.Float64)])
    p = tmp_path / ("series.csv" if layout.startswith("csv") else "series.parquet")
    if layout.startswith("csv"):
        frame.write_csv(p)
    else:
        frame.write_parquet(p)
    f = read_series(p)
    assert f.ts.tolist() == [t for t, _ in rows]  # file order, equal times kept
    np.testing.assert_array_equal(f.values, np.array([v for _, v in rows], dtype=np.float64))


def test_file_source_polls_once(tmp_path: Path) -> None:
    p = write(tmp_path, "cpu_load.csv", "ts,value\n1,0.5\n2,0.7\n")
    index = SeriesIndex()
    source = FileSource(p, index)
    assert isinstance(source, MetricSource)
    assert source.name == "cpu_load"
    batch = source.poll(0)
    assert batch.ts.tolist() == [1000, 2000] and batch.value.tolist() == [0.5, 0.7]
    assert {index.name(int(s)) for s in batch.series_id} == {"cpu_load"}
    assert len(source.poll(1)) == 0
    named = FileSource(p, SeriesIndex(), name="files")
    assert named.name == "files"


def test_file_source_logs_what_reading_noted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = write(tmp_path, "a.csv", "ts,value\n" + "".join(f"{k},{k}\n" for k in (1, 2, 3, 2, 4)))
    with caplog.at_level("WARNING", logger="relia.sources.files"):
        assert FileSource(p, SeriesIndex()).poll(0).value.tolist() == [1, 2, 3, 2, 4]
    assert f"{p}: row 4 (line 5): time goes back" in caplog.text


def test_file_source_reads_again_after_a_failed_poll(tmp_path: Path) -> None:
    p = tmp_path / "late.csv"
    source = FileSource(p, SeriesIndex())
    with pytest.raises(DataError, match="no such file"):
        source.poll(0)
    p.write_text("ts,value\n1,0.5\n")
    assert source.poll(1).value.tolist() == [0.5]
    assert len(source.poll(2)) == 0


def test_file_source_series_is_named_after_the_file_and_uses_the_given_columns(
    tmp_path: Path,
) -> None:
    p = write(tmp_path, "cpu_load.csv", "when,reading,spare\n1,0.5,9\n2,0.7,8\n")
    index = SeriesIndex()
    source = FileSource(p, index, name="host-a", time_col="when", value_col="reading")
    batch = source.poll(0)
    assert batch.ts.tolist() == [1000, 2000] and batch.value.tolist() == [0.5, 0.7]
    assert {index.name(int(s)) for s in batch.series_id} == {"cpu_load"}


def test_a_parquet_datetime_past_year_9999_is_a_data_error(tmp_path: Path) -> None:
    # Read fine, then crashed when the output or summary formatted the time.
    p = tmp_path / "far.parquet"
    ms = pl.Series("ts", [1_700_000_000_000, 400_000_000_000_000]).cast(pl.Datetime("ms"))
    pl.DataFrame({"ts": ms, "value": [1.0, 2.0]}).write_parquet(p)
    with pytest.raises(DataError) as err:
        read_series(p)
    assert f"{p}: row 2: time " in str(err.value)
    assert "in column 'ts' is out of range" in str(err.value)


def test_a_file_whose_series_is_refused_gives_nothing(tmp_path: Path) -> None:
    p = write(tmp_path, "cpu_load.csv", "ts,value\n1,0.5\n2,0.7\n")
    index = SeriesIndex(max_series=1)
    kept = index.get_or_add("other")
    assert len(FileSource(p, index, name="files").poll(0)) == 0
    assert index.refused() == {"files": 1} and index.find("cpu_load") is None
    # A series known already is not refused.
    other = write(tmp_path, "other.csv", "ts,value\n1,0.5\n")
    assert FileSource(other, index).poll(0).series_id.tolist() == [kept]


def test_an_unfound_column_says_how_to_name_one_from_the_cli_and_python(tmp_path: Path) -> None:
    p = write(tmp_path, "a.csv", "a,b,c\n1,2,3\n")
    with pytest.raises(DataError, match=r"name one with --time-col \(time_col= in Python\)"):
        read_series(p)
    p = write(tmp_path, "b.csv", "timestamp,b,c\n1,2,3\n")
    with pytest.raises(DataError, match=r"name one with --value-col \(value_col= in Python\)"):
        read_series(p)


def test_a_file_whose_time_runs_backwards_is_refused_naming_the_row_and_line(
    tmp_path: Path,
) -> None:
    # A newest-first export was scored backwards in time: every forecast ran from the future.
    p = write(tmp_path, "a.csv", "ts,value\n4000,1\n3000,2\n3000,3\n1500,4\n")
    with pytest.raises(DataError, match=r"a\.csv: row 2 \(line 3\): time goes back") as err:
        read_series(p)
    assert "at 2 of 3 rows" in str(err.value) and "sort the file by time" in str(err.value)


def test_a_clock_stepping_back_once_is_kept_in_file_order_with_a_note(tmp_path: Path) -> None:
    # NAB's machine_temperature_system_failure.csv steps back an hour once in 22,695 rows (a
    # sensor clock set back); refusing the whole file for it helped nobody.
    rows = "".join(f"{1000 * k},{k}\n" for k in range(1, 201))
    p = write(tmp_path, "a.csv", "ts,value\n" + rows + "150000,201\n" + "201000,202\n")
    frame = read_series(p)
    assert frame.ts.tolist()[199:] == [200_000_000, 150_000_000, 201_000_000]  # epoch s
    assert frame.values.tolist()[-2:] == [201.0, 202.0]
    assert len(frame.notes) == 1
    assert frame.notes[0].startswith(f"{p}: row 201 (line 202): time goes back: ")
    assert frame.notes[0].endswith("once in the file; scored in file order")
    # More than one row in a hundred going back is no clock correction: refused.
    shuffled = "".join(f"{1000 * k},{k}\n{1000 * k - 1500},{k}\n" for k in range(2, 100, 10))
    q = write(tmp_path, "b.csv", "ts,value\n" + rows + shuffled)
    with pytest.raises(
        DataError, match=r"b\.csv: row 201 \(line 202\): time goes back at 11 of 219 rows"
    ):
        read_series(q)


def test_equal_times_are_kept_in_file_order(tmp_path: Path) -> None:
    p = write(tmp_path, "a.csv", "ts,value\n1000,1\n1000,2\n2000,3\n")
    frame = read_series(p)
    assert frame.values.tolist() == [1.0, 2.0, 3.0]


NAB = Path(
    os.environ.get("RELIA_NAB_DATA", Path(__file__).resolve().parents[3] / "shared/data/nab")
)


def test_every_nab_file_is_read_as_it_is_scored_by_the_benchmark() -> None:
    # A rule for files (time must not go back) once refused one of NAB's own files; users try
    # relia on NAB first.
    files = sorted((NAB / "data").glob("*/*.csv"))
    if not files:
        pytest.skip(f"NAB data not found at {NAB} (set RELIA_NAB_DATA)")
    noted = {}
    for path in files:
        frame = read_series(path)
        assert len(frame) == len(path.read_text().splitlines()) - 1, path
        assert np.isfinite(frame.values).all(), path
        if frame.notes:
            noted[path.name] = frame.notes
    assert len(files) == 58
    assert list(noted) == ["machine_temperature_system_failure.csv"]
    assert (
        "row 10150 (line 10151): time goes back: 2014-01-07T02:00:00Z"
        in noted["machine_temperature_system_failure.csv"][0]
    )


def _wide(tmp_path: Path, name: str = "wide.csv") -> Path:
    path = tmp_path / name
    path.write_text(
        "time,cpu,host,mem,errors\n"
        "2024-01-01T00:00:00Z,50.5,db-1,70,\n"
        "2024-01-01T00:01:00Z,51.0,db-1,71,3\n"
        "2024-01-01T00:02:00Z,49.5,db-1,,4\n"
    )
    return path


def test_read_columns_takes_every_column_of_numbers_in_file_order(tmp_path: Path) -> None:
    frames = read_columns(_wide(tmp_path))
    assert [f.value_col for f in frames] == ["cpu", "mem", "errors"]  # host is text: left out
    assert all(f.time_col == "time" for f in frames)
    assert frames[0].ts.tolist() == [1_704_067_200_000, 1_704_067_260_000, 1_704_067_320_000]
    np.testing.assert_array_equal(frames[1].values, [70.0, 71.0, np.nan])
    np.testing.assert_array_equal(frames[2].values, [np.nan, 3.0, 4.0])


def test_read_columns_named_is_what_read_series_reads_of_each(tmp_path: Path) -> None:
    path = _wide(tmp_path)
    frames = read_columns(path, value_cols=["errors", "CPU"])
    assert [f.value_col for f in frames] == ["errors", "cpu"]
    for frame in frames:
        alone = read_series(path, value_col=frame.value_col)
        np.testing.assert_array_equal(frame.ts, alone.ts)
        np.testing.assert_array_equal(frame.values, alone.values)


def test_read_columns_from_parquet(tmp_path: Path) -> None:
    path = tmp_path / "wide.parquet"
    pl.read_csv(_wide(tmp_path)).write_parquet(path)
    assert [f.value_col for f in read_columns(path)] == ["cpu", "mem", "errors"]


@pytest.mark.parametrize(
    ("text", "value_cols", "message"),
    [
        (
            "time,host\n2024-01-01,db-1\n",
            None,
            "no column of numbers besides the time column 'time'",
        ),
        ("cpu,mem,disk\n1,2,3\n", None, "no time column (looked for"),
        ("time,cpu\n2024-01-01,1\n", ["cpu", "cpu"], "value column 'cpu' is named twice"),
        ("time,cpu\n2024-01-01,1\n", [], "no value column named"),
        (
            "time,cpu,mem\n2024-01-01,1,2\n2024-01-02,x1,3\n",
            ["mem", "cpu"],
            "row 2 (line 3): non-numeric value 'x1' in column 'cpu'",
        ),
    ],
)
def test_read_columns_refuses_with_the_place(
    tmp_path: Path, text: str, value_cols: list[str] | None, message: str
) -> None:
    path = tmp_path / "w.csv"
    path.write_text(text)
    with pytest.raises(DataError) as info:
        read_columns(path, value_cols=value_cols)
    assert message in str(info.value), str(info.value)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    times=st.lists(_epoch_ms, min_size=1, max_size=12, unique=True).map(sorted),
    n_columns=st.integers(1, 4),
    text_at=st.integers(0, 4),
    data=st.data(),
    parquet=st.booleans(),
)
def test_a_wide_file_written_out_reads_back_column_by_column(
    tmp_path: Path,
    times: list[int],
    n_columns: int,
    text_at: int,
    data: st.DataObject,
    parquet: bool,
) -> None:
    names = [f"s{k}" for k in range(n_columns)]
    columns = {
        name: data.draw(st.lists(_any_value, min_size=len(times), max_size=len(times)), label=name)
        for name in names
    }
    frame = pl.DataFrame({"time": times, **columns})
    # A text column (a host name) somewhere among them is left out.
    frame = frame.insert_column(
        min(text_at, n_columns) + 1, pl.Series("host", ["db-1"] * len(times))
    )
    path = tmp_path / ("wide.parquet" if parquet else "wide.csv")
    frame.write_parquet(path) if parquet else frame.write_csv(path, float_precision=None)
    frames = read_columns(path)
    assert [f.value_col for f in frames] == names
    for f in frames:
        assert f.ts.tolist() == times
        np.testing.assert_array_equal(f.values, np.asarray(columns[f.value_col], dtype=np.float64))


def test_dash_reads_csv_from_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    text = b"time,cpu,mem\n2024-01-01T00:00:00Z,1,2\n2024-01-01T00:01:00Z,3,x\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text)))
    frame = read_series("-", value_col="cpu")
    assert frame.values.tolist() == [1.0, 3.0]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text)))
    frames = read_columns("-")
    assert [f.value_col for f in frames] == ["cpu"]
    assert frames[0].notes == (
        "<stdin>: column 'mem' left out: 'x' at row 2 (line 3) is not a number",
    )


def test_a_bad_cell_among_epoch_times_is_named_where_it_is(tmp_path: Path) -> None:
    # It was reported at row 1, quoting a valid epoch (the ISO fallback tried every cell).
    path = tmp_path / "t.csv"
    stamps = [str(1_700_000_000 + 60 * i) for i in range(1000)]
    stamps[700] = "#ERROR"
    path.write_text("timestamp,value\n" + "".join(f"{t},3\n" for t in stamps))
    with pytest.raises(DataError) as info:
        read_series(path)
    assert str(info.value) == (
        f"{path}: row 701 (line 702): unparsable time '#ERROR' in column 'timestamp' "
        "(the column holds epoch numbers)"
    )


def test_a_quoted_header_name_reads_as_csv_writes_it(tmp_path: Path) -> None:
    # Grafana quotes every series name with its labels; Polars kept the doubled quotes.
    path = tmp_path / "grafana.csv"
    path.write_text(
        '"Time","node_load1{instance=""a:9100"", job=""node""}","up"\n'
        "1700000000,1.5,1\n1700000060,2.5,1\n"
    )
    name = 'node_load1{instance="a:9100", job="node"}'
    assert [f.value_col for f in read_columns(path)] == [name, "up"]
    assert read_series(path, value_col=name).values.tolist() == [1.5, 2.5]


def test_read_columns_says_which_columns_it_leaves_out_and_why(tmp_path: Path) -> None:
    path = tmp_path / "mix.csv"
    path.write_text(
        'time,commit,cpu,empty,comma\n1700000000,a1f3c9e,1,,"1,5"\n1700000060,2741053,2,,"2,5"\n'
    )
    frames = read_columns(path)
    assert [f.value_col for f in frames] == ["cpu"]
    assert frames[0].notes == (
        f"{path}: column 'commit' left out: 'a1f3c9e' at row 1 (line 2) is not a number",
        f"{path}: column 'empty' left out: it holds no values",
        f"{path}: column 'comma' left out: '1,5' at row 1 (line 2) is not a number",
    )


def test_read_columns_leaves_out_an_empty_column_of_parquet_as_of_csv(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {"time": [1_700_000_000, 1_700_000_060], "cpu": [1.0, 2.0], "mem": [None, None]},
        schema_overrides={"mem": pl.Float64},
    )
    frame.write_parquet(tmp_path / "w.parquet")
    frame.write_csv(tmp_path / "w.csv")
    for name in ("w.parquet", "w.csv"):
        frames = read_columns(tmp_path / name)
        assert [f.value_col for f in frames] == ["cpu"], name
        assert frames[0].notes == (f"{tmp_path / name}: column 'mem' left out: it holds no values",)


@pytest.mark.parametrize(
    ("text", "noted"),
    [
        ("time,a,b\n1700000000,1,2\n1700000060,2\n", "line 3: 2 of 3 fields (cut off?)"),
        ("time\ta\tb\n1700000000\t1\t2\n1700000060\t2\t\n", None),  # an empty last field
        ("time,a,b\n1700000000,1,2\n1700000060,2,3\n\n", None),
        ("time,a,b\r\n1700000000,1,2\r\n\r\n1700000060,2\r\n", "line 4: 2 of 3 fields (cut off?)"),
        ('time,a,b\n1700000000,"1",2\n1700000060,2\n', "line 3: 2 of 3 fields (cut off?)"),
        # Short rows inside the file: the first is named, and how many there are.
        (
            "time,a,b\n1700000000,1\n1700000060,2,3\n1700000120,4\n1700000180,5,6\n",
            "line 2: 2 of 3 fields (2 short rows in all)",
        ),
        ("time,a,b\n1700000000,1\n1700000060,2,3\n", "line 2: 2 of 3 fields"),
        # With quotes: a separator or newline inside a quoted field is part of the field, and
        # the line named counts the newlines inside quoted fields.
        (
            'time,a,b\n1700000000,1\n1700000060,2,"x,y"\n1700000120,3,"two\nlines"\n',
            "line 2: 2 of 3 fields",
        ),
        (
            'time,a,b\n1700000000,1,"two\nlines"\n1700000060,2\n1700000120,3,"a ""q"", b"\n',
            "line 4: 2 of 3 fields",
        ),
        ('time,a,b\n1700000000,1,"x,y"\n1700000060,2,"multi\nline, too"\n', None),
    ],
)
def test_a_row_cut_short_is_noted(tmp_path: Path, text: str, noted: str | None) -> None:
    # An export interrupted mid-row, or rows that lack fields; their missing fields read as
    # empty, as before, but it is said.
    path = tmp_path / ("w.tsv" if "\t" in text else "w.csv")
    path.write_text(text)
    notes = read_series(path, value_col="a").notes
    if noted is None:
        assert notes == ()
    else:
        assert notes == (f"{path}: {noted}; the missing ones read as empty",)


def test_read_columns_reads_a_two_column_file_as_read_series_does(tmp_path: Path) -> None:
    path = tmp_path / "w.csv"
    path.write_text("when,a\n1700000000,1\n1700000060,2\n")
    (frame,) = read_columns(path)
    assert (frame.time_col, frame.value_col) == ("when", "a")
    np.testing.assert_array_equal(frame.values, read_series(path).values)
