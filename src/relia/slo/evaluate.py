"""Evaluating SLOs against Prometheus: fetch per-step counts, run the budget math, and turn
firing burn-rate alerts into findings.

**What is asked of Prometheus.** Per SLO, one range query per count (bad and total; or the raw
error ratio; or the threshold query) at a fixed ``step``, with Sloth's ``{{.window}}``
placeholder replaced by the step: each sample then covers exactly the step before it, so the
samples add up to any longer window without overlap. Whether an event query answers a count or
a rate is read from the function its ``{{.window}}`` range is given to
(:func:`relia.slo.spec.counts_per_window`, shared with the Prometheus rules): ``increase``,
``count_over_time``, ``sum_over_time`` (and ``delta``, ``changes``) count the events in the step
and are used as they are; anything else (``rate``, ``irate``, and what cannot be classified, as
Sloth writes its queries) is a per-second rate, multiplied by the step. A ``good_query`` gives
``bad = total - good``. Several series in one answer are summed (events),
or refused (raw and threshold SLIs need one). Raw and threshold SLIs count one event per step
with data (see :func:`relia.slo.budget.raw_ratio_events`), so ``min_events`` counts steps there.

**The step.** 5 minutes by default (:data:`DEFAULT_STEP_S`): a 30-day window is 8,640 points
per query, under Prometheus's 11,000 per request, and 5 minutes is the shortest window of the
default alerts (and of Sloth's rules), long enough for ``rate()`` at the usual scrape intervals.
Longer ranges are split into several requests by :class:`PrometheusClient`. Timeslice methods
use a step that divides the slice (the slice itself up to 5 minutes); a threshold SLI is queried
once per slice. Alert windows shorter than the step are counted as one step.

**The range.** ``{{.window}}`` is the step, but never less than ``min_range_s``
(:data:`DEFAULT_MIN_RANGE_S`, 5m): a 1-minute slice queried as ``rate(x[1m])`` or
``increase(x[1m])`` needs two samples inside one minute, and on a Prometheus that scrapes every
minute there is rarely more than one, so every slice would come back empty. With a longer range
each step reads the events of the last ``range``: a rate is multiplied by the step as usual (the
mean rate over the range, times the step), and a count is scaled by ``step / range``. Totals
over long windows are unchanged; a single slice's ratio is that of the range ending at it, so a
1-minute outage touches the slices of the next ``range`` too. Set ``min_range_s`` to about twice
the scrape interval to keep slices sharp.

**The evaluation time** is rounded down to the step grid (and to the slice grid for timeslice
methods), so repeated evaluations line up and earlier samples can be kept: the engine's
:class:`SloEvaluator` fetches only the new steps (and the last few again, for late samples).
Data is fetched for the SLO window, or the longest alert window when that is longer (a calendar
window early in its period); the burn-rate alerts look back across the period boundary.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from relia.errors import DataError, SourceError
from relia.incidents.model import Finding, FindingKind, Severity
from relia.slo import budget as B
from relia.slo.burnrate import windows_for
from relia.slo.spec import (
    SLO,
    AlertWindow,
    BudgetingMethod,
    EventsSLI,
    RawSLI,
    ThresholdSLI,
    counts_per_window,
    format_duration,
)
from relia.sources.prometheus import RangeSeries

__all__ = [
    "AlertStatus",
    "CURRENT_WINDOW_S",
    "DEFAULT_MIN_RANGE_S",
    "DEFAULT_STEP_S",
    "DETECTOR",
    "EXHAUSTION_HORIZON_S",
    "REFETCH_STEPS",
    "RangeQuerier",
    "SloEvaluator",
    "SloFindings",
    "SloStatus",
    "evaluate_slo",
    "evaluate_slos",
    "evaluation_end_ms",
    "fetch_counts",
    "query_range_s",
    "status_from_counts",
    "step_for",
    "substitute_window",
]

log = logging.getLogger(__name__)

#: The default query step: 30 days are 8,640 points, under Prometheus's 11,000 per request.
DEFAULT_STEP_S = 300
#: The shortest range a query is given for ``{{.window}}``: short time slices are fetched at
#: their own step, but ``rate(x[1m])`` needs two samples within one minute, which a Prometheus
#: scraping every minute (its default) rarely has. 5m, the default step, is the range relia
#: uses everywhere else. Lower it (``--min-range``) to about twice the scrape interval for
#: sharper slices.
DEFAULT_MIN_RANGE_S = 300
#: The window of the "current" burn rate that the time to exhaustion extrapolates.
CURRENT_WINDOW_S = 3600
#: How far ahead a time to exhaustion still means something (100 years): past it, at a trickle of
#: errors (a burn rate of 3e-7 gave the year 59520), the budget never runs out. Beyond year 9999
#: such a date cannot even be written, and the report crashed trying.
EXHAUSTION_HORIZON_S = 100 * 365.25 * 86400
#: The ``detector`` of SLO findings.
DETECTOR = "slo-burn-rate"
#: Steps fetched again on each evaluation: Prometheus may still add samples to recent steps.
REFETCH_STEPS = 2

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_WINDOW = re.compile(r"\{\{\s*\.window\s*\}\}")
#: 10000-01-01T00:00:00Z: the first time ``format_ms`` cannot write (``datetime`` stops at 9999).
_END_OF_DATES_MS = 253_402_300_800_000


class RangeQuerier(Protocol):
    """What evaluation needs of a Prometheus client (:class:`PrometheusClient` has it)."""

    def query_range(
        self, query: str, start_ms: int, end_ms: int, step_s: float
    ) -> list[RangeSeries]: ...


def substitute_window(query: str, step_s: int) -> str:
    """The query with Sloth's ``{{.window}}`` replaced by the step (``300`` → ``5m``)."""
    return _WINDOW.sub(format_duration(step_s), query)


