"""The adaptive detector on synthetic series whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from relia.detect import conformance
from relia.detect.adaptive import Adaptive, AdaptiveConfig
from relia.detect.checkpoint import pack
from relia.errors import DetectorError

T0 = 1_600_000_000_000
FIVE_MIN = 300_000
ABOVE, BELOW, NEW_RANGE = (Adaptive.components.index(c) for c in ("above", "below", "new_range"))


def _ts(n: int, step: int = FIVE_MIN) -> np.ndarray:
    return T0 + step * np.arange(n, dtype=np.int64)


def _noise(n: int, seed: int = 1, sd: float = 1.0) -> np.ndarray:
    return 100.0 + np.random.default_rng(seed).normal(0.0, sd, n)


@pytest.mark.parametrize("check", conformance.CHECKS, ids=lambda c: c.__name__)
def test_conformance(check: conformance.Factory) -> None:
    check(Adaptive)  # type: ignore[arg-type]


def test_spike_and_dip_are_the_top_scores_with_their_component() -> None:
    n = 3000
    values = _noise(n)
    values[2000] += 12.0
    values[2500] -= 12.0
    d = Adaptive().score_detail(values, _ts(n))
    top = set(np.argsort(d.score)[-2:].tolist())
    assert top == {2000, 2500}
    assert d.score[2000] >= 0.5 and d.score[2500] >= 0.5
    assert d.component[2000] in (ABOVE, NEW_RANGE)
    assert d.component[2500] in (BELOW, NEW_RANGE)
    # The band explains the alarm: the spike lies outside it, ordinary points inside.
    assert d.upper[2000] < values[2000] and d.lower[2500] > values[2500]
    inside = (values[500:1900] >= d.lower[500:1900]) & (values[500:1900] <= d.upper[500:1900])
    assert inside.mean() > 0.95


def test_spike_inside_the_range_is_found_against_the_forecast() -> None:
    # A level that moved: 60 is inside the range seen (40..100) but far from today's level.
    values = np.concatenate([_noise(1500, sd=1.0) - 60.0, _noise(1500, 2, sd=1.0)])
    values[2500] = 60.0
    d = Adaptive().score_detail(values, _ts(3000))
    assert d.component[2500] == BELOW
    assert int(np.argmax(d.score[2000:])) + 2000 == 2500


def test_level_shift_alarms_then_becomes_the_new_normal() -> None:
    n = 4000
    values = _noise(n)
    values[2000:] += 8.0
    scores = Adaptive().score(values, _ts(n))
    before = scores[500:2000]
    assert scores[2000:2020].max() > before.max()
    # Hours later the new level is normal again.
    assert np.quantile(scores[3200:], 0.99) <= np.quantile(before, 0.995) + 0.05


def test_variance_increase_is_flagged() -> None:
    n = 3000
    rng = np.random.default_rng(3)
    values = 100.0 + rng.normal(0.0, 1.0, n)
    values[2000:] = 100.0 + rng.normal(0.0, 6.0, n - 2000)
    scores = Adaptive().score(values, _ts(n))
    assert scores[2000:2100].max() > scores[500:2000].max()


def test_daily_seasonality_is_learned() -> None:
    n = 288 * 12  # twelve days of five-minute points
    ts = _ts(n)
    day = 2 * np.pi * (ts % 86_400_000) / 86_400_000
    values = 100.0 + 30.0 * np.sin(day) + np.random.default_rng(4).normal(0.0, 1.0, n)
    # On day 11 at the daily peak the value sits at the daily mean: inside the range seen, only
    # anomalous for its time of day.
    peak = 288 * 10 + 72  # 06:00, sin = 1
    values[peak : peak + 6] = 100.0
    d = Adaptive().score_detail(values, ts)
    late = slice(288 * 4, 288 * 10)
    err = np.abs(values[late] - d.expected[late])
    assert np.median(err) < 4.0  # the profile follows a cycle of amplitude 30
    assert d.score[peak : peak + 6].max() > d.score[late].max()


def test_weekly_load_with_daily_cycle_does_not_alarm_constantly() -> None:
    n = 288 * 14
    ts = _ts(n)
    day = 2 * np.pi * (ts % 86_400_000) / 86_400_000
    weekend = ((ts // 86_400_000) % 7) >= 5
    values = 100.0 + 30.0 * np.sin(day) - 20.0 * weekend + np.random.default_rng(5).normal(0, 2, n)
    scores = Adaptive().score(values, ts)
    assert (scores[n // 4 :] >= 0.5).mean() < 0.01


def test_slow_drift_is_not_an_anomaly() -> None:
    n = 5000
    values = _noise(n) + 0.01 * np.arange(n)  # 50 noise deviations over the series
    values[4000] += 12.0
    scores = Adaptive().score(values, _ts(n))
    assert int(np.argmax(scores[500:])) + 500 == 4000
    assert (scores[500:] >= 0.5).sum() <= 3


def test_low_volume_integer_counts() -> None:
    n = 4000
    values = np.random.default_rng(6).poisson(0.5, n).astype(np.float64)
    calm = Adaptive().score(values, _ts(n))
    assert (calm[500:] >= 0.5).mean() < 0.005
    values[3000:3005] = 15.0
    burst = Adaptive().score(values, _ts(n))
    assert burst[3000:3005].max() > calm[500:].max()
    assert burst[3000:3005].max() >= 0.5


@pytest.mark.parametrize("seed", [7, 8])
def test_heavy_tails_are_calibrated_like_gaussian_noise(seed: int) -> None:
    # The same share of alarms whatever the noise: per-series calibration, not a Gaussian z.
    n = 6000
    rng = np.random.default_rng(seed)
    gauss = 100.0 + rng.normal(0.0, 1.0, n)
    heavy = 100.0 + rng.standard_t(1.5, n)
    share = [(Adaptive().score(v, _ts(n))[1000:] >= 0.5).mean() for v in (gauss, heavy)]
    assert share[0] < 0.01 and share[1] < 0.01


def test_long_flat_stretch_then_real_move() -> None:
    n = 3000
    values = np.full(n, 7.0)
    values[::97] = 8.0  # a rare one-unit blip keeps the resolution known
    flat = Adaptive().score_detail(values, _ts(n))
    assert np.nanmax(np.abs(flat.expected[100:] - 7.0)) < 1.0
    values[2500:] = 30.0
    moved = Adaptive().score(values, _ts(n))
    assert moved[2500] >= 0.5
    assert moved[2500] > flat.score[100:].max()


def test_missing_points_and_irregular_sampling() -> None:
    n = 3000
    rng = np.random.default_rng(9)
    ts = T0 + np.cumsum(rng.integers(60_000, 600_000, n)).astype(np.int64)
    values = _noise(n, 10)
    values[1000:1200] = np.nan
    values[rng.choice(n, 100, replace=False)] = np.nan
    values[1500] = 115.0
    d = Adaptive().score_detail(values, ts)
    assert np.all(d.score[np.isnan(values)] == 0.0)
    assert int(np.nanargmax(d.score)) == 1500
    # While values are missing the model still says what it expects.
    assert np.isfinite(d.expected[1000:1200]).all()


def test_new_range_component_fires_on_a_new_extreme() -> None:
    n = 2000
    values = _noise(n, 11)
    values[1500] = 200.0
    d = Adaptive().score_detail(values, _ts(n))
    assert d.component[1500] == NEW_RANGE
    assert d.score[1500] >= 0.9


def test_no_scores_before_min_samples() -> None:
    values = _noise(100)
    values[10] = 1e6
    d = Adaptive(min_samples=40).score_detail(values, _ts(100))
    assert np.all(d.score[:40] == 0.0) and np.all(np.isnan(d.expected[:40]))
    assert np.isfinite(d.expected[40:]).all()


def test_state_is_small() -> None:
    det = Adaptive()
    det.score(_noise(500), _ts(500))
    assert sum(a.nbytes for a in det.state_dict()["state"].values()) <= 2048
    assert len(pack(det.state_dict())) <= 2048


def test_update_matches_score_detail_after_checkpoint() -> None:
    values = _noise(800, 12)
    ts = _ts(800)
    a = Adaptive()
    a.score(values[:400], ts[:400])
    b = Adaptive()
    b.load_state_dict(a.state_dict())
    streamed = [b.update(int(t), float(v)) for t, v in zip(ts[400:], values[400:], strict=True)]
    np.testing.assert_allclose(a.score(values[400:], ts[400:]), streamed, atol=1e-12)


def test_invalid_parameter_is_a_detector_error() -> None:
    with pytest.raises(DetectorError, match="alpha"):
        Adaptive(alpha=2.0)
    assert AdaptiveConfig().model_dump()["bins"] == 48
