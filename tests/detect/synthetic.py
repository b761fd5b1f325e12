"""Seeded synthetic series whose right answer is known, for testing anomaly detectors.

Each generator returns a :class:`Case`: timestamps (int64 ms UTC), values, the anomalies injected
(where each starts, how soon a detector must fire, how long after it alarms are not false) and how
long the detector may learn before its alarms count. Everything else is normal: an alarm there is
a false alarm. The series are built to look like operational metrics sampled every five minutes:
noise around a level, daily and weekly cycles, gaps, counters, small counts and heavy tails.

All sizes are in units of the noise's standard deviation (``SD``) unless said otherwise, so the
cases read the same whatever the level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.stats import t as student_t

__all__ = [
    "DAY",
    "HOUR",
    "PER_DAY",
    "PER_HOUR",
    "SD",
    "STEP",
    "T0",
    "WEEK",
    "Anomaly",
    "Case",
    "counter_with_resets",
    "drift_then_ramp",
    "first_day_burst",
    "flat_then_change",
    "heavy_tails",
    "level_shifts",
    "low_volume_counts",
    "missing_and_irregular",
    "regular_ts",
    "spikes_and_dips",
    "variance_change",
    "weekly_seasonality",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: Monday 2024-01-01 00:00 UTC, so that day 5 and 6 of every week are the weekend.
T0 = 1_704_067_200_000
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY
#: The sampling step of every case: five minutes.
STEP = 5 * MINUTE
PER_HOUR = HOUR // STEP
PER_DAY = DAY // STEP
#: Standard deviation of the Gaussian noise of the cases that have it.
SD = 1.0
LEVEL = 100.0


@dataclass(frozen=True)
class Anomaly:
    """One injected anomaly.

    ``onset`` is the index of its first point. A detector must alarm at one of the points
    ``onset .. onset + within``. Alarms from ``onset`` up to ``onset + settle`` (exclusive) are
    about this anomaly and are not false; any later alarm is (the new normal must be adopted).
    """

    label: str
    onset: int
    within: int = 0
    settle: int = 1


@dataclass(frozen=True)
class Case:
    """A series with its known answer (see the module docstring)."""

    name: str
    ts: IntArray
    values: FloatArray
    anomalies: tuple[Anomaly, ...] = ()
    #: Points the detector may learn from before an alarm counts as false.
    warmup: int = PER_DAY
    #: Points of interest that are *not* anomalies (e.g. counter resets).
    marks: tuple[int, ...] = ()
    #: Anything else the test needs to know (e.g. which points are a weekend).
    extra: dict[str, npt.NDArray[np.generic]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.values)

    def normal(self) -> BoolArray:
        """Points where the right answer is "no alarm": past the warm-up, outside every
        anomaly's settle window, with a value."""
        mask = np.isfinite(self.values)
        mask[: self.warmup] = False
        for a in self.anomalies:
            mask[a.onset : a.onset + a.settle] = False
        return mask


def regular_ts(n: int, step: int = STEP) -> IntArray:
    """``n`` timestamps ``step`` ms apart from :data:`T0`."""
    return T0 + step * np.arange(n, dtype=np.int64)


def _noise(rng: np.random.Generator, n: int, sd: float = SD) -> FloatArray:
    return rng.normal(0.0, sd, n)


def _daily(ts: IntArray, amplitude: float, peak_hour: float = 14.0) -> FloatArray:
    """A smooth daily cycle, highest at ``peak_hour`` UTC."""
    hour = (ts % DAY) / HOUR
    return amplitude * np.cos(2.0 * np.pi * (hour - peak_hour) / 24.0)


def _at(day: float, n_days: int) -> int:
    """Index of the point ``day`` days in (regular sampling)."""
    assert 0 <= day < n_days
    return int(round(day * PER_DAY))


