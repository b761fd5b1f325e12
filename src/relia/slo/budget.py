"""Error budgets and burn rates for many SLOs at once: arrays in, arrays out.

The input is per-step aggregates, one row per SLO and one column per step (e.g. one minute):
``bad`` and ``total`` event counts, float32 or float64, NaN where there is no data. The last
column ends at the evaluation time. Conventions, shared by every function here:

- **No data.** A step whose ``total`` is NaN holds no events (its ``bad`` is ignored). A NaN
  ``bad`` next to a known ``total`` counts as 0 bad events: Prometheus answers nothing for a sum
  over no error series, which means no errors, not no data.
- **Units.** The budget is counted in *units*: events for ``occurrences``; slices for
  ``timeslices`` (a slice is one unit, bad when its good ratio ``(total - bad) / total`` is below
  ``timeslice_target``) and ``ratio_timeslices`` (a slice is one unit of which ``bad / total``
  is bad). A slice with no events (no data) is not counted at all: it neither spends nor earns
  budget. The SLI is ``1 - bad units / units``; the error budget is ``error_budget * units``.
- **Slices** are ``slice_steps`` columns long and aligned to the *end* of the arrays (the last
  column closes a slice); callers align the evaluation time to the slice grid.
- **Windows** are whole steps (or whole slices for slice methods, at least one) ending at the
  last column; a window longer than the data covers all of it.
- **Burn rate** over a window is ``(bad units / units) / error_budget``: 1 spends the budget in
  exactly one SLO period. An alert fires when the burn rate over both its long and its short
  window is strictly above its threshold (as Sloth's rules compare) and the long window holds at
  least ``min_events`` events.
- **Exhaustion**: remaining budget share / current spend rate, where a burn rate of ``b`` spends
  ``b / period_s`` of the budget per second; ``inf`` when not burning, 0 when already spent.

The heavy part, the sums over the windows, is one pass over each row in a Numba kernel
(:func:`window_sums`); :func:`window_sums_numpy` is the same in plain NumPy (cumulative sums),
kept as a cross-check and for the benchmark's comparison: on ``bench/slo.py``'s 10,000 SLOs x
43,200 minutes the kernel takes about 0.2 s, NumPy about 10 s (it makes several passes and
temporary arrays where the kernel reads each count once).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numba
import numpy as np
import numpy.typing as npt

from relia.errors import ConfigError, DataError
from relia.slo.spec import SLO, AlertWindow, BudgetingMethod, TimeWindow

__all__ = [
    "BudgetResult",
    "METHOD_CODES",
    "SloParams",
    "WindowSums",
    "burn_down",
    "evaluate",
    "raw_ratio_events",
    "rolling_burn_rate",
    "threshold_events",
    "window_start_ms",
    "window_sums",
    "window_sums_numpy",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Counts = npt.NDArray[np.float32] | npt.NDArray[np.float64]

#: Budgeting method → the integer code the kernels use.
METHOD_CODES: dict[BudgetingMethod, int] = {
    BudgetingMethod.OCCURRENCES: 0,
    BudgetingMethod.TIMESLICES: 1,
    BudgetingMethod.RATIO_TIMESLICES: 2,
}


# -- the kernel ----------------------------------------------------------------------------


# 'reassoc' lets LLVM vectorize the sums; no 'nnan': the NaN tests must stay.
_FASTMATH = {"reassoc", "contract"}

# The loops below run over views sliced to start at index 0: Numba then knows no index is
# negative and drops its wraparound check, which otherwise keeps LLVM from vectorizing (6x).


@numba.njit(cache=True, fastmath=_FASTMATH, inline="always")
def _sum_events(bad, total):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """(bad events, events) of 1-D views, with the no-data rules of the module doc."""
    sb = 0.0
    st = 0.0
    for c in range(total.shape[0]):
        t = total[c]
        b = bad[c]
        ok = t == t
        tv = t if ok else 0.0
        bv = b if b == b else 0.0
        bv = bv if ok else 0.0
        st += tv
        sb += bv
    return sb, st


@numba.njit(cache=True, fastmath=_FASTMATH, inline="always")
def _sum_one_step_slices(  # type: ignore[no-untyped-def]
    bad, total, meth, target
):  # pragma: no cover - compiled
    """(bad units, units, bad events, events) of 1-D views when every step is a slice."""
    su = 0.0
    sn = 0.0
    sb = 0.0
    st = 0.0
    for c in range(total.shape[0]):
        t = total[c]
        b = bad[c]
        ok = t == t
        tv = t if ok else 0.0
        bv = b if b == b else 0.0
        bv = bv if ok else 0.0
        counted = tv > 0.0
        safe = tv if counted else 1.0
        if meth == 1:
            u = 1.0 if (tv - bv) / safe < target else 0.0
        else:
            u = min(max(bv / safe, 0.0), 1.0)
        su += u if counted else 0.0
        sn += 1.0 if counted else 0.0
        sb += bv
        st += tv
    return su, sn, sb, st


@numba.njit(cache=True, parallel=True, fastmath=_FASTMATH)
def _window_sums_kernel(  # type: ignore[no-untyped-def]
    bad, total, method, slice_steps, slice_target, lengths, ubad, utot, ebad, etot
):  # pragma: no cover - compiled; checked against window_sums_numpy in the tests
    n, n_steps = bad.shape
    m = lengths.shape[1]
    for i in numba.prange(n):
        meth = method[i]
        k = max(slice_steps[i] if meth != 0 else 1, 1)
        max_units = n_steps // k
        order = np.argsort(lengths[i])
        rb = bad[i]
        rt = total[i]
        su = 0.0  # bad units so far, counted from the end backwards
        sn = 0.0  # units so far
        sb = 0.0  # bad events so far
        st = 0.0  # events so far
        done = 0  # units (steps or slices) consumed from the end
        for q in range(m):
            j = order[q]
            want = min(max(lengths[i, j] // k, 1), max_units)
            if want > done:
                if meth == 0:
                    # Occurrences: units are events; one vectorized loop over the new steps.
                    b_, t_ = _sum_events(rb[n_steps - want : n_steps - done],
                                         rt[n_steps - want : n_steps - done])  # fmt: skip
                    su += b_
                    sn += t_
                    sb += b_
                    st += t_
                elif k == 1:
                    lo, hi = n_steps - want, n_steps - done
                    u_, n_, b_, t_ = _sum_one_step_slices(rb[lo:hi], rt[lo:hi], meth,
                                                          slice_target[i])  # fmt: skip
                    su += u_
                    sn += n_
                    sb += b_
                    st += t_
                else:
                    target = slice_target[i]
                    for s in range(done, want):
                        hi = n_steps - s * k
                        bs, ts = _sum_events(rb[hi - k : hi], rt[hi - k : hi])
                        sb += bs
                        st += ts
                        if ts > 0.0:
                            sn += 1.0
                            if meth == 1:
                                if (ts - bs) / ts < target:
                                    su += 1.0
                            else:
                                su += min(max(bs / ts, 0.0), 1.0)
                done = want
            ubad[i, j] = su
            utot[i, j] = sn
            ebad[i, j] = sb
            etot[i, j] = st


def _check_counts(bad: npt.ArrayLike, total: npt.ArrayLike) -> tuple[Counts, Counts]:
    b, t = np.asarray(bad), np.asarray(total)
    if b.ndim != 2 or b.shape != t.shape:
        raise DataError(
            f"bad and total must be 2-D arrays of one shape (n_slos, n_steps), got "
            f"{b.shape} and {t.shape}"
        )
    # float32 counts (half the memory of float64) are summed in float64 by the kernel.
    dtype = b.dtype if b.dtype == t.dtype and b.dtype in (np.float32, np.float64) else np.float64
    out_b: Counts = np.ascontiguousarray(b, dtype=dtype)
    out_t: Counts = np.ascontiguousarray(t, dtype=dtype)
    return out_b, out_t


def _row_params(
    n: int, method: npt.ArrayLike, slice_steps: npt.ArrayLike, slice_target: npt.ArrayLike
) -> tuple[I64, I64, F64]:
    meth = np.broadcast_to(np.asarray(method, dtype=np.int64), (n,)).copy()
    k = np.broadcast_to(np.asarray(slice_steps, dtype=np.int64), (n,)).copy()
    tgt = np.broadcast_to(np.asarray(slice_target, dtype=np.float64), (n,)).copy()
    if np.any((meth < 0) | (meth > 2)):
        raise DataError("method codes must be 0 (occurrences), 1 (timeslices) or 2 (ratio)")
    if np.any(k < 1):
        raise DataError("slice_steps must be at least 1")
    return meth, k, tgt


@dataclass(frozen=True)
class WindowSums:
    """Sums over each window, each of shape ``(n_slos, n_windows)``: bad units and units (see
    the module doc), and the raw bad and total event counts of the same steps."""

    bad_units: F64
    units: F64
    bad_events: F64
    events: F64


def window_sums(
    bad: Counts,
    total: Counts,
    lengths: npt.ArrayLike,
    *,
    method: npt.ArrayLike = 0,
    slice_steps: npt.ArrayLike = 1,
    slice_target: npt.ArrayLike = 1.0,
) -> WindowSums:
    """Sums of the last ``lengths[i, j]`` steps of row ``i``, for every window ``j`` at once.

    ``lengths`` is ``(n_slos, n_windows)`` in steps (or a 1-D array used for every row);
    ``method``, ``slice_steps`` and ``slice_target`` are per row (or one value for all). One
    pass over each row (Numba, rows in parallel).
    """
    bad, total = _check_counts(bad, total)
    n = bad.shape[0]
    lens = np.asarray(lengths, dtype=np.int64)
    if lens.ndim == 1:
        lens = np.broadcast_to(lens, (n, len(lens)))
    lens = np.ascontiguousarray(lens)
    if lens.ndim != 2 or lens.shape[0] != n:
        raise DataError(f"lengths must be (n_slos, n_windows), got {lens.shape}")
    meth, k, tgt = _row_params(n, method, slice_steps, slice_target)
    shape = lens.shape
    out = [np.zeros(shape, np.float64) for _ in range(4)]
    if bad.shape[1] and shape[1]:
        _window_sums_kernel(bad, total, meth, k, tgt, lens, *out)
    return WindowSums(*out)


def _units_numpy(b: F64, t: F64, meth: int, k: int, target: F64) -> tuple[F64, F64, F64, F64]:
    """Per-unit arrays, newest first: bad units, units, bad events, events."""
    n_units = t.shape[1] // k
    cols = n_units * k
    if meth == 0:
        bs, ts = b[:, ::-1], t[:, ::-1]
    else:
        shape = (t.shape[0], n_units, k)
        bs = b[:, t.shape[1] - cols :][:, ::-1].reshape(shape).sum(axis=2)
        ts = t[:, t.shape[1] - cols :][:, ::-1].reshape(shape).sum(axis=2)
    if meth == 0:
        return bs, ts, bs, ts
    counted = ts > 0
    safe = np.where(counted, ts, 1.0)
    if meth == 1:
        ubad = (counted & ((ts - bs) / safe < target[:, None])).astype(np.float64)
    else:
        ubad = np.where(counted, np.clip(bs / safe, 0.0, 1.0), 0.0)
    return ubad, counted.astype(np.float64), bs, ts


def window_sums_numpy(
    bad: Counts,
    total: Counts,
    lengths: npt.ArrayLike,
    *,
    method: npt.ArrayLike = 0,
    slice_steps: npt.ArrayLike = 1,
    slice_target: npt.ArrayLike = 1.0,
    chunk: int = 256,
) -> WindowSums:
    """:func:`window_sums` in plain NumPy (cumulative sums, ``chunk`` rows at a time)."""
    bad, total = _check_counts(bad, total)
    n, n_steps = bad.shape
    lens = np.asarray(lengths, dtype=np.int64)
    if lens.ndim == 1:
        lens = np.broadcast_to(lens, (n, len(lens)))
    meth, k, tgt = _row_params(n, method, slice_steps, slice_target)
    k = np.where(meth == 0, 1, k)
    out = [np.zeros(lens.shape, np.float64) for _ in range(4)]
    if not n_steps or not lens.shape[1]:
        return WindowSums(*out)
    for mk in np.unique(np.stack([meth, k], axis=1), axis=0):
        rows_all = np.flatnonzero((meth == mk[0]) & (k == mk[1]))
        for lo in range(0, len(rows_all), chunk):
            rows = rows_all[lo : lo + chunk]
            t = total[rows].astype(np.float64)
            missing = np.isnan(t)
            t[missing] = 0.0
            b = bad[rows].astype(np.float64)
            b[missing | np.isnan(b)] = 0.0
            units = _units_numpy(b, t, int(mk[0]), int(mk[1]), tgt[rows])
            n_units = units[0].shape[1]
            if n_units == 0:  # fewer steps than one slice: every sum is 0
                continue
            want = np.clip(lens[rows] // mk[1], 1, n_units) - 1
            for arr, target in zip(units, out, strict=True):
                csum = np.cumsum(arr, axis=1)
                target[rows] = np.take_along_axis(csum, want, axis=1)
    return WindowSums(*out)


# -- parameters of many SLOs ----------------------------------------------------------------


@dataclass(frozen=True)
class SloParams:
    """Per-SLO parameters for :func:`evaluate`, arrays of one row per SLO.

    ``window_steps`` is the SLO window in steps (the rolling period, or the steps since the
    calendar boundary); ``long_steps``, ``short_steps`` and ``burn_threshold`` are
    ``(n_slos, n_alerts)``: SLOs with fewer alerts pad with NaN thresholds (never fire).
    ``min_events`` is 0 where unset.
    """

    error_budget: F64
    period_s: F64
    window_steps: I64
    method: I64
    slice_steps: I64
    slice_target: F64
    min_events: F64
    long_steps: I64
    short_steps: I64
    burn_threshold: F64

    @property
    def n(self) -> int:
        return len(self.error_budget)

    @classmethod
    def from_slos(
        cls,
        slos: Sequence[SLO],
        windows: Sequence[Sequence[AlertWindow]],
        step_s: float,
        *,
        window_s: Sequence[float] | None = None,
    ) -> SloParams:
        """Parameters of ``slos`` evaluated at ``step_s`` resolution; ``windows[i]`` are the
        alert windows of ``slos[i]``; ``window_s[i]`` overrides the window length (for
        calendar windows: the seconds since the period began)."""
        if len(windows) != len(slos):
            raise DataError(f"{len(slos)} SLOs but {len(windows)} lists of alert windows")
        if step_s <= 0:
            raise DataError(f"step must be positive, got {step_s}")
        n = len(slos)
        n_alerts = max((len(w) for w in windows), default=0)
        long_steps = np.ones((n, n_alerts), np.int64)
        short_steps = np.ones((n, n_alerts), np.int64)
        burn = np.full((n, n_alerts), np.nan)
        for i, ws in enumerate(windows):
            for j, w in enumerate(ws):
                long_steps[i, j] = _steps(w.long_s, step_s)
                short_steps[i, j] = _steps(w.short_s, step_s)
                burn[i, j] = w.burn_rate
        span = [s.window.period_s for s in slos] if window_s is None else list(window_s)
        slice_steps = []
        for s in slos:
            if s.timeslice_window_s is None or s.budgeting is BudgetingMethod.OCCURRENCES:
                slice_steps.append(1)
                continue
            k = s.timeslice_window_s / step_s
            if abs(k - round(k)) > 1e-9 or round(k) < 1:
                raise DataError(
                    f"step {step_s:g}s must divide the timeslice window {s.timeslice_window_s}s",
                    where=str(s.source),
                )
            slice_steps.append(round(k))
        return cls(
            error_budget=np.array([s.error_budget for s in slos], np.float64),
            period_s=np.array([s.window.period_s for s in slos], np.float64),
            window_steps=np.array([_steps(w, step_s) for w in span], np.int64),
            method=np.array([METHOD_CODES[s.budgeting] for s in slos], np.int64),
            slice_steps=np.array(slice_steps, np.int64),
            slice_target=np.array([_slice_target(s) for s in slos], np.float64),
            min_events=np.array([float(s.min_events or 0) for s in slos], np.float64),
            long_steps=long_steps,
            short_steps=short_steps,
            burn_threshold=burn,
        )


def _steps(seconds: float, step_s: float) -> int:
    # Whole steps, rounded up: a 90 s window at a 60 s step looks at 2 steps, never at 1.
    return max(1, math.ceil(seconds / step_s - 1e-9))


def _slice_target(slo: SLO) -> float:
    if slo.timeslice_target is not None:
        return slo.timeslice_target
    # A threshold SLI without a target: every step of the slice must meet the threshold.
    return 1.0


# -- evaluation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetResult:
    """Everything :func:`evaluate` computes, one entry (or row) per SLO.

    Units are events (occurrences) or slices (timeslice methods); ratios are of the error
    budget of the window. ``long_burn``, ``short_burn``, ``long_events``, ``over_threshold``
    (both windows above the alert's burn rate) and ``firing`` (that, and ``min_events`` met) are
    ``(n_slos, n_alerts)``. NaN where the window holds no data.
    """

    sli: F64
    events: F64
    bad_events: F64
    units: F64
    bad_units: F64
    budget_total: F64
    budget_spent: F64
    budget_remaining: F64
    spent_ratio: F64
    remaining_ratio: F64
    long_burn: F64
    short_burn: F64
    long_events: F64
    over_threshold: npt.NDArray[np.bool_]
    firing: npt.NDArray[np.bool_]
    current_burn: F64
    exhaustion_s: F64


def _ratio(bad_units: F64, units: F64) -> F64:
    """Bad share of the units; NaN where there are none."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(units > 0, bad_units / np.where(units > 0, units, 1.0), np.nan)


def evaluate(
    bad: Counts,
    total: Counts,
    params: SloParams,
    *,
    step_s: float,
    current_window_s: float = 3600.0,
    engine: Literal["numba", "numpy"] = "numba",
) -> BudgetResult:
    """SLI, error budget, burn rates, firing alerts and time to exhaustion of every SLO.

    ``bad``/``total`` are ``(n_slos, n_steps)`` per-step counts ending at the evaluation time
    (see the module doc); ``current_window_s`` is the window of the "current" burn rate that
    the time to exhaustion extrapolates.
    """
    n = params.n
    if np.shape(bad)[0] != n:
        raise DataError(f"{np.shape(bad)[0]} rows of counts for {n} SLOs")
    n_alerts = params.long_steps.shape[1]
    current = np.full((n, 1), _steps(current_window_s, step_s), np.int64)
    lengths = np.concatenate(
        [params.window_steps[:, None], current, params.long_steps, params.short_steps], axis=1
    )
    fn = window_sums if engine == "numba" else window_sums_numpy
    sums = fn(
        bad,
        total,
        lengths,
        method=params.method,
        slice_steps=params.slice_steps,
        slice_target=params.slice_target,
    )
    eb = params.error_budget
    units, bad_units = sums.units[:, 0], sums.bad_units[:, 0]
    has = units > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        sli = np.where(has, 1.0 - bad_units / np.where(has, units, 1.0), np.nan)
        budget_total = np.where(has, eb * units, np.nan)
        spent = np.where(has, bad_units, np.nan)
        spent_ratio = spent / budget_total
    ratios = _ratio(sums.bad_units[:, 1:], sums.units[:, 1:])  # error ratio of each window
    burns = ratios / eb[:, None]
    current_burn = burns[:, 0]
    long_burn = burns[:, 1 : 1 + n_alerts]
    short_burn = burns[:, 1 + n_alerts :]
    long_events = sums.events[:, 2 : 2 + n_alerts]
    # Error ratios against threshold x budget, as Sloth's alert expressions compare them (not
    # burn rates against thresholds: the division could round a ratio just over the line).
    limit = params.burn_threshold * eb[:, None]
    with np.errstate(invalid="ignore"):
        over = (ratios[:, 1 : 1 + n_alerts] > limit) & (ratios[:, 1 + n_alerts :] > limit)
    firing = over & (long_events >= params.min_events[:, None])
    remaining_ratio = 1.0 - spent_ratio
    exhaustion = _exhaustion(remaining_ratio, current_burn, params.period_s)
    return BudgetResult(
        sli=sli,
        events=np.where(has, sums.events[:, 0], np.nan),
        bad_events=np.where(has, sums.bad_events[:, 0], np.nan),
        units=units,
        bad_units=bad_units,
        budget_total=budget_total,
        budget_spent=spent,
        budget_remaining=budget_total - spent,
        spent_ratio=spent_ratio,
        remaining_ratio=remaining_ratio,
        long_burn=long_burn,
        short_burn=short_burn,
        long_events=long_events,
        over_threshold=over,
        firing=firing,
        current_burn=current_burn,
        exhaustion_s=exhaustion,
    )


def _exhaustion(remaining: F64, burn: F64, period_s: F64) -> F64:
    """Seconds until the remaining budget share is spent at ``burn``: remaining × period / burn.

    0 when nothing remains, inf when not burning (or no current data), NaN when the window has
    no data at all."""
    out = np.full(remaining.shape, np.inf)
    burning = np.isfinite(burn) & (burn > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(burning, remaining * period_s / np.where(burning, burn, 1.0), out)
    out = np.where(remaining <= 0, 0.0, out)
    return np.where(np.isnan(remaining), np.nan, out)


# -- series over time ------------------------------------------------------------------------


def rolling_burn_rate(
    bad: Counts, total: Counts, window_steps: int, error_budget: npt.ArrayLike
) -> F64:
    """The burn rate over the trailing ``window_steps`` steps at every step, ``(n, n_steps)``.

    Rolling sums through cumulative sums; NaN until a window is full and where it holds no
    events. ``error_budget`` is one value or one per row. Occurrences semantics (events).
    """
    bad, total = _check_counts(bad, total)
    if window_steps < 1:
        raise DataError(f"window must be at least one step, got {window_steps}")
    t = np.nan_to_num(total.astype(np.float64), nan=0.0)
    b = np.where(np.isnan(total) | np.isnan(bad), 0.0, bad.astype(np.float64))
    zero = np.zeros((t.shape[0], 1))
    ct = np.concatenate([zero, np.cumsum(t, axis=1)], axis=1)
    cb = np.concatenate([zero, np.cumsum(b, axis=1)], axis=1)
    w = window_steps
    out = np.full(t.shape, np.nan)
    if w <= t.shape[1]:
        st = ct[:, w:] - ct[:, :-w]
        sb = cb[:, w:] - cb[:, :-w]
        eb = np.broadcast_to(np.asarray(error_budget, np.float64).reshape(-1, 1), (t.shape[0], 1))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, w - 1 :] = np.where(st > 0, sb / np.where(st > 0, st, 1.0), np.nan) / eb
    return out


def burn_down(
    bad: Counts,
    total: Counts,
    params: SloParams,
) -> F64:
    """Budget remaining (share of the window's budget) after each step of the window,
    ``(n, n_steps)``: starts near 1 and falls to the current remaining share as the errors of
    the window are counted in time order. NaN before the window starts and before its first step
    with data; with slice methods the value changes at the end of each slice. For the burn-down
    chart."""
    bad, total = _check_counts(bad, total)
    n, n_steps = bad.shape
    out = np.full((n, n_steps), np.nan)
    for i in range(n):
        meth = int(params.method[i])
        k = 1 if meth == 0 else int(params.slice_steps[i])
        n_units = min(max(int(params.window_steps[i]) // k, 1), n_steps // k)
        cols = n_units * k
        t = total[i, n_steps - cols :].astype(np.float64)
        b = bad[i, n_steps - cols :].astype(np.float64)
        missing = np.isnan(t)
        t[missing] = 0.0
        b[missing | np.isnan(b)] = 0.0
        tgt = params.slice_target[i : i + 1]
        ubad, units, _, _ = _units_numpy(b[None, :], t[None, :], meth, k, tgt)
        ubad, units = ubad[0, ::-1], units[0, ::-1]  # oldest first again
        total_units = units.sum()
        if total_units <= 0:
            continue
        budget = params.error_budget[i] * total_units
        remaining = 1.0 - np.cumsum(ubad) / budget
        # Within a slice the value is the one before it; it changes at the slice's last step.
        before = np.concatenate([[1.0], remaining[:-1]])
        series = np.repeat(before, k)
        series[k - 1 :: k] = remaining
        # Nothing before the first step with data: drawn there, the budget looked kept.
        series[: int(np.argmax(~missing))] = np.nan
        out[i, n_steps - cols :] = series
    return out


# -- turning other SLIs into events --------------------------------------------------------


def threshold_events(
    values: npt.ArrayLike, op: Literal["lt", "lte", "gt", "gte"], threshold: float
) -> tuple[F64, F64]:
    """A threshold SLI as per-step events: each step with a value is one event, bad when the
    value does not meet ``value op threshold``; NaN (no data) stays NaN. Returns (bad, total)."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        good = {
            "lt": v < threshold,
            "lte": v <= threshold,
            "gt": v > threshold,
            "gte": v >= threshold,
        }[op]
    missing = np.isnan(v)
    total = np.where(missing, np.nan, 1.0)
    bad = np.where(missing, np.nan, np.where(good, 0.0, 1.0))
    return bad, total


def raw_ratio_events(error_ratio: npt.ArrayLike) -> tuple[F64, F64]:
    """A raw error-ratio SLI as per-step events: each step is one event of which
    ``error_ratio`` is bad (clipped to [0, 1]), so windows average the ratio over time as
    Sloth does for raw SLIs. Returns (bad, total)."""
    r = np.asarray(error_ratio, dtype=np.float64)
    missing = np.isnan(r)
    return np.where(missing, np.nan, np.clip(r, 0.0, 1.0)), np.where(missing, np.nan, 1.0)


# -- calendar windows ------------------------------------------------------------------------


def window_start_ms(window: TimeWindow, at_ms: int, *, where: str = "window") -> int:
    """Where the SLO window that ends at ``at_ms`` begins (ms UTC).

    Rolling: ``at - period``. Calendar-aligned: the last period boundary at or before ``at``,
    boundaries being ``calendar_start + k × period``; a period of whole days is stepped in the
    wall clock of ``timezone`` (a 1d period starts at local midnight on both sides of a DST
    change), any other period in absolute seconds.
    """
    period_ms = window.period_s * 1000
    if window.rolling:
        return at_ms - period_ms
    assert window.calendar_start is not None  # TimeWindow's own validator
    start = window.calendar_start
    tz: tzinfo = start.tzinfo or UTC  # no timezone given: the start's own zone, else UTC
    if window.timezone:
        try:
            tz = ZoneInfo(window.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"unknown time zone {window.timezone!r}", where=where) from None
    start = start.replace(tzinfo=tz) if start.tzinfo is None else start.astimezone(tz)
    at = datetime.fromtimestamp(at_ms / 1000, tz=UTC).astimezone(tz)
    if window.period_s % 86400:
        start_ms = round(start.timestamp() * 1000)
        return start_ms + ((at_ms - start_ms) // period_ms) * period_ms
    # Whole days: count periods in local wall-clock time (naive datetimes ignore DST shifts).
    days = window.period_s // 86400
    naive_start, naive_at = start.replace(tzinfo=None), at.replace(tzinfo=None)
    k = (naive_at - naive_start) // timedelta(days=days)
    while True:
        boundary = (naive_start + k * timedelta(days=days)).replace(tzinfo=tz)
        boundary_ms = round(boundary.timestamp() * 1000)
        if boundary_ms <= at_ms:
            return boundary_ms
        k -= 1  # the local-time boundary fell after ``at`` across a DST change
