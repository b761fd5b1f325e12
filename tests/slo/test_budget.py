"""The budget math: hand-computed cases and Hypothesis properties against direct Python counts."""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relia.errors import ConfigError, DataError
from relia.slo import budget as B
from relia.slo.spec import (
    SLO,
    AlertWindow,
    BudgetingMethod,
    EventsSLI,
    ThresholdSLI,
    TimeWindow,
)

DAY = 86400

#: The SRE Workbook's table for 30 days (tests keep their own; relia.slo.burnrate derives it).
SRE_30D = (
    AlertWindow(severity="page", name="quick", budget_percent=2, long_s=3600, short_s=300,
                burn_rate=14.4),
    AlertWindow(severity="page", name="slow", budget_percent=5, long_s=6 * 3600, short_s=1800,
                burn_rate=6),
    AlertWindow(severity="ticket", name="quick", budget_percent=10, long_s=DAY, short_s=7200,
                burn_rate=3),
    AlertWindow(severity="ticket", name="slow", budget_percent=10, long_s=3 * DAY,
                short_s=6 * 3600, burn_rate=1),
)  # fmt: skip

EVENTS = EventsSLI(error_query="errors", total_query="total")


def _slo(**kw: object) -> SLO:
    base: dict[str, object] = {"service": "svc", "name": "x", "objective": 99.0, "sli": EVENTS}
    base.update(kw)
    return SLO.model_validate(base)


# -- hand-computed cases -------------------------------------------------------------------


def test_window_sums_by_hand() -> None:
    total = np.array([[10.0, 10.0, np.nan, 20.0, 10.0]])
    bad = np.array([[1.0, np.nan, 5.0, 2.0, 0.0]])
    # Last 1, 2, 3, 5 steps; the NaN total hides its bad 5; the NaN bad next to a total is 0.
    s = B.window_sums(bad, total, [[1, 2, 3, 5]])
    assert s.events.tolist() == [[10.0, 30.0, 30.0, 50.0]]
    assert s.bad_events.tolist() == [[0.0, 2.0, 2.0, 3.0]]
    assert s.bad_units.tolist() == s.bad_events.tolist()  # occurrences: units are events
    # Longer than the data: all of it; unsorted lengths are fine.
    s2 = B.window_sums(bad, total, [[9, 1]])
    assert s2.events.tolist() == [[50.0, 10.0]]


def test_timeslices_by_hand() -> None:
    # Two steps per slice; slices (oldest first): [10,10]/[0,1] -> good 0.95,
    # [nan,nan] -> no data, [4,0]/[1,0] -> good 0.75, [10,10]/[0,0] -> good 1.0
    total = np.array([[10.0, 10.0, np.nan, np.nan, 4.0, 0.0, 10.0, 10.0]])
    bad = np.array([[0.0, 1.0, 3.0, 3.0, 1.0, 0.0, 0.0, 0.0]])
    kw = {"slice_steps": 2, "slice_target": 0.9}
    ts = B.window_sums(bad, total, [[2, 4, 8]], method=1, **kw)
    assert ts.units.tolist() == [[1.0, 2.0, 3.0]]  # the slice with no data is not counted
    assert ts.bad_units.tolist() == [[0.0, 1.0, 1.0]]  # 0.75 < 0.9: bad; 0.95 >= 0.9: good
    assert ts.events.tolist() == [[20.0, 24.0, 44.0]]
    rt = B.window_sums(bad, total, [[8]], method=2, **kw)
    assert rt.units.tolist() == [[3.0]]
    assert rt.bad_units[0, 0] == pytest.approx(0.05 + 0.25 + 0.0)
    # A good ratio exactly at the target is good, whatever the path (one-step slices or not).
    for fn in (B.window_sums, B.window_sums_numpy):
        for k, bad_, total_ in ((1, [[1.0, 0.0]], [[4.0, 4.0]]), (2, [[1.0, 0.0]], [[2.0, 2.0]])):
            ties = fn(bad_, total_, [[2]], method=1, slice_steps=k, slice_target=0.75)
            assert ties.bad_units.tolist() == [[0.0]], (fn, k)
    # A window shorter than a slice still looks at one slice.
    assert B.window_sums(bad, total, [[1]], method=1, **kw).units.tolist() == [[1.0]]