def missing_and_irregular(seed: int) -> Case:
    """Two weeks of a daily cycle (amplitude 10 SD) sampled every 5 min +/- 2 min, with gaps of 2,
    5 and 9 hours, a run of 60 missing values (5 hours of NaN), 2% scattered NaN, a spike of
    +8 SD three points after the 5-hour gap and a dip of -8 SD ten points after the NaN run."""
    rng = np.random.default_rng(seed)
    n = 14 * PER_DAY
    steps = STEP + rng.integers(-2 * MINUTE, 2 * MINUTE + 1, n)
    steps[0] = 0
    gap_at = {3 * PER_DAY + 17: 2 * HOUR, 6 * PER_DAY + 101: 5 * HOUR, 9 * PER_DAY + 55: 9 * HOUR}
    for i, gap in gap_at.items():
        steps[i] += gap
    ts = T0 + np.cumsum(steps).astype(np.int64)
    values = LEVEL + _daily(ts, 10.0 * SD) + _noise(rng, n)
    nan_run = 8 * PER_DAY + 40
    values[nan_run : nan_run + 60] = np.nan
    scattered = rng.choice(np.arange(PER_DAY, n), n // 50, replace=False)
    spike = 6 * PER_DAY + 101 + 3
    dip = nan_run + 60 + 10
    # Keep the injected points and their neighbours present, so the known answer is clear.
    scattered = scattered[(np.abs(scattered - spike) > 2) & (np.abs(scattered - dip) > 2)]
    values[scattered] = np.nan
    values[spike] += 8.0 * SD
    values[dip] -= 8.0 * SD
    return Case(
        "missing_and_irregular",
        ts,
        values,
        (Anomaly("spike after a 5 h gap", spike), Anomaly("dip after 5 h of NaN", dip)),
        marks=tuple(sorted(gap_at)) + (nan_run,),
    )


def counter_with_resets(seed: int) -> Case:
    """A request counter over two weeks: Poisson(300) requests per 5 min with a daily cycle of
    +/- 30%, restarted (back to counting from zero) at day 4.3 and day 9.7, and an outage at
    day 12 (no requests for half an hour: the counter stands still). The resets are ``marks``,
    not anomalies; the outage is the one anomaly (of the rate: the raw counter just pauses)."""
    rng = np.random.default_rng(seed)
    n = 14 * PER_DAY
    ts = regular_ts(n)
    per_step = rng.poisson(300.0 * (1.0 + 0.3 * np.cos(2 * np.pi * (ts % DAY) / DAY)))
    per_step[0] = 0
    outage = _at(12.0, 14)
    per_step[outage : outage + 6] = 0
    resets = (_at(4.3, 14), _at(9.7, 14))
    values = np.cumsum(per_step).astype(np.float64) + 1e6  # a counter that has run for a while
    for r in resets:
        # The process restarted between r - 1 and r: it counts only what came since.
        values[r:] -= values[r - 1]
    return Case(
        "counter_with_resets",
        ts,
        values,
        (Anomaly("outage: no requests for 30 min", outage, within=2, settle=6 + PER_HOUR),),
        marks=resets,
    )


def level_shifts(seed: int) -> Case:
    """Two weeks of noise around a level; the level steps up by 10 SD at day 5 and down by 15 SD
    at day 9 (5 SD below where it started). Each step must alarm within 3 points and be the new
    normal an hour later."""
    rng = np.random.default_rng(seed)
    n = 14 * PER_DAY
    values = LEVEL + _noise(rng, n)
    up, down = _at(5.0, 14), _at(9.0, 14)
    values[up:] += 10.0 * SD
    values[down:] -= 15.0 * SD
    return Case(
        "level_shifts",
        regular_ts(n),
        values,
        (
            Anomaly("shift up 10 SD", up, within=3, settle=PER_HOUR),
            Anomaly("shift down 15 SD", down, within=3, settle=PER_HOUR),
        ),
    )


def spikes_and_dips(seed: int) -> Case:
    """Ten days of a daily cycle (amplitude 10 SD) with four one-point spikes of +8 SD and four
    dips of -8 SD at random times of day: most lie inside the range the series covers every
    day, so only the forecast for that time of day shows them."""
    rng = np.random.default_rng(seed)
    n = 10 * PER_DAY
    ts = regular_ts(n)
    values = LEVEL + _daily(ts, 10.0 * SD) + _noise(rng, n)
    # Eight points at least half a day apart after three days of learning.
    where = 3 * PER_DAY + np.arange(8) * (7 * PER_DAY // 8) + rng.integers(0, PER_DAY // 2, 8)
    anomalies = []
    for k, i in enumerate(where.tolist()):
        sign = 1.0 if k % 2 == 0 else -1.0
        values[i] += sign * 8.0 * SD
        anomalies.append(Anomaly("spike +8 SD" if sign > 0 else "dip -8 SD", i))
    return Case("spikes_and_dips", ts, values, tuple(anomalies))


def variance_change(seed: int) -> Case:
    """Two weeks of noise around a level whose standard deviation becomes 5 times larger at day 7
    and stays so. Must alarm within an hour (one wide point is not yet evidence), and the new
    noise must be normal a day later."""
    rng = np.random.default_rng(seed)
    n = 14 * PER_DAY
    values = LEVEL + _noise(rng, n)
    at = _at(7.0, 14)
    values[at:] = LEVEL + _noise(rng, n - at, 5.0 * SD)
    return Case(
        "variance_change",
        regular_ts(n),
        values,
        (Anomaly("noise x5", at, within=PER_HOUR, settle=PER_DAY),),
    )


def first_day_burst(seed: int) -> Case:
    """Two weeks of a daily cycle (amplitude 10 SD) with one burst of +40 SD for half an hour
    on the first evening (20:00), while the daily profile is still new. Nothing else happens:
    from day 3 on, the forecast's band must hold the ordinary evening values again
    (``extra["burst_slot"]`` marks the burst's half hour on every later day)."""
    rng = np.random.default_rng(seed)
    n = 14 * PER_DAY
    ts = regular_ts(n)
    values = LEVEL + _daily(ts, 10.0 * SD) + _noise(rng, n)
    at = 20 * PER_HOUR
    values[at : at + 6] += 40.0 * SD
    slot = np.zeros(n, bool)
    for day in range(3, 14):
        slot[day * PER_DAY + at : day * PER_DAY + at + 6] = True
    return Case("first_day_burst", ts, values, warmup=PER_DAY, extra={"burst_slot": slot})


def weekly_seasonality(seed: int) -> Case:
    """Four weeks of a daily cycle (amplitude 10 SD) plus a business-hours bump of 40 SD on
    weekdays only (weekends stay low), noise 2 SD. In week four, on Wednesday at the daily peak
    (14:00), the value drops by 12 SD (6 noise deviations; still far inside the range of every
    day) for half an hour. The first two weeks are for learning; ``extra["weekend"]`` marks the
    weekend points."""
    rng = np.random.default_rng(seed)
    n = 28 * PER_DAY
    ts = regular_ts(n)
    hour = (ts % DAY) / HOUR
    weekend = ((ts - T0) // DAY) % 7 >= 5
    bump = 40.0 * SD * np.exp(-(((hour - 14.0) / 3.0) ** 2))
    values = LEVEL + _daily(ts, 10.0 * SD) + np.where(weekend, 0.0, bump) + _noise(rng, n, 2 * SD)
    at = 23 * PER_DAY + 14 * PER_HOUR  # Wednesday of week four, 14:00
    values[at : at + 6] -= 12.0 * SD
    return Case(
        "weekly_seasonality",
        ts,
        values,
        (Anomaly("drop of 6 noise SD at a weekday peak", at, within=3, settle=6 + PER_HOUR),),
        warmup=14 * PER_DAY,
        extra={"weekend": weekend},
    )


def drift_then_ramp(seed: int) -> Case:
    """Four weeks of noise around a level that drifts up by 1 SD per day (28 SD in all: a slow
    trend, not an anomaly); at day 24 a ramp of 1 SD per point (288 times faster) climbs 24 SD in
    two hours and stays there. The ramp must alarm before it has moved 6 SD; after it the
    drift goes on and is normal again an hour after the ramp ends."""
    rng = np.random.default_rng(seed)
    n = 28 * PER_DAY
    values = LEVEL + _noise(rng, n) + SD * np.arange(n) / PER_DAY
    at = _at(24.0, 28)
    ramp = np.minimum(np.arange(n - at) + 1.0, 24.0) * SD
    values[at:] += ramp
    return Case(
        "drift_then_ramp",
        regular_ts(n),
        values,
        (Anomaly("ramp of 1 SD per point", at, within=5, settle=24 + PER_HOUR),),
    )


def low_volume_counts(seed: int, mean: float) -> Case:
    """Two weeks of Poisson(``mean``) counts per 5 min (0, 1, 2, ...: mostly zeros for small
    means), with a burst of 30 per 5 min for three points at day 10."""
    rng = np.random.default_rng(seed)
    n = 14 * PER_DAY
    values = rng.poisson(mean, n).astype(np.float64)
    at = _at(10.0, 14)
    values[at : at + 3] = 30.0
    return Case(
        f"low_volume_counts(mean={mean:g})",
        regular_ts(n),
        values,
        (Anomaly("burst to 30", at, within=2, settle=3 + PER_HOUR),),
    )


def heavy_tails(seed: int, dof: float) -> Case:
    """Two weeks of Student-t noise with ``dof`` degrees of freedom (scale 1: for dof 2, a few
    points beyond +/-10 every day), with one spike at day 10 of 50 standard deviations of the
    noise (dof > 2). For dof <= 2 the standard deviation is infinite and 50 of anything
    finite is ordinary (for dof 2, |T| > 60 happens about once in 3,700 points), so the spike
    is the noise's one-in-a-million quantile instead (1,000 for dof 2)."""
    rng = np.random.default_rng(seed)
    n = 14 * PER_DAY
    values = LEVEL + rng.standard_t(dof, n)
    at = _at(10.0, 14)
    if dof > 2:
        size = 50.0 * math.sqrt(dof / (dof - 2.0))
    else:
        size = float(student_t.isf(0.5e-6, dof))
    values[at] += size
    return Case(
        f"heavy_tails(dof={dof:g})",
        regular_ts(n),
        values,
        (Anomaly(f"spike +{size:.0f}", at),),
    )


def flat_then_change(seed: int, level: float) -> Case:
    """Five days of a constant ``level`` (a gauge that does not move, or an error rate of 0),
    with a single float-rounding jitter at day 1 (the constant plus 1e-12 of it, or 1e-15 at 0);
    at day 4 the value moves by 1% of the level (by 0.5 at level 0) and stays there."""
    del seed  # nothing random: the point is the exact constant
    n = 5 * PER_DAY
    values = np.full(n, level)
    jitter = _at(1.0, 5)
    values[jitter] = level + (abs(level) * 1e-12 if level else 1e-15)
    at = _at(4.0, 5)
    values[at:] += 0.01 * abs(level) if level else 0.5
    return Case(
        f"flat_then_change(level={level:g})",
        regular_ts(n),
        values,
        (Anomaly("small lasting change after days flat", at, within=3, settle=PER_HOUR),),
        marks=(jitter,),
    )
