"""What each baseline is for: it finds what it is built to find, and stays quiet otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from relia.detect import create
from relia.errors import DetectorError

DAY = 86_400_000
STEP = 300_000  # five minutes


def _ts(n: int) -> np.ndarray:
    return 1_600_000_000_000 - (1_600_000_000_000 % DAY) + STEP * np.arange(n, dtype=np.int64)


@pytest.mark.parametrize("name", ["mad", "cusum", "seasonal", "default"])
def test_spike_is_the_top_score(name: str) -> None:
    rng = np.random.default_rng(0)
    n = 3000
    values = 100 + rng.normal(0, 2, n)
    values[2500] = 140
    scores = create(name).score(values, _ts(n))
    assert int(np.argmax(scores)) == 2500
    assert scores[2500] >= 0.9
    assert np.quantile(scores[100:], 0.99) < 0.5


def test_cusum_finds_a_small_sustained_shift_that_mad_misses_at_first() -> None:
    rng = np.random.default_rng(1)
    n = 2000
    values = rng.normal(0, 1, n)
    values[1500:] += 1.5  # 1.5 sigma: no single point stands out
    cusum = create("cusum").score_detail(values, _ts(n))
    first = 1500 + int(np.argmax(cusum.score[1500:] >= 0.5))
    assert cusum.score[1500:].max() >= 0.5
    assert first < 1540, f"shift found only after {first - 1500} points"
    assert cusum.score[100:1500].max() < 0.5
    assert cusum.component[first] == 1  # the level-shift part fired


def test_seasonal_knows_the_daily_cycle() -> None:
    rng = np.random.default_rng(2)
    n = 288 * 14
    ts = _ts(n)
    hour = (ts % DAY) / 3_600_000
    values = 50 + 40 * (hour >= 9) * (hour < 17) + rng.normal(0, 1, n)
    anomaly = 288 * 12 + 12 * 12  # 12:00 on day 12
    values[anomaly] = 50  # the night level at noon: normal overall, wrong for the hour
    seasonal = create("seasonal").score_detail(values, ts)
    assert int(np.argmax(seasonal.score[288 * 3 :])) + 288 * 3 == anomaly
    assert abs(seasonal.expected[anomaly] - 90) < 3
    assert seasonal.lower[anomaly] < 90 < seasonal.upper[anomaly]
    mad = create("mad").score(values, ts)
    assert mad[anomaly] < 0.5  # a rolling median cannot see it


def test_expected_band_contains_most_normal_points() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(10, 1, 2000)
    detail = create("mad").score_detail(values, _ts(2000))
    inside = (values >= detail.lower) & (values <= detail.upper)
    assert inside[100:].mean() > 0.98


def test_mad_and_cusum_give_an_expected_value_from_the_min_samples_th_point() -> None:
    values = 100 + np.random.default_rng(4).normal(0, 1, 40)
    mad = create("mad", min_samples=8).score_detail(values, _ts(40))
    assert np.isnan(mad.expected[:8]).all() and (mad.score[:8] == 0).all()
    assert mad.expected[8] == np.median(values[:8])  # the median of what it has, not of zeros
    cusum = create("cusum", min_samples=8).score_detail(values, _ts(40))
    assert np.isnan(cusum.expected[:8]).all() and (cusum.score[:8] == 0).all()
    assert cusum.expected[8] == pytest.approx(values[:8].mean())  # warm-up is a plain average


def test_seasonal_trusts_a_slot_after_min_per_bin_points_and_the_whole_after_twice_that() -> None:
    values = np.array([10.0, 12.0, 17.0, 11.0, 13.0, 14.0, 15.0, 16.0])
    # All in one slot: the slot's own average from its third point on.
    same_slot = create("seasonal").score_detail(values, _ts(8))
    assert np.isnan(same_slot.expected[:3]).all()
    assert same_slot.expected[3] == pytest.approx(values[:3].mean())
    # Every point in a new slot: only the overall model, after 2 * min_per_bin points.
    new_slots = _ts(1) + (DAY // 48) * np.arange(8, dtype=np.int64)
    spread = create("seasonal").score_detail(values, new_slots)
    assert np.isnan(spread.expected[:6]).all() and not np.isnan(spread.expected[6])


@pytest.mark.parametrize("name", ["mad", "cusum", "seasonal", "ensemble"])
def test_a_point_that_scores_zero_names_no_component(name: str) -> None:
    detail = create(name).score_detail(np.full(300, 5.0), _ts(300))
    assert (detail.score == 0).all()
    assert (detail.component == -1).all()


def test_one_spike_barely_moves_what_cusum_and_seasonal_expect() -> None:
    rng = np.random.default_rng(5)
    n = 288 * 6
    values = 100 + rng.normal(0, 1, n)
    spike = 288 * 4 + 100
    values[spike] = 200  # a hundred deviations
    ts = _ts(n)
    cusum = create("cusum").score_detail(values, ts)
    assert abs(cusum.expected[spike + 1] - cusum.expected[spike]) < 0.25
    assert cusum.score[spike + 1 : spike + 50].max() < 0.5  # not taken for a new level
    seasonal = create("seasonal", bins=288).score_detail(values, ts)
    # One point a day per slot: the next point in the spike's slot is a day later.
    assert abs(seasonal.expected[spike + 288] - seasonal.expected[spike]) < 1.0


def test_ensemble_names_the_member_part_that_fired() -> None:
    rng = np.random.default_rng(1)
    n = 2000
    values = rng.normal(0, 1, n)
    values[1500:] += 1.5
    ens = create("ensemble")
    detail = ens.score_detail(values, _ts(n))
    first = 1500 + int(np.argmax(detail.score[1500:] >= 0.5))
    assert ens.components[detail.component[first]] == "cusum.level_shift"


def test_ensemble_tie_takes_expected_band_from_the_first_member() -> None:
    members = [{"name": "mad", "params": {"band_z": 2.0}}, {"name": "mad", "params": {}}]
    values = 10 + np.random.default_rng(6).normal(0, 1, 300)
    detail = create("ensemble", members=members).score_detail(values, _ts(300))
    first = create("mad", band_z=2.0).score_detail(values, _ts(300))
    np.testing.assert_array_equal(detail.upper, first.upper)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([{"name": "mad", "colour": "red"}], "each member is"),
        ([{"params": {}}], "each member is"),
        ([{"name": "default"}], "cannot contain 'default'"),
    ],
)
def test_ensemble_members_are_checked(members: list[dict[str, object]], message: str) -> None:
    with pytest.raises(DetectorError, match=message):
        create("ensemble", members=members)


def test_ensemble_config_errors_are_detector_errors_like_any_detector() -> None:
    from relia.detect.ensemble import Ensemble, EnsembleConfig
    from relia.detect.stats import RollingMADConfig

    with pytest.raises(DetectorError, match="'colour' for detector 'ensemble'"):
        create("ensemble", colour="red")
    with pytest.raises(DetectorError, match="not both"):
        Ensemble(EnsembleConfig(), members=[{"name": "mad"}])
    with pytest.raises(DetectorError, match="takes a EnsembleConfig"):
        Ensemble(RollingMADConfig())


def test_cusum_raises_one_alarm_for_one_level_shift_and_adopts_the_new_level() -> None:
    values = np.random.default_rng(2).normal(0, 1, 300)
    values[200:] += 10
    cusum = create("cusum").score_detail(values, _ts(300))
    assert cusum.score[200] >= 0.5
    assert cusum.score[203:].max() < 0.5  # the sums restart after the alarm
    assert abs(cusum.expected[260] - 10) < 1


def test_a_seasonal_slot_starts_from_the_overall_spread_not_from_zero() -> None:
    # One point per slot per day: on day 3 every slot is trusted with three points of its own.
    rng = np.random.default_rng(7)
    n = 288 * 4
    values = 100 + rng.normal(0, 5, n)
    seasonal = create("seasonal", bins=288).score_detail(values, _ts(n))
    day3 = slice(288 * 3, n)
    inside = (values[day3] >= seasonal.lower[day3]) & (values[day3] <= seasonal.upper[day3])
    assert inside.mean() > 0.88


def test_one_spike_barely_moves_the_overall_model_of_untrusted_seasonal_slots() -> None:
    values = 100 + np.random.default_rng(7).normal(0, 1, 288 * 2)
    spike = 288 + 100  # day 1: every slot has one point, so the overall model answers
    values[spike] = 200
    seasonal = create("seasonal", bins=288).score_detail(values, _ts(len(values)))
    assert abs(seasonal.expected[spike + 1] - seasonal.expected[spike]) < 0.25


def test_a_broken_first_reading_of_a_seasonal_slot_does_not_blind_that_time_of_day() -> None:
    # 1-minute points around 100; the first point of slot 1 (minutes 30-59) on day 1 reads 1e9.
    # Taken whole as the slot's mean, it made a 50 SD dip in that slot score 0 for 8 days.
    minute, day = 60_000, 1440
    n = day * 6
    values = 100 + np.random.default_rng(3).normal(0, 1, n)
    values[30] = 1e9
    dips = day * np.arange(1, 6) + 40
    values[dips] -= 50
    ts = _ts(1) + minute * np.arange(n, dtype=np.int64)
    seasonal = create("seasonal").score_detail(values, ts)
    assert seasonal.score[30] >= 0.5
    assert seasonal.score[dips].min() >= 0.5, seasonal.score[dips]
    assert abs(seasonal.expected[day + 40] - 100) < 5


@pytest.mark.parametrize("name", ["cusum", "seasonal"])
@pytest.mark.parametrize("reading", [1e20, -1e30])
def test_a_large_reading_in_warm_up_does_not_set_the_band_for_good(
    name: str, reading: float
) -> None:
    # Within what the state holds (under 1e36), but learned whole while nothing winsorized: the
    # variance (and cusum's mean) stayed of that size, and a 50 SD spike at 500 scored 0.
    values = 50 + np.random.default_rng(1).normal(0, 1, 600)
    values[3] = reading
    values[500] += 50
    detail = create(name).score_detail(values, _ts(600))
    assert detail.score[500] >= 0.5, detail.score[500]
    assert abs(detail.expected[499] - 50) < 5


def test_mad_expects_the_median_of_exactly_the_last_window_points() -> None:
    values = np.random.default_rng(8).normal(0, 1, 60)
    mad = create("mad", window=16, min_samples=4).score_detail(values, _ts(60))
    for i in range(4, 60):
        assert mad.expected[i] == np.median(values[max(0, i - 16) : i]), i