def test_evaluate_by_hand() -> None:
    """A 99% SLO over 100 one-minute steps of 100 requests: 10 bad requests in the last hour."""
    slo = _slo(window=TimeWindow(period_s=100 * 60))
    windows = (
        AlertWindow(severity="page", name="q", budget_percent=2, long_s=3600, short_s=300,
                    burn_rate=1.5),
        AlertWindow(severity="ticket", name="s", budget_percent=5, long_s=6000, short_s=600,
                    burn_rate=0.5),
    )  # fmt: skip
    params = B.SloParams.from_slos([slo], [windows], step_s=60)
    assert params.window_steps.tolist() == [100] and params.long_steps.tolist() == [[60, 100]]
    total = np.full((1, 100), 100.0)
    bad = np.zeros((1, 100))
    bad[0, -60:-50] = 1.0  # 10 bad requests between 60 and 50 minutes ago
    r = B.evaluate(bad, total, params, step_s=60, current_window_s=3600)
    assert r.events[0] == 10_000 and r.bad_events[0] == 10
    assert r.sli[0] == pytest.approx(0.999)
    assert r.budget_total[0] == pytest.approx(100.0)  # 1% of 10,000 events
    assert r.budget_spent[0] == 10 and r.budget_remaining[0] == pytest.approx(90.0)
    assert r.spent_ratio[0] == pytest.approx(0.1)
    # Over the last hour: 10 / 6000 = 0.1667%, burn 0.1667; short windows hold no errors.
    assert r.long_burn[0].tolist() == pytest.approx([10 / 6000 / 0.01, 10 / 10_000 / 0.01])
    assert r.short_burn[0].tolist() == [0.0, 0.0]
    assert r.firing.tolist() == [[False, False]]
    assert r.current_burn[0] == pytest.approx(1 / 6)
    # 90% of the budget left, spending 1/6 of it per period (6000 s): 0.9 * 6000 * 6 s.
    assert r.exhaustion_s[0] == pytest.approx(0.9 * 6000 * 6)

    bad[0, -5:] = 50.0  # a burst: 250 more bad in the last 5 minutes
    r = B.evaluate(bad, total, params, step_s=60, current_window_s=3600)
    assert r.long_burn[0].tolist() == pytest.approx([260 / 6000 / 0.01, 260 / 10_000 / 0.01])
    assert r.short_burn[0].tolist() == pytest.approx([250 / 500 / 0.01, 250 / 1000 / 0.01])
    assert r.firing.tolist() == [[True, True]]  # 4.33 and 50 > 1.5; 2.6 and 25 > 0.5
    bad[0, -5:] = 12.0  # 60 in the last 5 minutes: 70 / 6000 / 1% = 1.17 < 1.5 over the hour
    r = B.evaluate(bad, total, params, step_s=60, current_window_s=3600)
    assert r.firing.tolist() == [[False, True]]


def test_firing_is_strict_and_respects_min_events() -> None:
    w = AlertWindow(severity="page", name="q", budget_percent=2, long_s=120, short_s=60,
                    burn_rate=2.0)  # fmt: skip
    total = np.full((1, 4), 50.0)
    bad = np.full((1, 4), 1.0)  # error ratio 2% = exactly 2x a 1% budget
    slo = _slo(window=TimeWindow(period_s=240))
    r = B.evaluate(bad, total, B.SloParams.from_slos([slo], [[w]], 60), step_s=60)
    assert r.long_burn[0, 0] == pytest.approx(2.0) and not r.firing[0, 0]  # not above: no alert
    for last_two, over in (([0.0, 2.0], "short"), ([3.0, 1.0], "long")):
        bad[0, -2:] = last_two  # one window above 2x, the other exactly at it: no alert
        r = B.evaluate(bad, total, B.SloParams.from_slos([slo], [[w]], 60), step_s=60)
        assert not r.firing[0, 0] and not r.over_threshold[0, 0], over
    bad[0, -2:] = 2.0
    r = B.evaluate(bad, total, B.SloParams.from_slos([slo], [[w]], 60), step_s=60)
    assert r.firing[0, 0]
    guarded = _slo(window=TimeWindow(period_s=240), min_events=101)
    r = B.evaluate(bad, total, B.SloParams.from_slos([guarded], [[w]], 60), step_s=60)
    assert r.long_events[0, 0] == 100 and not r.firing[0, 0]  # 100 events < 101: low traffic
    at_min = _slo(window=TimeWindow(period_s=240), min_events=100)
    r = B.evaluate(bad, total, B.SloParams.from_slos([at_min], [[w]], 60), step_s=60)
    assert r.firing[0, 0]


