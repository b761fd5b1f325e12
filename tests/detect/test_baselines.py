"""What each baseline is for: it finds what it is built to find, and stays quiet otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from relia.detect import create

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
