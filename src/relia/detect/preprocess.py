"""Turning raw samples into what a detector should watch.

A counter (requests served, bytes sent, errors) only grows, and drops back to zero when the process
that keeps it restarts. Its raw value is a poor thing to watch: it is a new maximum at every point
and its restarts look like crashes. What matters is how fast it grows, so counters are turned into
a rate per second first, the way Prometheus' ``rate()`` does.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from relia.errors import DataError

__all__ = ["counter_increase", "counter_to_rate"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def counter_increase(previous: npt.ArrayLike, current: npt.ArrayLike) -> FloatArray:
    """How much a counter grew from ``previous`` to ``current``, element-wise, reset-aware.

    A decrease is a reset: the counter restarted from zero, so it grew by ``current`` (a lower
    bound, as in Prometheus: what it counted before the restart after the previous sample is lost).
    NaN in either gives NaN.
    """
    prev = np.asarray(previous, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    # Any comparison with NaN is False, so NaN on either side takes the difference: NaN.
    return np.asarray(np.where(cur < prev, cur, cur - prev), dtype=np.float64)


def counter_to_rate(ts_ms: npt.ArrayLike, values: npt.ArrayLike) -> tuple[IntArray, FloatArray]:
    """Rate per second of a counter, one output row per input row (the same timestamps).

    Row *i* gets the reset-aware increase since the previous row with a finite value, divided by
    the seconds between them (so the increase across missing rows is spread over the whole gap
    and none of it is lost). Rows without a rate are NaN: the first finite row (nothing to
    compare with), rows whose value is NaN or infinite (missing), and rows whose timestamp is not
    after the previous finite row's (the increase over no time is undefined; it is dropped).
    For strictly increasing timestamps, the sum of ``rate * dt`` over the rows with a rate is the
    counter's total increase, resets included.

    Raises :class:`DataError` when the two arrays differ in length or are not one-dimensional.
    """
    ts = np.asarray(ts_ms, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    if ts.ndim != 1 or v.ndim != 1:
        raise DataError(f"expected one-dimensional series, got shapes {ts.shape} and {v.shape}")
    if ts.shape != v.shape:
        raise DataError(f"{len(ts)} timestamps for {len(v)} values")
    n = len(v)
    rate = np.full(n, np.nan)
    if n == 0:
        return ts.copy(), rate
    finite = np.isfinite(v)
    # Index of the latest finite row at or before each row; the previous finite row of row i is
    # that of row i - 1.
    last = np.maximum.accumulate(np.where(finite, np.arange(n), -1))
    prev = np.concatenate(([-1], last[:-1]))
    rows = np.flatnonzero(finite & (prev >= 0))
    before = prev[rows]
    dt_s = (ts[rows] - ts[before]) / 1000.0
    inc = counter_increase(v[before], v[rows])
    ok = dt_s > 0
    rate[rows[ok]] = inc[ok] / dt_s[ok]
    return ts.copy(), rate