def test_no_data_exhausted_and_not_burning() -> None:
    slos = [_slo(window=TimeWindow(period_s=600))] * 3
    params = B.SloParams.from_slos(slos, [SRE_30D[:1]] * 3, 60)
    total = np.array([[np.nan] * 10, [10.0] * 10, [10.0] * 10])
    bad = np.array([[np.nan] * 10, [0.0] * 10, [5.0] * 10])
    r = B.evaluate(bad, total, params, step_s=60)
    assert math.isnan(r.sli[0]) and math.isnan(r.exhaustion_s[0]) and not r.firing[0].any()
    assert r.sli[1] == 1.0 and r.exhaustion_s[1] == math.inf and r.current_burn[1] == 0.0
    assert r.remaining_ratio[2] < 0 and r.exhaustion_s[2] == 0.0


def test_numpy_engine_gives_the_same() -> None:
    rng = np.random.default_rng(3)
    n, t = 40, 500
    total = rng.poisson(30, (n, t)).astype(np.float32)
    bad = rng.binomial(total.astype(np.int64), 0.03).astype(np.float32)
    total[rng.random((n, t)) < 0.05] = np.nan
    kinds = [
        _slo(name=f"s{i}", window=TimeWindow(period_s=480 * 60), **extra)
        for i, extra in enumerate(
            [{}, {"budgeting": "timeslices", "timeslice_window_s": 300, "timeslice_target": 0.97},
             {"budgeting": "ratio_timeslices", "timeslice_window_s": 60}] * 14
        )
    ][:n]  # fmt: skip
    params = B.SloParams.from_slos(kinds, [SRE_30D] * n, 60)
    a = B.evaluate(bad, total, params, step_s=60)
    b = B.evaluate(bad, total, params, step_s=60, engine="numpy")
    for field in ("sli", "budget_spent", "long_burn", "short_burn", "exhaustion_s"):
        np.testing.assert_allclose(getattr(a, field), getattr(b, field), rtol=1e-9)
    assert (a.firing == b.firing).all()


def test_bad_shapes_and_parameters() -> None:
    with pytest.raises(DataError, match="one shape"):
        B.window_sums(np.zeros((2, 3)), np.zeros((2, 4)), [1])
    with pytest.raises(DataError, match="slice_steps"):
        B.window_sums(np.zeros((1, 3)), np.zeros((1, 3)), [1], slice_steps=0)
    slo = _slo(budgeting="timeslices", timeslice_window_s=90, timeslice_target=0.9,
               window=TimeWindow(period_s=900))  # fmt: skip
    with pytest.raises(DataError, match="must divide the timeslice window"):
        B.SloParams.from_slos([slo], [()], 60)
    params = B.SloParams.from_slos([_slo()], [()], 60)
    with pytest.raises(DataError, match="rows of counts"):
        B.evaluate(np.zeros((2, 3)), np.zeros((2, 3)), params, step_s=60)


def test_threshold_and_raw_events() -> None:
    bad, total = B.threshold_events([0.1, 0.5, np.nan, 0.3], "lte", 0.3)
    assert bad.tolist()[:2] == [0.0, 1.0] and math.isnan(bad[2]) and bad[3] == 0.0
    assert np.isnan(total[2]) and total[[0, 1, 3]].tolist() == [1.0, 1.0, 1.0]
    assert B.threshold_events([1.0], "gt", 1.0)[0].tolist() == [1.0]
    assert B.threshold_events([1.0], "gte", 1.0)[0].tolist() == [0.0]
    assert B.threshold_events([1.0], "lt", 1.0)[0].tolist() == [1.0]
    bad, total = B.raw_ratio_events([0.01, 1.5, np.nan])
    assert bad[:2].tolist() == [0.01, 1.0] and np.isnan(total[2])
    # A threshold SLI without a timeslice target: a slice is good only when every step is.
    slo = _slo(sli=ThresholdSLI(query="q", op="lte", value=1.0), budgeting="timeslices",
               timeslice_window_s=120, window=TimeWindow(period_s=240))  # fmt: skip
    params = B.SloParams.from_slos([slo], [()], 60)
    assert params.slice_target.tolist() == [1.0] and params.slice_steps.tolist() == [2]
    b, t = B.threshold_events([[0.5, 2.0, 0.5, 0.5]], "lte", 1.0)
    r = B.evaluate(b, t, params, step_s=60)
    assert r.units[0] == 2 and r.bad_units[0] == 1 and r.sli[0] == 0.5


