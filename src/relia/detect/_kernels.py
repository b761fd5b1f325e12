"""Numba helpers shared by the detector kernels."""

from __future__ import annotations

import math

import numba

_SQRT2 = math.sqrt(2.0)
_LN10 = math.log(10.0)
_HALF_LOG_PI_OVER_2 = 0.5 * math.log(math.pi / 2.0)
#: Surprise (-log10 p) that maps to a score of 0.5: p = 1e-5, |z| = 4.42.
SURPRISE_AT_HALF = 5.0
#: Readings larger than this in magnitude are broken (a sentinel, garbage parsed as a number):
#: scored, never learned. Squared in a variance, one of 1e154 would be infinite for good.
X_MAX = 1e36
#: Before a model is ready nothing is winsorized at ``clip`` scales (the scale is still being
#: learned), but a residual is still clipped at this many: ordinary warm-up points are far
#: inside it, and one reading of 1e20 in a series around 50 no longer sets the variance (and so
#: the band) for thousands of points.
WARM_REACH = 1000.0


@numba.njit(cache=True, inline="always")
def surprise(z: float) -> float:
    """-log10 of the two-sided Gaussian tail probability of |z|, without underflow.

    Past |z| = 30 erfc underflows; there its asymptotic form erfc(x) ~ exp(-x^2) / (x sqrt(pi))
    is exact to better than 1e-3 in log space.
    """
    a = abs(z)
    if a < 30.0:
        return -math.log10(math.erfc(a / _SQRT2))
    return (0.5 * a * a + math.log(a) + _HALF_LOG_PI_OVER_2) / _LN10


@numba.njit(cache=True, inline="always")
def surprise_score(s: float) -> float:
    """Surprise -> [0, 1): s / (s + 5). Hyperbolic rather than exponential so that even huge
    deviations keep ranking above large ones (float64 would round 1 - 2^-s to 1 past s ~ 53):
    |z| = 3 -> 0.34, 4.42 -> 0.5, 6.5 -> 0.67, 10 -> 0.82, 20 -> 0.95, 100 -> 0.998."""
    if s <= 0.0:
        return 0.0
    if s == math.inf:  # a z past 1e154 squares to infinity: as sure as can be, not inf / inf
        return 1.0
    return s / (s + SURPRISE_AT_HALF)


@numba.njit(cache=True, inline="always")
def z_score(z: float) -> float:
    """|z| -> [0, 1) on the surprise scale (see ``relia.detect.base.z_to_score``)."""
    return surprise_score(surprise(z))


@numba.njit(cache=True, inline="always")
def scale_floor(scale: float, level: float, rel: float, absolute: float) -> float:
    """Keep a spread estimate away from zero: a constant series must not make every change
    infinitely surprising, and the floor scales with the level (1% of 1e9 bytes is not 1% of 3)."""
    floor = max(rel * abs(level), absolute)
    return scale if scale > floor else floor


@numba.njit(cache=True, inline="always")
def learn_quantum(q: object, x: float) -> None:
    """Track the data's resolution: ``q = [last value, smallest non-zero step seen]``.

    Counts, integer gauges and rounded values have a MAD of zero for long stretches; the
    resolution is then the honest floor of the scale (a change of one unit is one unit, not
    infinitely many MADs)."""
    last = q[0]  # type: ignore[index]
    if not math.isnan(last):
        d = abs(x - last)
        if d > 0.0 and (q[1] == 0.0 or d < q[1]):  # type: ignore[index]
            q[1] = d  # type: ignore[index]
    q[0] = x  # type: ignore[index]
