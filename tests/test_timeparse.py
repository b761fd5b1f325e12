from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from relia.timeparse import format_ms, format_ms_column, parse_time

NOW = 1_700_000_000_000


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("now", NOW),
        ("now-1h", NOW - 3_600_000),
        ("-30m", NOW - 1_800_000),
        ("1700000000", NOW),
        ("1700000000000", NOW),
        ("2023-11-14T22:13:20Z", NOW),
        ("2023-11-14 22:13:20", NOW),
        ("2023-11-14T23:13:20+01:00", NOW),
        # Digits past the millisecond are cut, as the file readers and Prometheus cut them.
        ("2023-11-14T22:13:20.0009Z", NOW),
        ("2023-11-14T22:13:20.999999Z", NOW + 999),
        ("1969-12-31T23:59:59.9995Z", -1),
    ],
)
def test_parse_time(text: str, ms: int) -> None:
    assert parse_time(text, now_ms=NOW) == ms


@given(st.integers(min_value=0, max_value=4_000_000_000_000))
def test_format_then_parse_round_trips(ms: int) -> None:
    assert parse_time(format_ms(ms), now_ms=NOW) == ms


@given(st.datetimes(timezones=st.just(UTC)))
def test_an_iso_time_is_its_millisecond_floor(moment: datetime) -> None:
    exact = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert parse_time(moment.isoformat(), now_ms=NOW) == exact


@given(st.text(max_size=30))
def test_anything_parses_or_raises_value_error(text: str) -> None:
    try:
        parse_time(text, now_ms=NOW)
    except ValueError:
        pass


@given(
    st.lists(st.integers(min_value=-2_000_000_000_000, max_value=4_000_000_000_000), max_size=50)
)
def test_column_formatting_matches_one_by_one(values: list[int]) -> None:
    assert format_ms_column(np.array(values, dtype=np.int64)).to_list() == [
        format_ms(v) for v in values
    ]


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        # "now" in any case and with spaces around, as typed on a command line.
        ("NOW", NOW),
        ("  Now ", NOW),
        (" -1h ", NOW - 3_600_000),
        ("now - 1h", NOW - 3_600_000),
        ("NOW-1H", NOW - 3_600_000),
        # Forward in time too.
        ("now+1h", NOW + 3_600_000),
        ("+30m", NOW + 1_800_000),
        # A relative duration is rounded to the nearest millisecond, not cut.
        ("now-2.6ms", NOW - 3),
        # A signed number is an epoch time (before or after 1970), not a duration from now.
        ("-86400", -86_400_000),
        ("+5", 5_000),
        ("-1.5", -1_500),
        # Seconds below 1e11, milliseconds from it on; by magnitude, so before 1970 as well.
        ("99999999999", 99_999_999_999_000),
        ("100000000000", 100_000_000_000),
        ("-100000000000", -100_000_000_000),
        ("-9999999999", -9_999_999_999_000),
        # A fraction of a millisecond rounds.
        ("1700000000000.7", NOW + 1),
        ("1700000000.0006", NOW + 1),
    ],
)
def test_parse_time_forms(text: str, ms: int) -> None:
    assert parse_time(text, now_ms=NOW) == ms


@pytest.mark.parametrize("text", ["nan", "inf", "Infinity", "1e400"])
def test_a_number_that_is_no_time_is_refused_by_name(text: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_time(text, now_ms=NOW)
    assert str(err.value) == f"not a time: {text!r}"


@given(st.one_of(st.text(max_size=30), st.floats(allow_nan=False).map(repr)))
def test_whatever_parses_is_a_time_that_can_be_formatted(text: str) -> None:
    try:
        ms = parse_time(text, now_ms=NOW)
    except ValueError:
        return
    format_ms(ms)


# -99999999999 s would be year -1199: no datetime, no Prometheus time.
@pytest.mark.parametrize("text", ["1e30", "1e20", "-99999999999", "-100000000000000000"])
def test_an_epoch_number_past_the_years_1_to_9999_is_refused(text: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_time(text, now_ms=NOW)
    assert str(err.value) == f"not a time: {text!r} is out of range (years 1 to 9999)"


def test_a_bad_time_says_what_forms_work() -> None:
    with pytest.raises(ValueError) as err:
        parse_time("yesterday", now_ms=NOW)
    assert str(err.value) == (
        "not a time: 'yesterday' (use ISO-8601, epoch seconds, 'now' or 'now-1h')"
    )


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (NOW, "2023-11-14T22:13:20Z"),
        (NOW + 5, "2023-11-14T22:13:20.005Z"),
        (NOW + 500, "2023-11-14T22:13:20.500Z"),
        (NOW + 999, "2023-11-14T22:13:20.999Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (0, "1970-01-01T00:00:00Z"),
    ],
)
def test_format_ms(ms: int, text: str) -> None:
    assert format_ms(ms) == text
    assert format_ms_column(np.array([ms], dtype=np.int64)).to_list() == [text]


@pytest.mark.parametrize(
    ("text", "iso"),
    [("20240101", "2024-01-01T00:00:00Z"), (" 19991231 ", "1999-12-31T00:00:00Z")],
)
def test_eight_digits_are_the_iso_basic_date(text: str, iso: str) -> None:
    # Read as epoch seconds, 20240101 was 1970-08-23 (and thousands of query_range requests).
    assert format_ms(parse_time(text, now_ms=NOW)) == iso


def test_eight_digits_that_are_no_date_are_refused_saying_how_they_were_read() -> None:
    with pytest.raises(ValueError, match=r"'20241399' \(eight digits are read as a date, YYYYMMDD"):
        parse_time("20241399", now_ms=NOW)
    assert parse_time("20241399.0", now_ms=NOW) == 20_241_399_000


@pytest.mark.parametrize(
    ("text", "ms"),
    [("now-1h30m", NOW - 5_400_000), ("-2m30s", NOW - 150_000), ("now-0s", NOW), ("now+0", NOW)],
)
def test_a_relative_time_takes_every_duration_relia_yaml_takes(text: str, ms: int) -> None:
    assert parse_time(text, now_ms=NOW) == ms