def test_rolling_burn_rate_and_burn_down() -> None:
    total = np.array([[10.0, 10.0, 10.0, np.nan, 10.0]])
    bad = np.array([[1.0, 0.0, 2.0, 9.0, 0.0]])
    rb = B.rolling_burn_rate(bad, total, 2, 0.1)
    assert np.isnan(rb[0, 0])
    assert rb[0, 1:].tolist() == pytest.approx([0.5, 1.0, 2.0, 0.0])
    assert np.isnan(B.rolling_burn_rate(bad, total, 9, 0.1)).all()
    slo = _slo(objective=90.0, window=TimeWindow(period_s=240))
    params = B.SloParams.from_slos([slo], [()], 60)
    down = B.burn_down(bad, total, params)
    # Window of 4 steps: 30 events, budget 3; errors 0, 2, -, 0 in time order.
    assert np.isnan(down[0, 0])
    assert down[0, 1:].tolist() == pytest.approx([1.0, 1 / 3, 1 / 3, 1 / 3])
    sliced = _slo(objective=50.0, budgeting="timeslices", timeslice_window_s=120,
                  timeslice_target=0.95, window=TimeWindow(period_s=240))  # fmt: skip
    down = B.burn_down(bad, total, B.SloParams.from_slos([sliced], [()], 60))
    # Two slices of two steps, ending at the last step: [0, 2]/[10, 10] is bad (0.9 < 0.95);
    # [9, 0]/[nan, 10] good (the NaN total hides the 9). Budget 0.5 * 2 slices = 1 slice,
    # spent when the first slice ends.
    assert np.isnan(down[0, 0]) and down[0, 1:].tolist() == [1.0, 0.0, 0.0, 0.0]


# -- calendar windows ------------------------------------------------------------------------


def _ms(text: str, tz: str = "UTC") -> int:
    return round(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def test_window_start_rolling_and_calendar() -> None:
    at = _ms("2024-03-20T15:30:00")
    assert B.window_start_ms(TimeWindow(period_s=30 * DAY), at) == at - 30 * DAY * 1000
    cal = TimeWindow(period_s=7 * DAY, rolling=False, calendar_start=datetime(2024, 1, 1))
    assert B.window_start_ms(cal, at) == _ms("2024-03-18T00:00:00")  # a Monday, 11 weeks on
    assert B.window_start_ms(cal, _ms("2024-03-18T00:00:00")) == _ms("2024-03-18T00:00:00")
    assert B.window_start_ms(cal, _ms("2023-12-31T23:00:00")) == _ms("2023-12-25T00:00:00")
    hours = TimeWindow(period_s=6 * 3600, rolling=False, calendar_start=datetime(2024, 1, 1, 1))
    assert B.window_start_ms(hours, at) == _ms("2024-03-20T13:00:00")


def test_calendar_days_follow_the_wall_clock_across_dst() -> None:
    ny = "America/New_York"
    day = TimeWindow(period_s=DAY, rolling=False, calendar_start=datetime(2024, 3, 1), timezone=ny)
    # 2024-03-10: clocks jump from 02:00 to 03:00; that local day has 23 hours.
    assert B.window_start_ms(day, _ms("2024-03-10T12:00:00", ny)) == _ms("2024-03-10", ny)
    assert B.window_start_ms(day, _ms("2024-03-11T00:30:00", ny)) == _ms("2024-03-11", ny)
    assert B.window_start_ms(day, _ms("2024-03-10T23:59:00", ny)) == _ms("2024-03-10", ny)
    aware = TimeWindow(
        period_s=DAY, rolling=False, calendar_start=datetime(2024, 3, 1, tzinfo=ZoneInfo(ny))
    )
    assert B.window_start_ms(aware, _ms("2024-11-03T22:00:00", ny)) == _ms("2024-11-03", ny)
    bad = TimeWindow(period_s=DAY, rolling=False, calendar_start=datetime(2024, 3, 1),
                     timezone="Nowhere/Land")  # fmt: skip
    with pytest.raises(ConfigError, match="Nowhere/Land"):
        B.window_start_ms(bad, 0)


# -- properties ------------------------------------------------------------------------------

METHODS = [BudgetingMethod.OCCURRENCES, BudgetingMethod.TIMESLICES,
           BudgetingMethod.RATIO_TIMESLICES]  # fmt: skip


@st.composite
def counts(draw: st.DrawFn, max_steps: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """One row of (bad, total) per-step counts with gaps (NaN totals, NaN bads)."""
    n = draw(st.integers(1, max_steps))
    total = np.array(draw(st.lists(st.integers(0, 50), min_size=n, max_size=n)), np.float64)
    frac = np.array(draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)))
    bad = np.floor(total * frac)
    gaps = np.array(draw(st.lists(st.sampled_from([0, 0, 0, 1, 2]), min_size=n, max_size=n)))
    total[gaps == 1] = np.nan
    bad[gaps == 2] = np.nan
    return bad[None, :], total[None, :]