def query_range_s(step_s: int, min_range_s: int = DEFAULT_MIN_RANGE_S) -> int:
    """The range put in for ``{{.window}}`` at ``step_s``: the step, at least ``min_range_s``."""
    return max(step_s, min_range_s)


def step_for(slo: SLO, default_step_s: int = DEFAULT_STEP_S) -> int:
    """The query step of ``slo`` (see the module doc): ``default_step_s``, or for timeslice
    methods a step that divides the slice; a threshold SLI is queried once per slice."""
    slice_s = slo.timeslice_window_s
    if slice_s is None or slo.budgeting is BudgetingMethod.OCCURRENCES:
        return default_step_s
    if isinstance(slo.sli, ThresholdSLI):
        return slice_s
    return slice_s if slice_s <= default_step_s else math.gcd(slice_s, default_step_s)


def _grid_ms(slo: SLO, step_s: int) -> int:
    sliced = slo.budgeting is not BudgetingMethod.OCCURRENCES and slo.timeslice_window_s
    return (slo.timeslice_window_s if sliced else step_s) * 1000  # type: ignore[operator]


def evaluation_end_ms(slo: SLO, at_ms: int, step_s: int) -> int:
    """``at_ms`` rounded down to the step grid (the slice grid for timeslice methods)."""
    grid = _grid_ms(slo, step_s)
    return (at_ms // grid) * grid


# -- results -----------------------------------------------------------------------------------


def _within_horizon(exhaustion_s: float) -> float:
    """A time to exhaustion past :data:`EXHAUSTION_HORIZON_S` is no exhaustion: inf."""
    return math.inf if exhaustion_s > EXHAUSTION_HORIZON_S else exhaustion_s


def _num(x: float) -> float | None:
    # JSON has no NaN or infinity.
    return float(x) if math.isfinite(x) else None


@dataclass(frozen=True)
class AlertStatus:
    """One burn-rate alert of an SLO at the evaluation time.

    ``firing``: burn rates over both windows above ``burn_rate`` and the long window holds at
    least ``min_events`` events; ``low_traffic``: it would fire but for ``min_events``;
    ``disabled``: the spec turns this severity off (it is shown but raises no finding).
    """

    window: AlertWindow
    long_burn: float
    short_burn: float
    long_events: float
    firing: bool
    low_traffic: bool
    disabled: bool

    def to_dict(self) -> dict[str, Any]:
        w = self.window
        return {
            "severity": w.severity,
            "name": w.name,
            "long_window": format_duration(w.long_s),
            "short_window": format_duration(w.short_s),
            "burn_rate_threshold": w.burn_rate,
            "budget_percent": w.budget_percent,
            "long_burn_rate": _num(self.long_burn),
            "short_burn_rate": _num(self.short_burn),
            "long_window_events": _num(self.long_events),
            "firing": self.firing,
            "low_traffic": self.low_traffic,
            "disabled": self.disabled,
        }


@dataclass(frozen=True)
class SloStatus:
    """An SLO evaluated at ``at_ms``: its SLI, budget and alerts, and the burn-down series.

    Budget figures are in ``unit``: ``events``, ``slices`` for timeslice methods, or ``steps``
    for raw SLIs (an error ratio has no event counts: each query step with data weighs one, so
    the budget is a share of steps, whatever the traffic in them);
    ``spent_ratio`` and ``remaining_ratio`` are shares of the window's budget (negative
    remaining: overspent). ``exhaustion_s`` is inf when not burning (or when the budget would
    last past :data:`EXHAUSTION_HORIZON_S`), NaN without data.
    ``burn_down`` is the remaining share after each step of the window, at ``burn_down_ts``.
    """

    slo: SLO
    at_ms: int
    window_start_ms: int
    step_s: int
    sli: float
    events: float
    bad_events: float
    unit: Literal["events", "slices", "steps"]
    budget_total: float
    budget_spent: float
    budget_remaining: float
    spent_ratio: float
    remaining_ratio: float
    current_burn: float
    exhaustion_s: float
    alerts: tuple[AlertStatus, ...]
    burn_down_ts: I64 = field(repr=False)
    burn_down: F64 = field(repr=False)

    @property
    def firing(self) -> tuple[AlertStatus, ...]:
        """The alerts that fire (disabled ones included)."""
        return tuple(a for a in self.alerts if a.firing)

    @property
    def exhaustion_at_ms(self) -> int | None:
        """When the budget runs out at the current burn (None when it does not, or not within
        :data:`EXHAUSTION_HORIZON_S`, or not by the end of year 9999, the last date written)."""
        if not math.isfinite(self.exhaustion_s) or self.exhaustion_s > EXHAUSTION_HORIZON_S:
            return None
        at = self.at_ms + round(self.exhaustion_s * 1000)
        return at if at < _END_OF_DATES_MS else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (times as ISO-8601 UTC; NaN and infinity as null)."""
        from relia.timeparse import format_ms

        slo = self.slo
        exhausts = self.exhaustion_at_ms
        return {
            "id": slo.id,
            "service": slo.service,
            "name": slo.name,
            "source": str(slo.source),
            "at": format_ms(self.at_ms),
            "window": {
                "start": format_ms(self.window_start_ms),
                "end": format_ms(self.at_ms),
                "period": format_duration(slo.window.period_s),
                "rolling": slo.window.rolling,
            },
            "step": format_duration(self.step_s),
            "budgeting": slo.budgeting.value,
            "objective": slo.objective,
            "sli": _num(self.sli),
            "sli_percent": _num(self.sli * 100),
            "events": _num(self.events),
            "bad_events": _num(self.bad_events),
            "error_budget": {
                "unit": self.unit,
                "ratio": slo.error_budget,
                "total": _num(self.budget_total),
                "spent": _num(self.budget_spent),
                "remaining": _num(self.budget_remaining),
                "spent_ratio": _num(self.spent_ratio),
                "remaining_ratio": _num(self.remaining_ratio),
            },
            "current_burn_rate": {
                "window": format_duration(CURRENT_WINDOW_S),
                "value": _num(self.current_burn),
            },
            "exhaustion": {
                "seconds": _num(_within_horizon(self.exhaustion_s)),
                "at": format_ms(exhausts) if exhausts is not None else None,
            },
            "alerts": [a.to_dict() for a in self.alerts],
            "firing": [f"{a.window.severity}/{a.window.name}" for a in self.firing],
        }


# -- fetching ----------------------------------------------------------------------------------


def _on_grid(
    result: list[RangeSeries], start_ms: int, step_ms: int, n: int, *, combine: bool, what: str
) -> F64:
    """Samples of ``result`` on the grid ``start + j * step`` (NaN where none); several series
    are summed when ``combine``, else refused."""
    out = np.full(n, np.nan)
    if not result:
        return out
    if len(result) > 1 and not combine:
        raise DataError(
            f"{what} returned {len(result)} series; it must return one (aggregate it, e.g. "
            f"with sum() or max())"
        )
    for rs in result:
        idx = (rs.ts - start_ms) // step_ms
        ok = (idx >= 0) & (idx < n) & ((rs.ts - start_ms) % step_ms == 0)
        idx, vals = idx[ok], rs.values[ok]
        # NaN + value = value where one series has data: add into zeros, then restore NaN.
        seen = ~np.isnan(out[idx]) | ~np.isnan(vals)
        out[idx] = np.where(seen, np.nan_to_num(out[idx]) + np.nan_to_num(vals), np.nan)
    return out


def fetch_counts(
    client: RangeQuerier,
    slo: SLO,
    start_ms: int,
    end_ms: int,
    step_s: int,
    *,
    min_range_s: int = DEFAULT_MIN_RANGE_S,
) -> tuple[F64, F64]:
    """Per-step (bad, total) of ``slo`` on the grid ``start_ms, start_ms + step, … end_ms``
    (NaN where no data), from ``client``, with ``{{.window}}`` at least ``min_range_s`` (see the
    module doc). Raises :class:`SourceError` naming the SLO and query."""
    step_ms = step_s * 1000
    n = (end_ms - start_ms) // step_ms + 1
    range_s = query_range_s(step_s, min_range_s)

    def run(query: str, combine: bool, what: str) -> F64:
        q = substitute_window(query, range_s)
        try:
            result = client.query_range(q, start_ms, end_ms, step_s)
            values = _on_grid(result, start_ms, step_ms, n, combine=combine, what=what)
        except (SourceError, DataError) as exc:
            raise type(exc)(f"SLO {slo.id}: {what} {q!r}: {exc}", where=str(slo.source)) from None
        if combine and not counts_per_window(query):
            values = values * step_s  # a per-second rate over the range: events in the step
        elif combine and range_s != step_s:
            values = values * (step_s / range_s)  # events in the range: their share of the step
        return values

    sli = slo.sli
    if isinstance(sli, EventsSLI):
        total = run(sli.total_query, True, "total_query")
        if sli.error_query is not None:
            bad = run(sli.error_query, True, "error_query")
        else:
            assert sli.good_query is not None  # EventsSLI's own validator
            good = run(sli.good_query, True, "good_query")
            # No good series next to a total: no good events (as no error series is no errors).
            bad = np.maximum(total - np.nan_to_num(good), 0.0)
        return bad, total
    if isinstance(sli, RawSLI):
        return B.raw_ratio_events(run(sli.error_ratio_query, False, "error_ratio_query"))
    assert isinstance(sli, ThresholdSLI)
    return B.threshold_events(run(sli.query, False, "query"), sli.op, sli.value)


# -- evaluation --------------------------------------------------------------------------------


def _history_s(slo: SLO, windows: Sequence[AlertWindow], end_ms: int) -> tuple[int, int]:
    """(window start ms, seconds of data to fetch) for an evaluation ending at ``end_ms``."""
    start = B.window_start_ms(slo.window, end_ms, where=str(slo.source))
    longest = max([w.long_s for w in windows] + [CURRENT_WINDOW_S])
    return start, max((end_ms - start) // 1000, longest)


def status_from_counts(
    slo: SLO,
    bad: F64,
    total: F64,
    *,
    end_ms: int,
    step_s: int,
    windows: Sequence[AlertWindow] | None = None,
) -> SloStatus:
    """Evaluate ``slo`` on per-step counts whose last step ends at ``end_ms`` (pure)."""
    windows = tuple(windows if windows is not None else windows_for(slo))
    window_start = B.window_start_ms(slo.window, end_ms, where=str(slo.source))
    window_steps = (end_ms - window_start) // (step_s * 1000)
    params = B.SloParams.from_slos(
        [slo], [windows], step_s, window_s=[max(window_steps, 1) * step_s]
    )
    b, t = bad[None, :], total[None, :]
    r = B.evaluate(b, t, params, step_s=step_s, current_window_s=CURRENT_WINDOW_S)
    down = B.burn_down(b, t, params)[0]
    # The window's own figures. Exactly at a calendar boundary the new period has no steps yet:
    # it is empty (no data, as a window without samples), not the previous period's last step.
    # Burn rates and alerts look back across the boundary, so they keep ``r``.
    own = r
    if window_steps <= 0:
        none = np.full_like(t, np.nan)
        own = B.evaluate(none, none, params, step_s=step_s, current_window_s=CURRENT_WINDOW_S)
        down = np.full_like(down, np.nan)
    n = len(total)
    ts = end_ms - (n - 1 - np.arange(n, dtype=np.int64)) * step_s * 1000
    keep = ~np.isnan(down)
    alerting = slo.alerting
    alerts = []
    for j, w in enumerate(windows):
        long_b, short_b = float(r.long_burn[0, j]), float(r.short_burn[0, j])
        over = bool(r.over_threshold[0, j])
        severity_spec = getattr(alerting, w.severity, None) if alerting is not None else None
        firing = bool(r.firing[0, j])
        alerts.append(
            AlertStatus(
                window=w,
                long_burn=long_b,
                short_burn=short_b,
                long_events=float(r.long_events[0, j]),
                firing=firing,
                low_traffic=over and not firing,
                disabled=bool(severity_spec is not None and severity_spec.disabled),
            )
        )
    sliced = slo.budgeting is not BudgetingMethod.OCCURRENCES
    return SloStatus(
        slo=slo,
        at_ms=end_ms,
        window_start_ms=end_ms - max(window_steps, 0) * step_s * 1000,
        step_s=step_s,
        sli=float(own.sli[0]),
        events=float(own.events[0]),
        bad_events=float(own.bad_events[0]),
        unit="slices" if sliced else "steps" if isinstance(slo.sli, RawSLI) else "events",
        budget_total=float(own.budget_total[0]),
        budget_spent=float(own.budget_spent[0]),
        budget_remaining=float(own.budget_remaining[0]),
        spent_ratio=float(own.spent_ratio[0]),
        remaining_ratio=float(own.remaining_ratio[0]),
        current_burn=float(r.current_burn[0]),
        exhaustion_s=_within_horizon(float(own.exhaustion_s[0])),
        alerts=tuple(alerts),
        burn_down_ts=ts[keep],
        burn_down=down[keep],
    )


def evaluate_slo(
    client: RangeQuerier,
    slo: SLO,
    at_ms: int,
    *,
    step_s: int | None = None,
    min_range_s: int = DEFAULT_MIN_RANGE_S,
) -> SloStatus:
    """Fetch ``slo``'s counts from Prometheus and evaluate it at ``at_ms`` (rounded down to
    the step grid); ``min_range_s``: the shortest ``{{.window}}`` (see the module doc)."""
    step = step_for(slo) if step_s is None else step_s
    windows = windows_for(slo)
    end = evaluation_end_ms(slo, at_ms, step)
    _, history = _history_s(slo, windows, end)
    n = max(1, math.ceil(history / step))
    start = end - (n - 1) * step * 1000
    bad, total = fetch_counts(client, slo, start, end, step, min_range_s=min_range_s)
    return status_from_counts(slo, bad, total, end_ms=end, step_s=step, windows=windows)


def evaluate_slos(
    client: RangeQuerier,
    slos: Sequence[SLO],
    at_ms: int,
    *,
    step_s: int | None = None,
    min_range_s: int = DEFAULT_MIN_RANGE_S,
) -> list[SloStatus]:
    """:func:`evaluate_slo` for each SLO, in order."""
    return [evaluate_slo(client, s, at_ms, step_s=step_s, min_range_s=min_range_s) for s in slos]


@dataclass
class _History:
    end_ms: int
    step_s: int
    bad: F64
    total: F64


class SloEvaluator:
    """Evaluates a fixed list of SLOs again and again (``relia up``), fetching only the steps
    that are new since the previous evaluation (and the last :data:`REFETCH_STEPS` again).

    An SLO whose step grid has not moved since its previous evaluation is not evaluated again:
    :meth:`evaluate` returns its previous status.
    """

    def __init__(
        self,
        client: RangeQuerier,
        slos: Sequence[SLO],
        *,
        step_s: int | None = None,
        min_range_s: int = DEFAULT_MIN_RANGE_S,
    ) -> None:
        self.client = client
        self.slos = list(slos)
        self.step_s = step_s
        self.min_range_s = min_range_s
        self._windows = {s.id: windows_for(s) for s in self.slos}
        self._history: dict[str, _History] = {}
        self._last: dict[str, SloStatus] = {}

    def close(self) -> None:
        """Close the client, if it has a ``close()``."""
        closer = getattr(self.client, "close", None)
        if callable(closer):
            closer()

    def evaluate(self, now_ms: int) -> tuple[list[SloStatus], dict[str, str]]:
        """Every SLO at ``now_ms``: (statuses, errors by SLO id). One failing SLO (an
        unreachable server, a bad query) does not stop the others."""
        out: list[SloStatus] = []
        errors: dict[str, str] = {}
        for slo in self.slos:
            try:
                out.append(self._one(slo, now_ms))
            except (SourceError, DataError) as exc:
                errors[slo.id] = str(exc)
                log.warning("SLO %s not evaluated: %s", slo.id, exc)
        return out, errors

    def _one(self, slo: SLO, now_ms: int) -> SloStatus:
        step = step_for(slo) if self.step_s is None else self.step_s
        step_ms = step * 1000
        windows = self._windows[slo.id]
        end = evaluation_end_ms(slo, now_ms, step)
        last = self._last.get(slo.id)
        if last is not None and last.at_ms == end:
            return last
        _, history = _history_s(slo, windows, end)
        n = max(1, math.ceil(history / step))
        start = end - (n - 1) * step_ms
        bad = np.full(n, np.nan)
        total = np.full(n, np.nan)
        fetch_from = start
        old = self._history.get(slo.id)
        if old is not None and old.step_s == step and start <= old.end_ms < end:
            # Keep what is still inside the range, except the last steps (late samples).
            keep_until = old.end_ms - REFETCH_STEPS * step_ms
            old_n = len(old.total)
            old_ts = old.end_ms - (old_n - 1 - np.arange(old_n)) * step_ms
            sel = (old_ts >= start) & (old_ts <= keep_until)
            idx = (old_ts[sel] - start) // step_ms
            bad[idx], total[idx] = old.bad[sel], old.total[sel]
            fetch_from = max(start, keep_until + step_ms)
        b, t = fetch_counts(self.client, slo, fetch_from, end, step, min_range_s=self.min_range_s)
        j = (fetch_from - start) // step_ms
        bad[j:], total[j:] = b, t
        self._history[slo.id] = _History(end, step, bad, total)
        status = status_from_counts(slo, bad, total, end_ms=end, step_s=step, windows=windows)
        self._last[slo.id] = status
        return status


# -- findings ----------------------------------------------------------------------------------

_SEVERITY = {"page": Severity.CRITICAL, "ticket": Severity.WARNING}
#: Scores of SLO findings: they map back to the severities through ``severity_for_score``.
_SCORE = {"page": 1.0, "ticket": 0.75}


def _burn_text(x: float) -> str:
    return f"{x:.1f}x" if math.isfinite(x) else "n/a"


class SloFindings:
    """Turns firing burn-rate alerts into findings: one per SLO and severity (page, ticket)
    while it keeps firing, as Sloth raises one alert per severity.

    A finding's id depends on the SLO, the severity and when the episode began, so each
    evaluation re-emits the same finding with a later ``end`` (the store replaces it) and a new
    episode after a quiet spell is a new finding. An episode ends when an evaluation finds the
    severity no longer firing. ``seed`` re-opens episodes that were running at a restart.
    """

    def __init__(self, *, gap_ms: int) -> None:
        #: Longest time between two evaluations that still continues an episode.
        self.gap_ms = gap_ms
        self._open: dict[str, Finding] = {}

    @staticmethod
    def key(slo: SLO, severity: str) -> str:
        """The finding key of an SLO's page or ticket alert."""
        return f"{slo.id}:{severity}"

    def seed(self, findings: Sequence[Finding]) -> int:
        """Re-open the latest SLO finding of each key (from the store, at a restart); the next
        :meth:`update` continues it if it is still firing and recent enough. Returns how many."""
        n = 0
        for f in sorted(findings, key=lambda f: f.end):
            if f.kind is FindingKind.SLO and f.detector == DETECTOR:
                n += f.key not in self._open
                self._open[f.key] = f
        return n

    def update(self, statuses: Sequence[SloStatus]) -> list[Finding]:
        """New or extended findings for these statuses."""
        out: list[Finding] = []
        for st in statuses:
            # An episode goes on across evaluations up to gap_ms apart, plus two steps of the
            # SLO's grid (its evaluation time only moves in whole steps or slices).
            limit = self.gap_ms + 2 * _grid_ms(st.slo, st.step_s)
            for severity in ("page", "ticket"):
                key = self.key(st.slo, severity)
                hot = [a for a in st.alerts if a.window.severity == severity and a.firing]
                if any(a.disabled for a in hot):
                    hot = []
                if not hot:
                    self._open.pop(key, None)
                    continue
                prior = self._open.get(key)
                if prior is not None and st.at_ms - prior.end > limit:
                    prior = None  # too long since it was last seen firing: a new episode
                f = self._finding(st, severity, hot, prior)
                self._open[key] = f
                out.append(f)
        return out

    def _finding(
        self,
        st: SloStatus,
        severity: Literal["page", "ticket"],
        hot: list[AlertStatus],
        prior: Finding | None,
    ) -> Finding:
        slo = st.slo
        key = self.key(slo, severity)
        start = prior.start if prior is not None else st.at_ms
        worst = max(hot, key=lambda a: a.long_burn / a.window.burn_rate)
        w = worst.window
        evidence: dict[str, Any] = {
            "slo": slo.id,
            "service": slo.service,
            "objective": slo.objective,
            "severity": severity,
            "alert_name": slo.alerting.name if slo.alerting is not None else None,
            "windows": [a.to_dict() for a in st.alerts if a.window.severity == severity],
            "firing": [a.window.name for a in hot],
            "sli": _num(st.sli),
            "budget_remaining_ratio": _num(st.remaining_ratio),
            "budget_remaining": _num(st.budget_remaining),
            "budget_unit": st.unit,
            "current_burn_rate": _num(st.current_burn),
            "exhaustion_s": _num(st.exhaustion_s),
            "evaluated_at": st.at_ms,
            "evaluations": int(prior.evidence.get("evaluations", 0) if prior else 0) + 1,
        }
        remaining = (
            f"{st.remaining_ratio * 100:.1f}% of budget left"
            if math.isfinite(st.remaining_ratio)
            else "budget unknown"
        )
        summary = (
            f"SLO {slo.id} ({slo.objective:g}%) burning its error budget at "
            f"{_burn_text(worst.long_burn)} over {format_duration(w.long_s)} and "
            f"{_burn_text(worst.short_burn)} over {format_duration(w.short_s)} (threshold "
            f"{w.burn_rate:g}x, {severity}); {remaining}"
        )
        return Finding(
            id=Finding.make_id(FindingKind.SLO, key, start, DETECTOR),
            kind=FindingKind.SLO,
            key=key,
            series_id=None,
            start=start,
            end=max(st.at_ms, start),
            score=_SCORE[severity],
            severity=_SEVERITY[severity],
            detector=DETECTOR,
            summary=summary,
            evidence=evidence,
        )
