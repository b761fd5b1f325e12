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