def _direct(bad: np.ndarray, total: np.ndarray, length: int, method: int, k: int,
            target: float) -> tuple[float, float, float]:  # fmt: skip
    """(bad units, units, events) of the last ``length`` steps, one slice at a time in Python."""
    b, t = bad[0].tolist(), total[0].tolist()
    n = len(t)
    k = 1 if method == 0 else k
    n_units = min(max(length // k, 1), n // k)
    ubad = units = events = 0.0
    for s in range(n_units):
        hi = n - s * k
        bs = ts = 0.0
        for c in range(hi - k, hi):
            if math.isnan(t[c]):
                continue
            ts += t[c]
            bs += 0.0 if math.isnan(b[c]) else b[c]
        events += ts
        if method == 0:
            ubad, units = ubad + bs, units + ts
        elif ts > 0:
            units += 1
            good = (ts - bs) / ts
            ubad += (1.0 if good < target else 0.0) if method == 1 else min(1.0, bs / ts)
    return ubad, units, events


@settings(max_examples=100, deadline=None)
@given(
    data=counts(),
    method=st.sampled_from([0, 1, 2]),
    k=st.integers(1, 6),
    # Exact ties (a slice's good ratio equal to the target) must come up: they decide good/bad.
    target=st.sampled_from([0.5, 0.75, 0.8, 0.9, 1.0]) | st.floats(0.5, 1.0),
    lengths=st.lists(st.integers(1, 80), min_size=1, max_size=5),
)
def test_window_sums_agree_with_a_direct_count(
    data: tuple[np.ndarray, np.ndarray], method: int, k: int, target: float, lengths: list[int]
) -> None:
    bad, total = data
    kw = {"method": method, "slice_steps": k, "slice_target": target}
    got = B.window_sums(bad, total, [lengths], **kw)
    got_np = B.window_sums_numpy(bad, total, [lengths], **kw)
    got32 = B.window_sums(bad.astype(np.float32), total.astype(np.float32), [lengths], **kw)
    for j, length in enumerate(lengths):
        ubad, units, events = _direct(bad, total, length, method, k, target)
        for g in (got, got_np, got32):
            assert g.bad_units[0, j] == pytest.approx(ubad, abs=1e-9)
            assert g.units[0, j] == units
            assert g.events[0, j] == events


@settings(max_examples=60, deadline=None)
@given(data=counts(), window=st.integers(1, 70), eb=st.sampled_from([0.1, 0.01, 0.001]))
def test_rolling_burn_rate_is_a_direct_sum(
    data: tuple[np.ndarray, np.ndarray], window: int, eb: float
) -> None:
    bad, total = data
    got = B.rolling_burn_rate(bad, total, window, eb)
    n = bad.shape[1]
    for end in range(n):
        if end + 1 < window:
            assert math.isnan(got[0, end])
            continue
        _, events, _ = _direct(bad[:, : end + 1], total[:, : end + 1], window, 0, 1, 1.0)
        ubad, _, _ = _direct(bad[:, : end + 1], total[:, : end + 1], window, 0, 1, 1.0)
        if events == 0:
            assert math.isnan(got[0, end])
        else:
            assert got[0, end] == pytest.approx(ubad / events / eb)


@settings(max_examples=60, deadline=None)
@given(
    traffic=st.lists(st.integers(1, 10_000), min_size=1, max_size=50),
    objective=st.sampled_from([90.0, 99.0, 99.5, 99.9, 99.95]),
    period_steps=st.integers(1, 50),
)
def test_burn_rate_one_for_a_whole_period_spends_exactly_the_budget(
    traffic: list[int], objective: float, period_steps: int
) -> None:
    # Occurrences: every step's error ratio is exactly the error budget.
    slo = _slo(objective=objective, window=TimeWindow(period_s=60 * period_steps))
    params = B.SloParams.from_slos([slo], [SRE_30D], 60)
    steps = (traffic * period_steps)[:period_steps]
    total = np.array([steps], np.float64)
    bad = total * slo.error_budget
    r = B.evaluate(bad, total, params, step_s=60)
    assert r.spent_ratio[0] == pytest.approx(1.0, rel=1e-12)
    assert r.remaining_ratio[0] == pytest.approx(0.0, abs=1e-12)
    assert r.current_burn[0] == pytest.approx(1.0, rel=1e-12)
    assert r.long_burn[0] == pytest.approx([1.0] * 4, rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    slices=st.sampled_from([200, 1000, 2000]),  # slices x budget: whole
    objective=st.sampled_from([90.0, 99.0, 99.5]),
    method=st.sampled_from([BudgetingMethod.TIMESLICES, BudgetingMethod.RATIO_TIMESLICES]),
    seed=st.integers(0, 2**16),
)
def test_slices_at_burn_rate_one_spend_exactly_the_budget(
    slices: int, objective: float, method: BudgetingMethod, seed: int
) -> None:
    slo = _slo(objective=objective, budgeting=method, timeslice_window_s=60,
               timeslice_target=0.99, window=TimeWindow(period_s=60 * slices))  # fmt: skip
    n_bad = round(slices * slo.error_budget)
    total = np.full((1, slices), 100.0)
    bad = np.zeros((1, slices))
    where = np.random.default_rng(seed).choice(slices, n_bad, replace=False)
    bad[0, where] = 100.0  # those slices are wholly bad: one budget unit each
    r = B.evaluate(bad, total, B.SloParams.from_slos([slo], [SRE_30D], 60), step_s=60)
    assert r.spent_ratio[0] == pytest.approx(1.0, rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    data=counts(max_steps=40),
    method=st.sampled_from(METHODS),
    extra=st.lists(st.integers(0, 20), min_size=40, max_size=40),
    fail_requests=st.booleans(),
)
def test_budget_spent_never_decreases_as_errors_are_added(
    data: tuple[np.ndarray, np.ndarray],
    method: BudgetingMethod,
    extra: list[int],
    fail_requests: bool,
) -> None:
    bad, total = data
    n = bad.shape[1]
    sliced = method is not BudgetingMethod.OCCURRENCES
    slo = _slo(objective=99.0, budgeting=method, timeslice_window_s=120 if sliced else None,
               timeslice_target=0.95 if sliced else None,
               window=TimeWindow(period_s=120 * n))  # fmt: skip
    params = B.SloParams.from_slos([slo], [SRE_30D], 60)
    add = np.array(extra[:n], np.float64)[None, :]
    base_bad = np.nan_to_num(bad)
    if fail_requests:  # new requests that all fail
        more_bad, more_total = base_bad + add, total + add
    else:  # good requests turn bad (never more bad than total)
        more_bad, more_total = np.minimum(base_bad + add, np.nan_to_num(total)), total
    before = B.evaluate(base_bad, total, params, step_s=60)
    after = B.evaluate(more_bad, more_total, params, step_s=60)
    if np.isnan(before.spent_ratio[0]):
        return
    assert after.spent_ratio[0] >= before.spent_ratio[0] - 1e-12
    assert after.budget_spent[0] >= before.budget_spent[0] - 1e-12
    assert after.sli[0] <= before.sli[0] + 1e-12


# -- edges the hand cases above leave open (mutation audit) -----------------------------------


def test_a_ratio_slice_spends_at_most_one_unit_and_never_earns_budget_back() -> None:
    # Rates scraped a moment apart can show more errors than requests, and a counter reset can
    # make an error count negative. A ratio slice is one unit of which bad / total is bad: at
    # most all of it, at least none of it. Slices, oldest first: 30 bad of 20 -> 1 unit,
    # -5 bad of 20 -> 0 units, 5 bad of 20 -> 0.25 units; 1.25 bad units of 3.
    one_step = ([[30.0, -5.0, 5.0]], [[20.0, 20.0, 20.0]])
    two_steps = ([[15.0, 15.0, -2.5, -2.5, 2.5, 2.5]], [[10.0] * 6])
    for k, (bad, total) in ((1, one_step), (2, two_steps)):
        for fn in (B.window_sums, B.window_sums_numpy):
            s = fn(np.array(bad), np.array(total), [[6]], method=2, slice_steps=k)
            assert s.units.tolist() == [[3.0]], (fn, k)
            assert s.bad_units[0, 0] == pytest.approx(1.25), (fn, k)


def test_unknown_budgeting_method_codes_are_refused() -> None:
    for code in (-1, 3):
        with pytest.raises(DataError, match="method codes"):
            B.window_sums(np.zeros((1, 2)), np.ones((1, 2)), [1], method=code)


def test_slos_with_fewer_alerts_than_others_never_fire_the_missing_ones() -> None:
    # SLO 0 has one alert, SLO 1 two: SLO 0's row is padded to two alerts. Every request fails,
    # a burn rate of 100 over every window: both real alerts of SLO 1 fire, SLO 0's padding not.
    slo = _slo(window=TimeWindow(period_s=600))
    quick = AlertWindow(severity="page", name="q", budget_percent=2, long_s=120, short_s=60,
                        burn_rate=2.0)  # fmt: skip
    slow = AlertWindow(severity="ticket", name="s", budget_percent=5, long_s=300, short_s=60,
                       burn_rate=1.0)  # fmt: skip
    params = B.SloParams.from_slos([slo, slo], [[quick], [quick, slow]], 60)
    total = np.full((2, 10), 10.0)
    r = B.evaluate(total.copy(), total, params, step_s=60)
    assert r.firing.tolist() == [[True, False], [True, True]]


def test_alert_windows_that_are_not_whole_steps_round_up() -> None:
    # A 90 s long window at a 60 s step looks at 2 steps, never at 1: the 10 errors of the step
    # before the last are in it. Long: 10 bad of 20 events = 50 %, burn 50 on a 1 % budget.
    w = AlertWindow(severity="page", name="q", budget_percent=2, long_s=90, short_s=60,
                    burn_rate=2.0)  # fmt: skip
    slo = _slo(window=TimeWindow(period_s=600))
    total = np.full((1, 10), 10.0)
    bad = np.zeros((1, 10))
    bad[0, -2] = 10.0
    r = B.evaluate(bad, total, B.SloParams.from_slos([slo], [[w]], 60), step_s=60)
    assert r.long_events[0, 0] == 20
    assert r.long_burn[0, 0] == pytest.approx(50.0)


def test_a_window_without_data_has_no_event_counts() -> None:
    # No data is not zero traffic seen: the counts are unknown (NaN), as the SLI is.
    params = B.SloParams.from_slos([_slo(window=TimeWindow(period_s=600))], [()], 60)
    r = B.evaluate(np.full((1, 10), np.nan), np.full((1, 10), np.nan), params, step_s=60)
    assert math.isnan(r.events[0]) and math.isnan(r.bad_events[0])


def test_a_budget_spent_to_the_last_unit_is_exhausted_even_when_not_burning_now() -> None:
    # A 75 % SLO over 2 hours of 10 requests a minute: 1,200 events, a budget of 300 (exact in
    # binary). All 300 errors come in the first hour; the last hour (the current burn) is clean.
    # Nothing remains, so the budget is exhausted now (0 s), not "never" (inf).
    slo = _slo(objective=75.0, window=TimeWindow(period_s=7200))
    params = B.SloParams.from_slos([slo], [()], 60)
    total = np.full((1, 120), 10.0)
    bad = np.zeros((1, 120))
    bad[0, :30] = 10.0
    r = B.evaluate(bad, total, params, step_s=60, current_window_s=3600)
    assert r.remaining_ratio[0] == 0.0 and r.current_burn[0] == 0.0
    assert r.exhaustion_s[0] == 0.0


def test_calendar_windows_of_hours_step_back_whole_periods_before_their_start() -> None:
    # 6-hour periods from 2024-01-01 01:00: before that start the boundaries go on backwards,
    # ..., 2023-12-31 13:00, 19:00; 23:00 on the 31st lies in the period that began at 19:00.
    hours = TimeWindow(period_s=6 * 3600, rolling=False, calendar_start=datetime(2024, 1, 1, 1))
    at = _ms("2023-12-31T23:00:00")
    assert B.window_start_ms(hours, at) == _ms("2023-12-31T19:00:00")


def test_occurrences_slos_ignore_a_timeslice_window_the_step_does_not_divide() -> None:
    # The timeslice window only matters to slice methods: an occurrences SLO that names one the
    # step does not divide (7m at 5m steps) is still evaluated, in events.
    slo = _slo(timeslice_window_s=420, window=TimeWindow(period_s=7 * DAY))
    params = B.SloParams.from_slos([slo], [()], 300)
    total = np.full((1, 2016), 10.0)
    r = B.evaluate(np.zeros((1, 2016)), total, params, step_s=300)
    assert r.units[0] == r.events[0] == 20_160


def test_burn_down_of_a_window_shorter_than_a_slice_shows_the_slice_counted() -> None:
    # A calendar window one step old, with 2-step slices: evaluate counts the one (last) slice,
    # and so does the burn-down. That slice, [1, 1] bad of [10, 10], is bad (0.9 < 0.95); a
    # 50 % budget of one slice is 0.5 slices: 1 - 1 / 0.5 = -1 at the slice's end.
    slo = _slo(objective=50.0, budgeting="timeslices", timeslice_window_s=120,
               timeslice_target=0.95, window=TimeWindow(period_s=240))  # fmt: skip
    params = B.SloParams.from_slos([slo], [()], 60, window_s=[60])
    bad, total = np.full((1, 4), 1.0), np.full((1, 4), 10.0)
    assert B.evaluate(bad, total, params, step_s=60).units[0] == 1
    down = B.burn_down(bad, total, params)
    assert np.isnan(down[0, :2]).all() and down[0, 2:].tolist() == [1.0, -1.0]


def test_a_rolling_window_as_long_as_the_data_has_its_one_value() -> None:
    # 3 steps, a 3-step window: one full window, at the last step: 3 bad of 30 = 10 %, burn 1
    # on a 10 % budget; before it the window is not full (NaN).
    rb = B.rolling_burn_rate(np.array([[1.0, 1.0, 1.0]]), np.full((1, 3), 10.0), 3, 0.1)
    assert np.isnan(rb[0, :2]).all() and rb[0, 2] == pytest.approx(1.0)


def test_a_negative_raw_error_ratio_counts_as_no_errors() -> None:
    # A raw SLI such as 1 - good / total can dip below 0 when good is scraped after total:
    # that step has no errors; it must not earn budget back.
    bad, total = B.raw_ratio_events([-0.2, 0.1])
    assert bad.tolist() == [0.0, 0.1] and total.tolist() == [1.0, 1.0]


def test_burn_down_starts_where_the_data_starts() -> None:
    # A Prometheus that began scraping an hour ago, asked for a 7-day report: the chart drew the
    # budget at 100 % over the six days before any data, as if the SLO had been met there.
    slo = _slo(objective=90.0, window=TimeWindow(period_s=360))
    params = B.SloParams.from_slos([slo], [()], 60)
    total = np.array([[np.nan, np.nan, np.nan, 10.0, np.nan, 10.0]])
    bad = np.array([[np.nan, np.nan, np.nan, 1.0, np.nan, 0.0]])
    down = B.burn_down(bad, total, params)
    assert np.isnan(down[0, :3]).all()
    # From the first data on, a gap keeps the value before it.
    assert down[0, 3:].tolist() == pytest.approx([0.5, 0.5, 0.5])
