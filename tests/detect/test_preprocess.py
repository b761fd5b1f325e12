"""Counters turned into rates: reset-aware like Prometheus' rate(), one row per input row."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relia.detect.preprocess import counter_increase, counter_to_rate
from relia.errors import DataError

T0 = 1_700_000_000_000


def test_rate_per_second_with_the_first_row_nan() -> None:
    ts = T0 + np.array([0, 10_000, 20_000, 40_000])
    out_ts, rate = counter_to_rate(ts, [100.0, 150.0, 150.0, 250.0])
    np.testing.assert_array_equal(out_ts, ts)
    np.testing.assert_allclose(rate, [np.nan, 5.0, 0.0, 5.0])


def test_a_decrease_is_a_reset_counted_from_zero() -> None:
    ts = T0 + 1000 * np.arange(5)
    _, rate = counter_to_rate(ts, [10.0, 20.0, 3.0, 7.0, 7.0])
    # 20 -> 3: the counter restarted, so it grew by 3 (not -17) in that second.
    np.testing.assert_allclose(rate, [np.nan, 10.0, 3.0, 4.0, 0.0])


def test_missing_values_spread_the_increase_over_the_gap() -> None:
    ts = T0 + 1000 * np.arange(6)
    _, rate = counter_to_rate(ts, [np.nan, 0.0, np.nan, np.inf, 30.0, 31.0])
    # Row 4 is 3 s after the last finite value (row 1): 30 / 3 s.
    np.testing.assert_allclose(rate, [np.nan, np.nan, np.nan, np.nan, 10.0, 1.0])


def test_timestamps_not_moving_forward_give_no_rate() -> None:
    ts = T0 + np.array([0, 1000, 1000, 500, 3000])
    _, rate = counter_to_rate(ts, [0.0, 2.0, 4.0, 5.0, 15.0])
    np.testing.assert_allclose(rate, [np.nan, 2.0, np.nan, np.nan, 4.0])


def test_empty_and_single_point() -> None:
    ts, rate = counter_to_rate(np.array([], dtype=np.int64), np.array([]))
    assert ts.dtype == np.int64 and len(rate) == 0
    _, rate = counter_to_rate([T0], [5.0])
    assert np.isnan(rate).all()


@pytest.mark.parametrize(
    ("ts", "values"), [([1, 2], [1.0]), ([[1, 2]], [[1.0, 2.0]])], ids=["length", "shape"]
)
def test_bad_shapes_are_data_errors(ts: list[object], values: list[object]) -> None:
    with pytest.raises(DataError):
        counter_to_rate(ts, values)


def test_counter_increase_elementwise() -> None:
    got = counter_increase([1.0, 5.0, np.nan, 2.0], [3.0, 2.0, 1.0, np.nan])
    np.testing.assert_allclose(got, [2.0, 2.0, np.nan, np.nan])


@st.composite
def _counter_with_resets(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, float]:
    """A monotone counter with restarts: (ts, values, its true total increase).

    Each step the counter grows by ``inc``; at a restart the new process has counted only
    ``inc`` since it started, so the value falls to ``inc``. A restart is drawn only where that
    is a fall (a restart that ends above the old value cannot be seen, by anyone)."""
    n = draw(st.integers(2, 60))
    steps = draw(st.lists(st.integers(1, 120_000), min_size=n, max_size=n))
    incs = draw(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=n, max_size=n))
    restarts = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    ts = T0 + np.cumsum(steps).astype(np.int64)
    values = np.empty(n)
    values[0] = draw(st.floats(0, 1e9, allow_nan=False))
    for i in range(1, n):
        restart = restarts[i] and incs[i] < values[i - 1]
        values[i] = incs[i] if restart else values[i - 1] + incs[i]
    return ts, values, float(sum(incs[1:]))


@settings(max_examples=300, deadline=None)
@given(_counter_with_resets())
def test_sum_of_rate_times_dt_is_the_total_increase(
    case: tuple[np.ndarray, np.ndarray, float],
) -> None:
    ts, values, true = case
    out_ts, rate = counter_to_rate(ts, values)
    np.testing.assert_array_equal(out_ts, ts)
    assert np.isnan(rate[0]) and np.isfinite(rate[1:]).all()
    assert (rate[1:] >= 0).all()
    total = float(np.sum(rate[1:] * np.diff(ts) / 1000.0))
    assert total == pytest.approx(true, rel=1e-9, abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 1e6, allow_nan=False), st.booleans()), min_size=2, max_size=50)
)
def test_missing_samples_lose_no_increase(steps: list[tuple[float, bool]]) -> None:
    values = np.cumsum([inc for inc, _ in steps])
    values[[missing for _, missing in steps]] = np.nan
    ts = T0 + 15_000 * np.arange(len(values))
    _, rate = counter_to_rate(ts, values)
    finite = np.flatnonzero(np.isfinite(values))
    # A rate exactly on the finite rows after the first one ...
    assert np.flatnonzero(np.isfinite(rate)).tolist() == finite[1:].tolist()
    # ... spread over the whole time since the previous finite row: nothing is lost in a gap.
    dt = np.diff(ts[finite]) / 1000.0
    total = float(np.sum(rate[finite[1:]] * dt))
    expected = float(values[finite[-1]] - values[finite[0]]) if len(finite) else 0.0
    assert total == pytest.approx(expected, rel=1e-9, abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1e12, allow_nan=False), min_size=2, max_size=50))
def test_monotone_counter_without_resets_matches_diff(incs: list[float]) -> None:
    values = np.cumsum(incs)
    ts = T0 + 15_000 * np.arange(len(values))
    _, rate = counter_to_rate(ts, values)
    np.testing.assert_allclose(rate[1:], np.diff(values) / 15.0, rtol=1e-12, atol=1e-9)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 120_000),
            st.floats(0, 1e6, allow_nan=False),
            st.booleans(),
            st.sampled_from([None, np.nan, np.inf, -np.inf]),
        ),
        min_size=2,
        max_size=60,
    )
)
def test_resets_and_missing_values_together_lose_no_increase(
    steps: list[tuple[int, float, bool, float | None]],
) -> None:
    """Restarts and missing values (NaN, +/-inf) at once, at uneven times: the rates, times the
    time since the previous finite row, add up to what the counter counted between its first
    and its last finite row, and no rate is negative.

    A restart is drawn at a finite row, right after the previous finite row: the new process
    shows what it counted since (a restart that is not a fall cannot be seen, so none is drawn
    there)."""
    ts = T0 + np.cumsum([step for step, _, _, _ in steps]).astype(np.int64)
    values = np.empty(len(steps))
    counted = np.cumsum([inc for _, inc, _, _ in steps])
    value, since, last = 0.0, 0.0, None
    for i, (_, inc, restart, missing) in enumerate(steps):
        value += inc
        since += inc
        if missing is not None:
            values[i] = missing
            continue
        if restart and last is not None and since < last:
            value = since
        values[i] = last = value
        since = 0.0
    _, rate = counter_to_rate(ts, values)
    finite = np.flatnonzero(np.isfinite(values))
    # A rate exactly on the finite rows after the first, never negative; NaN (not inf) elsewhere.
    assert np.isnan(np.delete(rate, finite[1:])).all()
    assert np.isfinite(rate[finite[1:]]).all() and (rate[finite[1:]] >= 0).all()
    dt = np.diff(ts[finite]) / 1000.0
    total = float(np.sum(rate[finite[1:]] * dt))
    expected = float(counted[finite[-1]] - counted[finite[0]]) if len(finite) else 0.0
    assert total == pytest.approx(expected, rel=1e-9, abs=1e-6)
