"""The ``default`` detector on synthetic series whose right answer is known (issue 3, item 2).

Every case is judged the way a user would judge it, with one alarm level for all of them
(``THRESHOLD`` = 0.5, the level the detector documents as "rarer than 1 in 100,000", the
``Thresholder`` default and ``relia detect``'s default ``--threshold``):

* **caught**: each injected anomaly alarms within a few points of its onset;
* **quiet**: on the normal stretches (after the warm-up, outside each anomaly's settle window)
  there are at most ``FALSE_ALARMS_PER_10K`` alarmed points per 10,000, counted over all seeds.

The series come from :mod:`tests.detect.synthetic`. Where the detector gets a case wrong, the test
is an ``xfail(strict=True)`` whose reason says what goes wrong: the assertion stays as it should
be, and the mark comes off when the detector is fixed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from relia.detect import Detail, Thresholder, create
from relia.detect.preprocess import counter_to_rate
from tests.detect import synthetic as syn
from tests.detect.synthetic import PER_DAY, PER_HOUR, Case

#: One alarm level for every case (see the module docstring).
THRESHOLD = Thresholder().threshold
#: Alarmed points allowed per 10,000 normal points (5 per 35 days of 5-minute points).
FALSE_ALARMS_PER_10K = 5
SEEDS = (1, 2, 3)

COMPONENTS = create("default").components


def _score(case: Case, values: np.ndarray | None = None) -> Detail:
    v = case.values if values is None else values
    return create("default").score_detail(v, case.ts)


def _alarms(d: Detail) -> np.ndarray:
    return Thresholder(THRESHOLD).flags(d.score)


def _describe(case: Case, d: Detail, idx: np.ndarray, limit: int = 8) -> str:
    parts = []
    for i in idx[:limit].tolist():
        c = int(d.component[i])
        parts.append(
            f"#{i} (day {i / PER_DAY:.1f}) score {d.score[i]:.3f} by "
            f"{COMPONENTS[c] if c >= 0 else '-'}: value {case.values[i]:.4g}, "
            f"expected {d.expected[i]:.4g}, band {d.lower[i]:.4g}..{d.upper[i]:.4g}"
        )
    more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
    return "; ".join(parts) + more


def assert_quiet(
    make: Callable[[int], Case], values: Callable[[Case], np.ndarray] | None = None
) -> None:
    """At most FALSE_ALARMS_PER_10K alarmed normal points per 10,000, over all seeds."""
    total = found = 0
    report = []
    for seed in SEEDS:
        case = make(seed)
        d = _score(case, None if values is None else values(case))
        normal = case.normal()
        false = np.flatnonzero(normal & _alarms(d))
        total += int(normal.sum())
        found += len(false)
        if len(false):
            report.append(f"seed {seed}: {_describe(case, d, false)}")
    allowed = math.ceil(FALSE_ALARMS_PER_10K * total / 10_000)
    assert found <= allowed, (
        f"{found} false alarms in {total} normal points (allowed {allowed}): " + " | ".join(report)
    )


def assert_caught(
    make: Callable[[int], Case], values: Callable[[Case], np.ndarray] | None = None
) -> None:
    """Every injected anomaly alarms at one of ``onset .. onset + within``, in every seed."""
    missed = []
    for seed in SEEDS:
        case = make(seed)
        assert case.anomalies
        d = _score(case, None if values is None else values(case))
        flags = _alarms(d)
        for a in case.anomalies:
            window = slice(a.onset, a.onset + a.within + 1)
            if not flags[window].any():
                best = a.onset + int(np.argmax(d.score[window]))
                missed.append(f"seed {seed} {a.label}: best {_describe(case, d, np.array([best]))}")
    assert not missed, f"{len(missed)} anomalies missed: " + " | ".join(missed)


# -- missing points and irregular sampling ----------------------------------------------------


def test_missing_points_score_zero_and_the_forecast_goes_on() -> None:
    for seed in SEEDS:
        case = syn.missing_and_irregular(seed)
        d = _score(case)
        missing = np.isnan(case.values)
        assert missing.sum() > 100
        assert np.all(d.score[missing] == 0.0)
        # While values are missing (and across the gaps) the model still says what it expects.
        assert np.isfinite(d.expected[case.warmup :]).all()
        assert np.isfinite(d.score).all()


def test_missing_and_irregular_quiet() -> None:
    assert_quiet(syn.missing_and_irregular)
    for seed in SEEDS:
        # A gap of hours, or hours of NaN, is not an anomaly: nothing alarms in the hour after.
        case = syn.missing_and_irregular(seed)
        flags = _alarms(_score(case))
        injected = {a.onset for a in case.anomalies}
        for m in case.marks:
            after = [i for i in range(m, m + 80) if flags[i] and i not in injected]
            assert not after, f"seed {seed}: alarm after the gap at #{m}: {after}"


def test_missing_and_irregular_spike_after_a_gap_is_caught() -> None:
    assert_caught(lambda seed: _only(syn.missing_and_irregular(seed), "spike"))


@pytest.mark.xfail(
    strict=True,
    reason="an 8 SD dip inside the daily range (cycle of 10 SD) scores ~0.19 (component below): "
    "without the new_range component a lone point cannot reach 0.5 (see spikes_and_dips)",
)
def test_missing_and_irregular_dip_after_nan_run_is_caught() -> None:
    assert_caught(lambda seed: _only(syn.missing_and_irregular(seed), "dip"))


def _only(case: Case, label: str) -> Case:
    """The case with only the anomaly whose label starts with ``label`` to be caught."""
    keep = tuple(a for a in case.anomalies if a.label.startswith(label))
    assert len(keep) == 1
    return Case(case.name, case.ts, case.values, keep, case.warmup, case.marks, case.extra)


def test_streaming_update_agrees_with_batch() -> None:
    case = syn.missing_and_irregular(1)
    batch = _score(case)
    det = create("default")
    streamed = np.array(
        [det.update(int(t), float(v)) for t, v in zip(case.ts, case.values, strict=True)]
    )
    np.testing.assert_allclose(streamed, batch.score, rtol=0, atol=1e-9)
    assert _alarms(batch).sum() >= 1  # the comparison covers alarms, not only quiet points


# -- counters and their resets ----------------------------------------------------------------


def _rate(case: Case) -> np.ndarray:
    return counter_to_rate(case.ts, case.values)[1]


def test_counter_rate_is_quiet_across_resets() -> None:
    assert_quiet(syn.counter_with_resets, _rate)
    for seed in SEEDS:
        case = syn.counter_with_resets(seed)
        flags = _alarms(_score(case, _rate(case)))
        for r in case.marks:
            assert not flags[r - PER_HOUR : r + PER_HOUR].any(), f"seed {seed}: alarm at reset {r}"


def test_counter_rate_outage_is_caught() -> None:
    assert_caught(syn.counter_with_resets, _rate)


def test_raw_counter_alarms_at_a_harmless_reset() -> None:
    # Why counters go through counter_to_rate first: scored raw, the first restart (the counter
    # falls to a value below any seen) alarms, though nothing is wrong with the service. The
    # second restart drops into the range the first one opened, so it barely shows: the raw
    # counter says where the total stands, not how the traffic goes.
    for seed in SEEDS:
        case = syn.counter_with_resets(seed)
        d = _score(case)
        first = case.marks[0]
        assert d.score[first] >= THRESHOLD
        assert COMPONENTS[d.component[first]] in ("below", "new_range")


# -- level shifts -----------------------------------------------------------------------------


def test_level_shifts_are_caught() -> None:
    assert_caught(syn.level_shifts)


def test_level_shifts_become_the_new_normal() -> None:
    assert_quiet(syn.level_shifts)
    for seed in SEEDS:
        case = syn.level_shifts(seed)
        flags = _alarms(_score(case))
        for a in case.anomalies:
            # From an hour after the shift on, the new level is normal: nothing alarms for a day.
            later = np.flatnonzero(flags[a.onset + PER_HOUR : a.onset + PER_DAY])
            assert not len(later), f"seed {seed} {a.label}: alarms {later + a.onset + PER_HOUR}"


# -- spikes and dips --------------------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="8 SD spikes and dips inside the daily range score 0.09-0.18 (components above/below); "
    "only those that also leave the range seen so far fire (new_range, 0.5 and up). With "
    "new_range off, even a 40 SD lone spike on 10 days of Gaussian noise scores 0.45 (0.40 "
    "with a daily cycle of 10 SD): past the largest surprise seen, the calibration "
    "extrapolates a heavy tail",
)
def test_spikes_and_dips_are_caught() -> None:
    assert_caught(syn.spikes_and_dips)


def test_spikes_and_dips_quiet() -> None:
    assert_quiet(syn.spikes_and_dips)


# -- variance change --------------------------------------------------------------------------


def test_variance_change_is_caught() -> None:
    assert_caught(syn.variance_change)


@pytest.mark.xfail(
    strict=True,
    reason="after noise x5, new_range keeps firing (0.5 and up) on new records of the wider noise "
    "for days: 14 false alarms in 10,368 normal points over 3 seeds (allowed 6), 9 of them "
    "1 to 6.7 days after the change, 5 on records of the old noise before it",
)
def test_variance_change_becomes_the_new_normal() -> None:
    assert_quiet(syn.variance_change)


# -- daily plus weekly seasonality -------------------------------------------------------------


def test_normal_weekends_do_not_alarm() -> None:
    assert_quiet(syn.weekly_seasonality)
    for seed in SEEDS:
        case = syn.weekly_seasonality(seed)
        flags = _alarms(_score(case))
        weekend = case.extra["weekend"].astype(bool)
        learned = np.arange(len(case)) >= case.warmup
        assert not (flags & weekend & learned).any(), f"seed {seed}: a normal weekend alarmed"


@pytest.mark.xfail(
    strict=True,
    reason="a drop of 12 (6 noise SD) at the weekday 14:00 peak scores 0.12-0.19: at the peak "
    "the forecast lags the data by 5-8 (expected ~143-146 for values ~150) and the band is "
    "+/-7-9; "
    "the forecast's residual SD after two weeks is 3.6 for noise of SD 2",
)
def test_drop_at_a_daily_peak_is_caught() -> None:
    assert_caught(syn.weekly_seasonality)


def test_a_burst_on_the_first_day_is_not_forecast_every_day() -> None:
    for seed in SEEDS:
        case = syn.first_day_burst(seed)
        d = _score(case)
        # The burst's slot misses on one side from the second evening on: it is left out of the
        # forecast at once (its trust turns negative), so the burst (+40 SD) is never forecast
        # again, and it is relearned from the data at its 20th point (`persist`), on the fifth
        # evening (from one value, so it takes an evening to settle). From the sixth evening on
        # the band holds the evening's values again.
        evenings = case.extra["burst_slot"].astype(bool)
        burst = syn.LEVEL + 20.0 * syn.SD  # the evening peaks near LEVEL + 10 SD, the burst at 50
        assert (d.expected[evenings] < burst).all(), f"seed {seed}: the burst is still forecast"
        slot = evenings & (np.arange(len(case)) >= 5 * PER_DAY)
        held = (case.values >= d.lower) & (case.values <= d.upper)
        # The band is 3 scales wide, so nearly every ordinary value lies inside it.
        assert held[slot].mean() >= 0.9, (
            f"seed {seed}: the band holds {held[slot].mean():.0%} of the later evenings' values "
            f"({_describe(case, d, np.flatnonzero(slot), 3)})"
        )
    assert_quiet(syn.first_day_burst)


# -- slow drift and sudden ramps --------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="a drift of 1 SD per day makes a new high every few hours; when noise puts such a "
    "point 3-5 SD above the forecast, new_range fires (0.5 and up): 23 false alarms in 23,220 "
    "normal points over 3 seeds (9.9 per 10k; allowed 12), spread over days 1-21",
)
def test_slow_drift_is_not_an_anomaly() -> None:
    assert_quiet(syn.drift_then_ramp)


def test_sudden_ramp_is_caught() -> None:
    assert_caught(syn.drift_then_ramp)


# -- low-volume integer series ----------------------------------------------------------------


@pytest.mark.parametrize("mean", [0.5, 1.0, 3.0])
def test_low_volume_counts_do_not_storm(mean: float) -> None:
    assert_quiet(lambda seed: syn.low_volume_counts(seed, mean))


@pytest.mark.parametrize("mean", [0.5, 1.0, 3.0])
def test_low_volume_burst_is_caught(mean: float) -> None:
    assert_caught(lambda seed: syn.low_volume_counts(seed, mean))


# -- heavy tails ------------------------------------------------------------------------------


_HEAVY_QUIET_XFAIL = pytest.mark.xfail(
    strict=True,
    reason="new_range fires (0.5 and up) on ordinary records of Student-t noise (|T| of 10-120, "
    "days 1-10): dof 3: 9 false alarms in 11,229 normal points over 3 seeds, dof 2: 10 "
    "(allowed 6); the calibrated components stay below 0.5 on the same points",
)


@pytest.mark.parametrize(
    "dof",
    [pytest.param(2.0, marks=_HEAVY_QUIET_XFAIL), pytest.param(3.0, marks=_HEAVY_QUIET_XFAIL)],
)
def test_heavy_tails_few_false_alarms(dof: float) -> None:
    assert_quiet(lambda seed: syn.heavy_tails(seed, dof))


@pytest.mark.parametrize("dof", [2.0, 3.0])
def test_heavy_tails_huge_spike_is_caught(dof: float) -> None:
    assert_caught(lambda seed: syn.heavy_tails(seed, dof))


# -- long flat stretches ----------------------------------------------------------------------


@pytest.mark.parametrize("level", [0.0, 100.0])
def test_small_change_after_days_flat_is_caught(level: float) -> None:
    assert_caught(lambda seed: syn.flat_then_change(seed, level))


@pytest.mark.parametrize("level", [0.0, 100.0])
def test_flat_line_with_float_jitter_does_not_storm(level: float) -> None:
    case = syn.flat_then_change(0, level)
    d = _score(case)
    before_change = slice(0, case.anomalies[0].onset)
    # A constant is known exactly: not one alarm, at the jitter or anywhere before the change.
    assert not _alarms(d)[before_change].any(), _describe(
        case, d, np.flatnonzero(_alarms(d)[before_change])
    )
    assert_quiet(lambda seed: syn.flat_then_change(seed, level))


# -- explanations -----------------------------------------------------------------------------

ALL_CASES: list[Callable[[int], Case]] = [
    syn.missing_and_irregular,
    syn.counter_with_resets,
    syn.level_shifts,
    syn.spikes_and_dips,
    syn.variance_change,
    syn.weekly_seasonality,
    syn.drift_then_ramp,
    lambda s: syn.low_volume_counts(s, 1.0),
    lambda s: syn.heavy_tails(s, 3.0),
    lambda s: syn.flat_then_change(s, 100.0),
]


def test_every_alarm_carries_its_explanation() -> None:
    n_alarms = 0
    for make in ALL_CASES:
        for seed in SEEDS:
            case = make(seed)
            values = _rate(case) if case.name == "counter_with_resets" else case.values
            d = _score(case, values)
            idx = np.flatnonzero(_alarms(d))
            n_alarms += len(idx)
            exp, lo, up, comp = d.expected[idx], d.lower[idx], d.upper[idx], d.component[idx]
            where = f"{case.name} seed {seed}"
            # What was expected, and the band of normal values around it.
            assert np.isfinite(exp).all() and np.isfinite(lo).all() and np.isfinite(up).all()
            assert ((lo <= exp) & (exp <= up)).all(), where
            # Which part fired, and it agrees with the value's side of the forecast.
            assert ((comp >= 0) & (comp < len(COMPONENTS))).all(), where
            v = values[idx]
            names = np.array(COMPONENTS)[comp]
            assert (v[names == "above"] > exp[names == "above"]).all(), where
            assert (v[names == "below"] < exp[names == "below"]).all(), where
            new = names == "new_range"
            assert ((v[new] > up[new]) | (v[new] < lo[new])).all(), where
    assert n_alarms > 50  # the checks above looked at real alarms
