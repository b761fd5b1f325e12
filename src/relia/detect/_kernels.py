"""Numba helpers shared by the detector kernels."""

from __future__ import annotations

import math

import numba

_SQRT2 = math.sqrt(2.0)


@numba.njit(cache=True, inline="always")
def z_score(z: float) -> float:
    """|z| -> [0, 1] on the log10 tail-probability scale (see ``relia.detect.base.z_to_score``)."""
    p = math.erfc(abs(z) / _SQRT2)
    if p <= 0.0:
        return 1.0
    s = -math.log10(p) / 10.0
    return 1.0 if s > 1.0 else s


@numba.njit(cache=True, inline="always")
def scale_floor(scale: float, level: float, rel: float, absolute: float) -> float:
    """Keep a spread estimate away from zero: a constant series must not make every change
    infinitely surprising, and the floor scales with the level (1% of 1e9 bytes is not 1% of 3)."""
    floor = max(rel * abs(level), absolute)
    return scale if scale > floor else floor
