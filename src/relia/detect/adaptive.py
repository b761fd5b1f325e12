"""Adaptive detector: a robust forecast whose surprises are calibrated to each series' history.

Five small parts, one Numba loop, under 2 KB of state per series:

* **Forecast.** A robust level (an EWMA whose step is clipped to one scale unit, so it tracks the
  median rather than the mean and one outlier barely moves it) plus a daily profile: one additive
  offset per slot of the day, found from the timestamp (irregular sampling and gaps are fine),
  plus a weekly correction: one offset per hour of the week for what the daily profile gets wrong
  on that day of the week (weekends, Monday mornings). The weekly offsets start at zero and learn
  slowly, so a series without a weekly cycle keeps them near zero. The expected value is
  ``level + daily + weekly``; the band is ``band_z`` robust scales around it. After
  ``persist`` points in a row outside the band on one side the level jumps to the new value: a
  new normal is adopted at once instead of alarming for hours. Each daily slot keeps its trust,
  how much closer to the data the forecast is with it than without it (in scales, within
  ``+/- slot_trust``), and is left out while that is negative; a slot that misses on one side for
  ``persist`` of its points in a row is relearned from the data, so a burst on a slot's first
  day is not forecast at that time of day for weeks.
* **Calibrated surprise.** The raw surprise of a point is ``log(1 + |residual| / resolution)`` (the
  resolution is the data's smallest step, 0.1% of its level, or a 100,000th of the range its
  learned points have covered, whichever is largest; alarms stay out of that range, so one broken
  reading cannot make every later residual look small), also smoothed over a few points. It
  is *not* compared with a Gaussian: decayed histograms of the series' own past surprises give its
  empirical tail probability, with an exponential tail past the largest surprise seen; a lone point
  counts when it is ``point`` times rarer than the smoothed surprise would need. There are two
  memories, and ``p`` is the larger of their two probabilities: a point must be rare among the
  recent surprises (about the last ``1 / long`` points) *and* in the series' lifetime (about the
  last ``1 / lifetime`` points, a year of 5-minute samples). The recent memory adapts to a new noise
  level within about a day of 5-minute points; the lifetime one remembers that this series has made
  surprises this large before (a monthly batch job, a loud month) after a quiet stretch made the
  recent memory forget them. Where the recent memory holds no surprise as large as this one (none
  in about its last 770 points), its probability is only an extrapolation, and the lifetime memory,
  which has seen far more of this series, says alone how rare the point is. The score is
  ``s / (s + 5)`` with ``s = -log10 p``, so a score means the same rarity in every series whatever
  its noise, heavy tails or integer steps: one threshold fits all series.
  Alarms (score 0.5 and up, rarer than 1 in 100,000) are kept out of the smoothed surprise and the
  histograms, as a thresholder keeps anomalies out of a model: one huge event must not blunt the
  detector for the next few hundred points. Only about ``persist`` alarms within the recent
  memory are kept out (a count that decays with it), so a lasting change in the noise is still
  learned, even when its alarms come between ordinary points.
* **Run evidence.** Events that matter are often runs of points that are each only a little
  unusual: a burst of spikes inside the usual range, a change of regime, a slow fall. A CUSUM of
  each point's calibrated rarity adds what every point rarer than 1 in ``10**run_allowance``
  (1 in 4) exceeds that by, and resets after an alarm. Its value is ranked against its own
  history in the same two memories, and the point's ``p`` is the smaller of the two: rare as a
  surprise, or rare as a run (component ``run``).
* **Onset, not continuation.** While values stay outside the band on one side, a point that is no
  more surprising than the worst point of that excursion so far scores half: it repeats what was
  already said. A new excursion, or one that gets worse, scores in full.
* **New range.** A value outside the forecast's band and beyond the range seen so far by more
  than ``margin`` of that range is anomalous at once, whatever its rarity: scored from the alarm
  level (0.5) in a new series up to 0.9 once it is ``_NEW_RANGE_MATURE`` points old, and higher
  the further past the range (a young series makes records of its noise often). A value past
  ``1e36`` in magnitude, beyond what the float32 profiles hold, scores 1 as a new range and is
  not learned at all: it is a broken reading, and learning it would overflow the state.

Components: ``above`` / ``below`` (the calibrated surprise, by the residual's sign),
``new_range`` and ``run``.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from pydantic import Field

from relia.detect._kernels import learn_quantum, scale_floor, surprise_score
from relia.detect.base import (
    MAX_COUNT,
    Detector,
    DetectorConfig,
    FloatArray,
    IntArray,
    State,
    finite,
)

__all__ = ["Adaptive", "AdaptiveConfig"]

# Layout of the scalar state ``st``.
(_N, _LEVEL, _SCALE, _VMIN, _VMAX, _SA, _INC, _TOT, _RUN, _PEAK, _KEPT, _LINC, _LTOT,
 _EVIDENCE, _Q) = range(15)  # fmt: skip
#: ``st[_Q:_Q + 2]`` is the resolution tracker ``[last value, smallest step]`` (learn_quantum).
#: ``st[_LMIN]``, ``st[_LMAX]``: the range of the points learned (alarms kept out), which sets
#: the surprise's unit; ``_VMIN``, ``_VMAX`` hold every point, for the new-range rule.
_LMIN, _LMAX = 16, 17
_NST = 18
#: ``st`` of a checkpoint written before the learned range (no ``_LMIN``, ``_LMAX``).
_NST_V4 = 16
#: ``st`` of a checkpoint written before the slots' trust (the tracker was its own array ``q``).
_NST_V3 = 14
#: ``st`` of a checkpoint written before the lifetime memory (no ``_LINC``, ``_LTOT``).
_NST_V1 = 11
#: ``st`` of a checkpoint written before the run evidence (no ``_EVIDENCE``).
_NST_V2 = 13
#: Histograms of surprises: bins of 0.5 in log(1 + |r| / resolution), up to e^12 (the top bin
#: takes everything past it; the exponential tail still ranks larger surprises higher).
_HB = 24
_HW = 0.5
#: Bins of the run evidence's histograms (log(1 + evidence), same width): up to e^8.
_RB = 16
#: Bins of the surprise histograms in checkpoints written before the run evidence.
_HB_V2 = 32
#: Width (in surprise units) of the exponential tail past the largest surprise seen.
_TAIL_W = 0.5
#: A histogram bin counts as holding a surprise while its weight is more than this share of a
#: new point's: with ``long`` = 0.003 a lone surprise counts as seen for ln(10) / 0.003, about
#: 770 points, though its weight in the recent tail probability halves every 230. Whether the
#: recent memory has seen a surprise this large decides whether the lifetime memory judges it
#: alone; forgetting that after 230 points (a share of 0.5) made each spike of a series that
#: spikes every few hundred points new again, to be judged by the lifetime memory alone.
_SEEN = 0.1
#: Score of a value outside the range seen so far (surprise 45: above all but extreme residuals).
_NEW_RANGE_SCORE = 0.9
#: Points after which a new range scores ``_NEW_RANGE_SCORE``; before, from ``_ALARM`` up. Of n
#: exchangeable points the newest is a record with probability 1/n, so a young series makes
#: records of its noise often: on Gaussian noise ``bench/young.py`` counts 38 new_range alarms per
#: 10,000 points in a series' first 300 points, 4.8 from 1,000 to 3,000, 0.4 from 3,000 to
#: 10,000. They still alarm (0.5 and up) but are no longer sure (under 0.9: warning severity, not
#: critical) until the series is as old as this; a break by several ranges still scores high.
#: NAB's scores do not move (its thresholds are under 0.5).
_NEW_RANGE_MATURE = 3000.0
#: The surprise's unit is at least this share of the range seen (besides the resolution and
#: ``rel_floor`` of the forecast), so a residual as large as the range still falls inside the
#: histograms (their top edge, e^11.5, is about 100,000 units). The resolution is the smallest
#: step seen: on continuous values it keeps shrinking (about 1/n), and around zero nothing else
#: floored the unit, so the same residual grew ever more surprising: noise of SD 1 around 0
#: alarmed 5 times in its first 2 million points and 101 times in the next 600,000.
_UNIT_OF_SPAN = 1e-5
#: Values larger than this in magnitude are out of the detector's range (float32 profiles hold
#: differences up to 3.4e38); they score ``_OUT_OF_RANGE_SCORE`` and are not learned.
_X_MAX = 1e36
#: In warm-up, a point further than this many scales from the forecast is kept out of the
#: histograms and the learned range and starts no daily slot. The range floors the unit only at
#: 1e-5 of it, so a point this near cannot move the unit past a hundredth of a scale; a broken
#: reading is millions of scales away. A first point this many times further from the next two
#: than they are from each other is a broken one (``_first_is_broken``).
_WARM_REACH = 1000.0
_OUT_OF_RANGE_SCORE = 1.0
#: The smallest resolution: far above the subnormals (below 2.2e-308), so that a share of a
#: scale (``_TRUST_STEP``, ``_UNIT_OF_SPAN``) is still a normal float and never 0.
_RES_MIN = 1e-290
#: The smallest ``p`` a memory gives (a surprise far past the histograms' extrapolated tail
#: would underflow to 0, and -log10(0) is infinite): a score of 0.984.
_P_MIN = 1e-300
_DAY_MS = 86_400_000
_WEEK_MS = 7 * _DAY_MS
#: Score from which a point is an alarm and is kept out of the calibration (p = 1e-5).
_ALARM = 0.5
#: What a continuation of an excursion, no worse than its peak so far, keeps of its score.
_CONTINUED = 0.5
#: The histogram's weights are float32 (state size): rescale well before they overflow.
_INC_MAX = 1e30
#: Daily slot counts saturate here (int8; only "seen at least twice" matters).
_CNT_MAX = 127.0
#: A slot's trust is stored as int8 in these steps of a scale (up to 7.9 scales fit).
_TRUST_STEP = 1.0 / 16.0
#: A slot's run of misses on one side is stored as int8 and saturates here.
_SLOT_RUN_MAX = 127.0


class AdaptiveConfig(DetectorConfig):
    alpha: float = Field(0.03, gt=0, lt=1, description="level step per point (in scale units)")
    beta: float = Field(0.02, gt=0, lt=1, description="EWMA weight of the scale")
    clip: float = Field(1.0, gt=0, description="level step is clipped to clip * scale")
    short: float = Field(0.2, gt=0, le=1, description="EWMA weight smoothing the surprise")
    long: float = Field(0.003, gt=0, lt=1, description="decay of the recent surprise histograms")
    lifetime: float = Field(
        1e-5, gt=0, lt=1, description="decay of the lifetime surprise histograms"
    )
    margin: float = Field(0.05, ge=0, description="share of the range a new extreme must exceed")
    bins: int = Field(48, ge=0, le=96, description="slots of the daily profile (0: none)")
    gamma: float = Field(0.1, gt=0, lt=1, description="EWMA weight of a daily slot")
    week_bins: int = Field(
        168, ge=0, le=168, description="slots of the weekly correction (0: none)"
    )
    week_gamma: float = Field(0.05, gt=0, lt=1, description="EWMA weight of a weekly slot")
    point: float = Field(
        10.0, ge=0, description="a lone point must be this many times rarer (0: off)"
    )
    persist: int = Field(
        20, ge=0, le=MAX_COUNT, description="points outside the band that make a new level"
    )
    min_samples: int = Field(
        64, ge=2, le=MAX_COUNT, description="points seen before any score is given"
    )
    band_z: float = Field(3.0, gt=0, description="half-width of the band, in scales")
    rel_floor: float = Field(1e-3, ge=0, description="resolution floor relative to the level")
    run_allowance: float = Field(
        0.6,
        ge=0,
        description="a point rarer than 10**-run_allowance adds to the run evidence (0: off)",
    )
    slot_trust: float = Field(
        6.0,
        ge=0,
        le=7.5,
        description="a daily slot's record of how much it helps the forecast, in scales, is kept "
        "within +/- this; a slot with a negative record is left out (0: every slot is used)",
    )


@numba.njit(cache=True, inline="always")
def _tail_prob(hist, inc, tot, v):  # type: ignore[no-untyped-def]
    """P(V >= v) under the decayed histogram, with one pseudo-count (so p > 0) and an exponential
    tail past the highest occupied bin (so ever larger surprises keep ranking higher); and whether
    the histogram holds a surprise at least as large (if not, ``p`` is an extrapolation)."""
    nb = hist.shape[0]
    j = int(v / _HW)
    if j >= nb:
        j = nb - 1
    if j == nb - 1:
        # The top bin holds every surprise past its lower edge: how much of it lies past v is
        # unknown, so it thins out like the extrapolated tail instead of ending at a bin width.
        tail = hist[j] * math.exp(-max(v / _HW - j, 0.0) * _HW / _TAIL_W)
    else:
        tail = hist[j] * (1.0 - (v / _HW - j))
    seen = hist[j] > _SEEN * inc
    for k in range(nb - 1, j, -1):
        tail += hist[k]
        if hist[k] > _SEEN * inc:
            seen = True
    p = (tail + inc) / (tot + inc)
    if not seen:
        hi = 0
        for k in range(j - 1, -1, -1):
            if hist[k] > _SEEN * inc:
                hi = k + 1
                break
        p *= math.exp(-max(v - hi * _HW, 0.0) / _TAIL_W)
    return p, seen


@numba.njit(cache=True, inline="always")
def _two_memory_prob(recent, life, st, v):  # type: ignore[no-untyped-def]
    """P(V >= v) from a recent and a lifetime histogram. Where the recent memory holds a
    surprise this large, the larger of the two: rare now *and* rare for this series. Where it
    holds none (none in about its last 770 points, see ``_SEEN``), it only knows that v is past
    what it remembers, so the lifetime memory, which has seen far more, says how rare v is."""
    p_recent, seen_recently = _tail_prob(recent, st[_INC], st[_TOT], v)
    p_life, _ = _tail_prob(life, st[_LINC], st[_LTOT], v)
    return max(max(p_recent, p_life) if seen_recently else p_life, _P_MIN)


@numba.njit(cache=True, inline="always")
def _grow_weight(hist, runs, st, row, i_inc, i_tot, decay):  # type: ignore[no-untyped-def]
    """The weight of the next point in one memory (histogram rows ``row, row + 1`` and run
    row ``row // 2``): the last one grown by ``1 / (1 - decay)``, which decays the past without
    touching every bin; all are rescaled when the weight gets large."""
    inc = st[i_inc]
    if inc == 0.0:
        inc = 1.0
    inc /= 1.0 - decay
    if inc > _INC_MAX:
        for j in range(_HB):
            hist[row, j] /= inc
            hist[row + 1, j] /= inc
        for j in range(_RB):
            runs[row // 2, j] /= inc
        st[i_tot] /= inc
        inc = 1.0
    st[i_inc] = inc
    return inc


@numba.njit(cache=True, inline="always")
def _first_is_broken(x, last, f, rel_floor):  # type: ignore[no-untyped-def]
    """Whether the second (``last``) and third (``x``) points agree and the first (the
    forecast ``f`` so far) is over ``_WARM_REACH`` times further from both: a broken first
    reading. Agreeing means their step, at least ``rel_floor`` of their size; two equal points
    say nothing of the noise, and then nothing is judged."""
    agree = max(abs(x - last), rel_floor * max(abs(x), abs(last)))
    return 0.0 < _WARM_REACH * agree < min(abs(x - f), abs(last - f))


@numba.njit(cache=True, inline="always")
def _forget(st, hist, runs, season, slots, week):  # type: ignore[no-untyped-def]
    """Everything learned back to its initial state, but the range of every point seen
    (``_VMIN``, ``_VMAX``) and the resolution tracker."""
    for k in range(_Q):
        if k != _VMIN and k != _VMAX:
            st[k] = 0.0
    hist[:] = 0.0
    runs[:] = 0.0
    season[:] = 0.0
    slots[:] = 0
    week[:] = 0.0


@numba.njit(cache=True)
def _adaptive_kernel(  # type: ignore[no-untyped-def]
    ts, values, st, hist, runs, season, slots, week, prm, score, expected, lower, upper, comp,
):  # fmt: skip
    # The parameters come packed in one array: each argument costs dispatch time per call, and
    # streaming calls the kernel once per point.
    alpha, beta, clip, short, long, margin = prm[0], prm[1], prm[2], prm[3], prm[4], prm[5]
    gamma, min_samples, band_z, rel_floor, persist = prm[6], prm[7], prm[8], prm[9], prm[10]
    point, week_gamma, lifetime, allowance = prm[11], prm[12], prm[13], prm[14]
    trust_cap = prm[15] / _TRUST_STEP
    slot_persist = min(persist, _SLOT_RUN_MAX)
    nb = season.shape[0]
    q = st[_Q : _Q + 2]  # the resolution tracker lives in st: one array fewer per call
    # Per daily slot: how often it was seen (saturating), its trust (in steps of _TRUST_STEP
    # scales) and its run of misses on one side; one int8 array keeps the checkpoint small and
    # streaming fast (each state array costs a little per call).
    scnt = slots[0]
    trust = slots[1]
    slot_run = slots[2]
    nw = week.shape[0]
    for i in range(values.shape[0]):
        x = values[i]
        n = st[_N]
        b = 0
        daily = 0.0
        if nb > 0:
            b = int((ts[i] % _DAY_MS) * nb // _DAY_MS)
            # A slot is used once seen twice, and only while it has not made the forecast worse.
            if scnt[b] >= 2.0 and trust[b] >= 0:
                daily = season[b]
        w = 0
        weekly = 0.0
        if nw > 0:
            w = int((ts[i] % _WEEK_MS) * nw // _WEEK_MS)
            weekly = week[w]
        seas = daily + weekly
        f = st[_LEVEL] + seas
        # The smallest step seen; until a first step (a constant series so far), a billionth of
        # the level, or 1e-9 at zero (where any unit is as good, and the first change is a new
        # range anyway). It was at least 1e-9 in absolute terms, which made values of order
        # 1e-9 deaf: noise of 1e-11 got a band of 300 SDs, where the same data in larger units
        # (ns instead of s) was judged in its own SDs. Scores do not depend on the unit of
        # measure.
        res = q[1] if q[1] > 0.0 else (1e-9 * abs(st[_LEVEL]) if st[_LEVEL] != 0.0 else 1e-9)
        # A step of a subnormal (5e-324) made a sixteenth of the scale 0, and a division by it
        # a ZeroDivisionError: the resolution is never below this.
        res = max(res, _RES_MIN)
        sc = scale_floor(st[_SCALE], f, rel_floor, res)
        if n >= min_samples:
            expected[i] = f
            lower[i] = f - band_z * sc
            upper[i] = f + band_z * sc
        if not math.isfinite(x):  # NaN is a missing point; so is ±inf (a division by zero)
            continue
        if abs(x) > _X_MAX:
            # Past what the float32 profiles can hold: a broken reading (a sentinel, garbage
            # parsed as a number), flagged as a new range and never learned, so it can neither
            # overflow the state nor widen the range that sets the surprise's unit.
            if n >= min_samples:
                score[i] = _OUT_OF_RANGE_SCORE
                comp[i] = 2
            continue
        if n == 2.0 and _first_is_broken(x, q[0], f, rel_floor):
            # Taken as the level, a broken first reading would set the resolution and the
            # scale, the daily slots would take the gap whole, and a dip of 100 SDs would score
            # 0.04 for good. The model starts again from this point, as if the first two had
            # not been seen (the range of every point keeps them).
            _forget(st, hist, runs, season, slots, week)
            q[1] = 0.0
            learn_quantum(q, x)
            st[_LEVEL] = x
            st[_LMIN] = x
            st[_LMAX] = x
            st[_N] = 1.0
            continue
        learn_quantum(q, x)
        if n < 1.0:
            st[_LEVEL] = x
            st[_VMIN] = x
            st[_VMAX] = x
            st[_LMIN] = x
            st[_LMAX] = x
            st[_N] = 1.0
            continue
        r = x - f
        # Raw surprise in units of the data's resolution; the histogram does the scaling.
        floor = max(rel_floor * abs(f), res)
        # The range that floors the unit leaves alarms out (as the histograms do): one broken
        # reading of 1e9 in a series around 100 would otherwise make the unit 10,000, every later
        # residual a surprise of about 0, and the detector deaf for good.
        unit = max(floor, _UNIT_OF_SPAN * (st[_LMAX] - st[_LMIN]))
        u = math.log1p(abs(r) / unit)
        sa = st[_SA] + short * (u - st[_SA])
        outside = abs(r) > band_z * sc
        s = 0.0
        evidence = 0.0
        le = 0.0
        if n >= min_samples:
            # Rows 0-1 of hist: the recent memory (smoothed, point); rows 2-3: the lifetime one.
            # Row 0 of runs: recent run evidence; row 1: lifetime.
            p = _two_memory_prob(hist[0], hist[2], st, sa)
            p_point = _two_memory_prob(hist[1], hist[3], st, u)
            if point > 0.0:
                p = min(p, point * p_point)
            p_run = 1.0
            if allowance > 0.0:
                # Run evidence: a CUSUM of the points' calibrated rarity (-log10 p). Each point
                # rarer than 10**-run_allowance adds what it exceeds by, so a run of points that
                # are each only a little unusual (a burst of in-range spikes, a change of
                # regime) builds up where no single point would alarm. It is ranked against its
                # own history like the surprise, not against the CUSUM tail of independent
                # points: real series make runs far more often than independent noise would.
                evidence = max(st[_EVIDENCE] - math.log10(p_point) - allowance, 0.0)
                le = math.log1p(evidence)
                p_run = _two_memory_prob(runs[0], runs[1], st, le)
            s = surprise_score(-math.log10(min(p, p_run)))
            c = -1
            if s > 0.0:
                c = 3 if p_run < p else (0 if r >= 0.0 else 1)
            # A new extreme by a margin of the range, and outside the forecast's band (so a
            # trend making ever-new highs along its forecast does not fire). Graded by how far
            # beyond, so larger breaks still rank higher.
            span = st[_VMAX] - st[_VMIN]
            excess = max(x - st[_VMAX], st[_VMIN] - x) - margin * span
            if excess > 0.0 and outside:
                e = excess / (excess + span + res)
                sure = _ALARM + (_NEW_RANGE_SCORE - _ALARM) * min(1.0, n / _NEW_RANGE_MATURE)
                s_new = sure + (1.0 - sure) * e
                if s_new > s:
                    s = s_new
                    c = 2
            # The same excursion (outside the band on the same side as the points before) adds
            # news only when it gets worse than its peak so far.
            out = s
            if outside and st[_RUN] * r > 0.0:
                if s <= st[_PEAK]:
                    out = _CONTINUED * s
                else:
                    st[_PEAK] = s
            else:
                st[_PEAK] = s if outside else 0.0
            score[i] = out
            comp[i] = c
        # Learn the surprise: decay by growing the weight of new points (rescaled when large)
        # rather than shrinking every bin at every point.
        inc = _grow_weight(hist, runs, st, 0, _INC, _TOT, long)
        linc = _grow_weight(hist, runs, st, 2, _LINC, _LTOT, lifetime)
        # Alarms kept out lately: a count that decays with the recent memory (about its last
        # 1 / long points), not a run, so alarms that keep coming between ordinary points are
        # learned too.
        kept = st[_KEPT] * (1.0 - long)
        far = n < min_samples and abs(r) > _WARM_REACH * sc
        learned = True
        if s >= _ALARM and kept < persist:
            learned = False
            # An alarm is not learned as an ordinary surprise (neither in the smoothed surprise
            # nor in the histograms), unless alarms keep coming; it spends the run evidence.
            st[_KEPT] = kept + 1.0
            st[_EVIDENCE] = 0.0
        elif far:
            # Warm-up scores nothing, so no alarm keeps a broken reading (1e9 in a series around
            # 100) out of the histograms and the learned range: one this far from the robust
            # level is kept out here.
            learned = False
            st[_KEPT] = kept
        else:
            st[_KEPT] = kept
            st[_SA] = sa
            j_sa = min(int(sa / _HW), _HB - 1)
            j_u = min(int(u / _HW), _HB - 1)
            hist[0, j_sa] += inc
            hist[1, j_u] += inc
            st[_TOT] += inc
            hist[2, j_sa] += linc
            hist[3, j_u] += linc
            st[_LTOT] += linc
            if n >= min_samples and allowance > 0.0:
                st[_EVIDENCE] = evidence
                j_run = min(int(le / _HW), _RB - 1)
                runs[0, j_run] += inc
                runs[1, j_run] += linc
        # Robust forecast update: the level moves at most alpha * clip scales per point.
        rc = min(max(r, -clip * sc), clip * sc)
        level = st[_LEVEL] + alpha * rc
        run = st[_RUN]
        if outside:
            run = run + math.copysign(1.0, r) if run * r > 0.0 else math.copysign(1.0, r)
        else:
            run = 0.0
        if persist > 0 and abs(run) >= persist:
            # Outside the band on one side for `persist` points: a new normal, taken at once.
            level = x - seas
            run = 0.0
            if n < min_samples:
                # In warm-up the points learned so far were of a level now left (a broken first
                # reading, or a start before a step): the learned range starts again from here.
                st[_LMIN] = x
                st[_LMAX] = x
        st[_RUN] = run
        st[_LEVEL] = level
        if nb > 0:
            miss = x - level - weekly - season[b]
            if scnt[b] >= 2.0:
                if trust_cap > 0.0:
                    # The slot's trust: how much closer to the data the forecast is with the slot
                    # than without it, in scales, summed over its points and capped. A one-off
                    # burst copied into a slot on its first day, or a slot gone stale, soon has
                    # negative trust and is left out instead of being forecast every day.
                    gain = (abs(x - level - weekly) - abs(miss)) / (sc * _TRUST_STEP)
                    trust[b] = round(min(max(trust[b] + gain, -trust_cap), trust_cap))
                if slot_persist > 0.0:
                    # Missed on one side, outside the band, for `persist` of its points in a
                    # row: the slot is relearned from the data, as the level is.
                    if abs(miss) > band_z * sc:
                        if slot_run[b] * miss > 0.0:
                            slot_run[b] = slot_run[b] + (1 if miss > 0.0 else -1)
                        else:
                            slot_run[b] = 1 if miss > 0.0 else -1
                    else:
                        slot_run[b] = 0
                    if abs(slot_run[b]) >= slot_persist:
                        season[b] = x - level - weekly
                        slot_run[b] = 0
                        trust[b] = 0
            if scnt[b] == 0.0:
                # A slot is not started from a warm-up point far from the level: after a broken
                # first reading (the level), every slot would take the gap whole and hide it.
                if not far:
                    season[b] = x - level - weekly
                    scnt[b] = 1.0
            else:
                step = x - level - weekly - season[b]  # not `miss`: the slot may be relearned
                season[b] += gamma * min(max(step, -clip * sc), clip * sc)
                if scnt[b] < _CNT_MAX:
                    scnt[b] += 1.0
        if nw > 0:
            # The weekly slot learns what level and daily profile miss at this hour of the week.
            week[w] += week_gamma * min(max(x - level - daily - week[w], -clip * sc), clip * sc)
        # The scale (for the band and the level's step) is a winsorized mean absolute residual.
        st[_SCALE] += beta * (min(abs(r), 4.0 * sc) - st[_SCALE])
        st[_VMIN] = min(st[_VMIN], x)
        st[_VMAX] = max(st[_VMAX], x)
        if learned:
            st[_LMIN] = min(st[_LMIN], x)
            st[_LMAX] = max(st[_LMAX], x)
        # Where the range sets the surprise's unit, a wider range makes every later surprise
        # smaller: the histograms move down with it, so what they hold stays in the unit that
        # new surprises are measured in (a spike of 10 SDs after one of 1,000 is again rare).
        # Only a widening of a bin or more at once moves them: following many small ones would
        # need the unit of the last move in the state.
        after = max(floor, _UNIT_OF_SPAN * (st[_LMAX] - st[_LMIN]))
        shift = int(math.log(after / unit) / _HW) if after > unit else 0
        if shift > 0:
            for row in range(4):
                for j in range(1, _HB):
                    to = max(j - shift, 0)
                    hist[row, to] += hist[row, j]
                    hist[row, j] = 0.0
            st[_SA] = max(st[_SA] - shift * _HW, 0.0)
        st[_N] = n + 1.0


@numba.njit(cache=True)
def _adaptive_point(t, x, st, hist, runs, season, slots, week, prm):  # type: ignore[no-untyped-def]
    """One streaming point through the batch kernel; returns its score.

    The one-point arrays are made here, in compiled code, rather than kept per detector and
    refilled from Python: seven fewer objects to pass per call, and no per-point NumPy item
    assignment in the interpreter (bench/streaming.py).
    """
    ts = np.empty(1, np.int64)
    ts[0] = t
    values = np.empty(1)
    values[0] = x
    score = np.zeros(1)
    expected = np.full(1, np.nan)
    lower = np.full(1, np.nan)
    upper = np.full(1, np.nan)
    comp = np.full(1, -1, np.int8)
    _adaptive_kernel(
        ts, values, st, hist, runs, season, slots, week, prm, score, expected, lower, upper, comp
    )
    return score[0]


class Adaptive(Detector):
    """Robust level + daily profile + weekly correction forecast; each point's surprise is scored
    by how rare it is in the series' own history of surprises (alarms kept out), and so is the
    run evidence (a CUSUM of the points' rarity); the continuation of an excursion scores half,
    and a value beyond the range seen so far fires at once.
    Components: ``above`` / ``below`` the forecast, ``new_range``, ``run``."""

    name = "adaptive"
    config_class = AdaptiveConfig
    components = ("above", "below", "new_range", "run")
    config: AdaptiveConfig

    def _initial_state(self) -> State:
        # Profiles and histograms are float32 and slot counts uint8, which keeps the checkpoint
        # under 2 KB; their precision is far finer than the noise they describe.
        b = self.config.bins
        return {
            "st": np.concatenate([np.zeros(_Q), [np.nan, 0.0, 0.0, 0.0]]),
            "hist": np.zeros((4, _HB), np.float32),
            "runs": np.zeros((2, _RB), np.float32),
            "season": np.zeros(b, np.float32),
            "slots": np.zeros((3, b), np.int8),
            "week": np.zeros(self.config.week_bins, np.float32),
        }

    def load_state_dict(self, checkpoint: dict[str, Any]) -> None:
        """Restore a checkpoint; one written before the lifetime memory, the run evidence, the
        slots' trust or the learned range existed is upgraded (its lifetime memory starts as a
        copy of its recent one, its run evidence starts empty, every slot starts trusted, the
        learned range starts as the whole range) rather than refused."""
        upgraded = _upgrade_v1(checkpoint, self.config)
        upgraded = _upgrade_v3(_upgrade_v2(upgraded, self.config), self.config)
        upgraded = _upgrade_v4(upgraded)
        super().load_state_dict(upgraded)

    def _check_state(self, state: State) -> str | None:
        # The smoothed surprise becomes a histogram bin (int(sa / _HW)) and the memories' weights
        # and totals divide: a negative or non-finite one would index out of bounds. Every
        # value of st is finite (the resolution tracker's last value is NaN before a point).
        st = state["st"]
        q_last = np.zeros(len(st), bool)
        q_last[_Q] = True
        if not finite(st[~q_last]) or not finite(st[_Q : _Q + 1], allow_nan=True):
            return "a non-finite value in st"
        nonneg = [_N, _SCALE, _SA, _INC, _TOT, _KEPT, _LINC, _LTOT, _EVIDENCE, _Q + 1]
        if not finite(st[nonneg], lo=0.0):
            return "a negative count, weight, scale or surprise in st"
        if not finite(state["hist"], lo=0.0) or not finite(state["runs"], lo=0.0):
            return "a non-finite or negative histogram weight"
        if not finite(state["season"]) or not finite(state["week"]):
            return "a non-finite profile value"
        if not finite(state["slots"][0], lo=0.0):
            return "a negative slot count"
        return None

    def _params(self) -> FloatArray:
        prm: FloatArray | None = self.__dict__.get("_prm")
        if prm is None:
            c = self.config
            prm = np.array(
                [c.alpha, c.beta, c.clip, c.short, c.long, c.margin, c.gamma, c.min_samples,
                 c.band_z, c.rel_floor, c.persist, c.point, c.week_gamma, c.lifetime,
                 c.run_allowance, c.slot_trust]
            )  # fmt: skip
            self._prm = prm
        return prm

    def update(self, ts: int, value: float) -> float:
        """Score one point and learn it: the same kernel as batch scoring, entered through a
        compiled one-point wrapper (the generic path refills seven one-point arrays per call)."""
        t = int(ts)
        st = self._state
        # int() and float() keep the compiled signature fixed whatever number types come in.
        score: float = _adaptive_point(
            t, float(value), st["st"], st["hist"], st["runs"], st["season"],
            st["slots"], st["week"], self._params(),
        )  # fmt: skip
        self._n_seen += 1
        last = self._last_ts
        self._last_ts = t if last is None or t > last else last
        return score

    def _run(self, ts: IntArray, values: FloatArray, state: State, out: State) -> None:
        prm = self._params()
        _adaptive_kernel(
            ts, values, state["st"], state["hist"], state["runs"], state["season"],
            state["slots"], state["week"], prm, out["score"],
            out["expected"], out["lower"], out["upper"], out["component"],
        )  # fmt: skip


def _old_layout(
    checkpoint: dict[str, Any], added: str, nst: int, hist_rows: int
) -> tuple[dict[str, Any], dict[str, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]] | None:
    """Config, state, ``st`` and ``hist`` of a checkpoint written before config field ``added``
    existed, in that version's layout (``nst`` scalars, ``hist_rows`` rows of the old bins);
    None for anything else, which the ordinary checks then accept or refuse."""
    old_config = checkpoint.get("config")
    state = checkpoint.get("state")
    if not (isinstance(old_config, dict) and isinstance(state, dict)) or added in old_config:
        return None
    st, hist = state.get("st"), state.get("hist")
    if not (isinstance(st, np.ndarray) and isinstance(hist, np.ndarray)):
        return None
    if st.shape != (nst,) or hist.shape != (hist_rows, _HB_V2):
        return None
    return old_config, state, st, hist


def _upgrade_v1(checkpoint: dict[str, Any], config: AdaptiveConfig) -> dict[str, Any]:
    """A checkpoint from before the lifetime histograms in the next layout, else unchanged."""
    old = _old_layout(checkpoint, "lifetime", _NST_V1, 2)
    if old is None:
        return checkpoint
    old_config, state, st, hist = old
    return {
        **checkpoint,
        "config": {**old_config, "lifetime": config.lifetime},
        "state": {
            **state,
            "st": np.concatenate([st, [st[_INC], st[_TOT]]]),
            "hist": np.concatenate([hist, hist]),
        },
    }


def _upgrade_v2(checkpoint: dict[str, Any], config: AdaptiveConfig) -> dict[str, Any]:
    """A checkpoint from before the run evidence in today's layout, else unchanged: the
    surprise histograms lose their top bins (merged into the new top one), the run evidence
    and its histograms start empty."""
    old = _old_layout(checkpoint, "run_allowance", _NST_V2, 4)
    if old is None:
        return checkpoint
    old_config, state, st, hist = old
    merged = hist[:, :_HB].copy()
    merged[:, -1] += hist[:, _HB:].sum(axis=1)
    return {
        **checkpoint,
        "config": {**old_config, "run_allowance": config.run_allowance},
        "state": {
            **state,
            "st": np.concatenate([st, [0.0]]),
            "hist": merged,
            "runs": np.zeros((2, _RB), np.float32),
        },
    }


def _upgrade_v4(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint from before the learned range in today's layout, else unchanged: the learned
    range starts as the range of every point seen."""
    state = checkpoint.get("state")
    if not isinstance(state, dict):
        return checkpoint
    st = state.get("st")
    if not (isinstance(st, np.ndarray) and st.shape == (_NST_V4,)):
        return checkpoint
    learned = np.array([st[_VMIN], st[_VMAX]], dtype=st.dtype)
    return {**checkpoint, "state": {**state, "st": np.concatenate([st, learned])}}


def _upgrade_v3(checkpoint: dict[str, Any], config: AdaptiveConfig) -> dict[str, Any]:
    """A checkpoint from before the daily slots' trust in today's layout, else unchanged: the
    resolution tracker ``q`` moves into ``st``, the slot counts into row 0 of ``slots``, and
    every slot starts trusted, with no run of misses."""
    old_config = checkpoint.get("config")
    state = checkpoint.get("state")
    if not (isinstance(old_config, dict) and isinstance(state, dict)) or "slot_trust" in old_config:
        return checkpoint
    counts, st, q = state.get("scnt"), state.get("st"), state.get("q")
    if "slots" in state or not isinstance(counts, np.ndarray) or counts.ndim != 1:
        return checkpoint
    if not (isinstance(st, np.ndarray) and isinstance(q, np.ndarray)):
        return checkpoint
    if st.shape != (_NST_V3,) or q.shape != (2,):
        return checkpoint
    slots = np.zeros((3, counts.shape[0]), np.int8)
    slots[0] = np.minimum(counts, _CNT_MAX)
    rest = {k: v for k, v in state.items() if k not in ("scnt", "q")}
    return {
        **checkpoint,
        "config": {**old_config, "slot_trust": config.slot_trust},
        "state": {**rest, "st": np.concatenate([st, q]), "slots": slots},
    }
