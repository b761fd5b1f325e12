"""``GET /api/v1/slos``: the error budgets and burn-rate alerts of the configured SLOs, as the
engine last evaluated them (:meth:`relia.engine.loop.Engine.slo_statuses`).

Nothing is evaluated on request: SLO evaluation queries Prometheus over whole SLO windows, which
is the engine's SLO thread's job, so this answers from memory at once. Times are int64 ms UTC;
ratios and burn rates that have no value (no data yet) are ``null``.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from relia.engine.loop import Engine
from relia.slo.evaluate import CURRENT_WINDOW_S, AlertStatus, SloStatus
from relia.slo.spec import SLO, format_duration

__all__ = ["SloAlertOut", "SloList", "SloOut", "slos_router"]


def _num(x: float) -> float | None:
    # JSON has no NaN or infinity.
    return float(x) if math.isfinite(x) else None


class SloAlertOut(BaseModel):
    """One multi-window burn-rate alert of an SLO."""

    severity: str = Field(description="page or ticket")
    name: str = Field(description="e.g. quick or slow")
    long_window: str
    short_window: str
    long_window_seconds: int
    short_window_seconds: int
    burn_rate_threshold: float = Field(description="fires when both burn rates exceed this")
    budget_percent: float = Field(description="share of the budget the threshold stands for")
    long_burn_rate: float | None
    short_burn_rate: float | None
    long_window_events: float | None
    firing: bool
    low_traffic: bool = Field(description="would fire but for the SLO's min_events")
    disabled: bool = Field(description="the spec turns this severity off")


class SloWindowOut(BaseModel):
    period: str = Field(description="e.g. 30d")
    period_seconds: int
    rolling: bool
    start: int | None = Field(description="start of the evaluated window, ms UTC")
    end: int | None = Field(description="end of the evaluated window, ms UTC")


class SloBudgetOut(BaseModel):
    unit: str = Field(
        description="events; slices for timeslice methods; steps (query steps) for a raw SLI"
    )
    total: float | None
    spent: float | None
    remaining: float | None
    spent_ratio: float | None
    remaining_ratio: float | None = Field(description="share left; negative when overspent")


class SloOut(BaseModel):
    """One SLO and, once evaluated, its budget and burn rates."""

    id: str
    service: str
    name: str
    description: str
    objective: float = Field(description="percent of good events promised, e.g. 99.9")
    error_budget_ratio: float = Field(description="allowed bad share, (100 - objective) / 100")
    budgeting: str
    window: SloWindowOut
    evaluated: bool = Field(description="false until the engine has evaluated it once")
    at: int | None = Field(description="evaluation time, ms UTC")
    error: str | None = Field(description="why the latest evaluation failed, if it did")
    sli: float | None = Field(description="good share over the window")
    events: float | None
    bad_events: float | None
    remaining_ratio: float | None = Field(description="error budget left (same as budget's)")
    budget: SloBudgetOut | None
    current_burn_rate: float | None
    current_window: str
    exhaustion_at: int | None = Field(description="when the budget runs out at the current burn")
    alerts: list[SloAlertOut]
    firing: list[str] = Field(description="firing alerts as severity/name")


class SloList(BaseModel):
    configured: bool = Field(description="false when relia.yaml has no slos section")
    interval_seconds: float | None
    last_evaluation: int | None = Field(description="last evaluation round, ms UTC")
    last_error: str | None = Field(description="why the last round failed as a whole")
    slos: list[SloOut]


def _alert(a: AlertStatus) -> SloAlertOut:
    w = a.window
    return SloAlertOut(
        severity=w.severity,
        name=w.name,
        long_window=format_duration(w.long_s),
        short_window=format_duration(w.short_s),
        long_window_seconds=w.long_s,
        short_window_seconds=w.short_s,
        burn_rate_threshold=w.burn_rate,
        budget_percent=w.budget_percent,
        long_burn_rate=_num(a.long_burn),
        short_burn_rate=_num(a.short_burn),
        long_window_events=_num(a.long_events),
        firing=a.firing,
        low_traffic=a.low_traffic,
        disabled=a.disabled,
    )


def _slo(slo: SLO, st: SloStatus | None, error: str | None) -> SloOut:
    base: dict[str, Any] = {
        "id": slo.id,
        "service": slo.service,
        "name": slo.name,
        "description": slo.description,
        "objective": slo.objective,
        "error_budget_ratio": slo.error_budget,
        "budgeting": slo.budgeting.value,
        "error": error,
        "current_window": format_duration(CURRENT_WINDOW_S),
    }
    period = {
        "period": format_duration(slo.window.period_s),
        "period_seconds": slo.window.period_s,
        "rolling": slo.window.rolling,
    }
    if st is None:
        return SloOut(
            **base,
            window=SloWindowOut(**period, start=None, end=None),
            evaluated=False,
            at=None,
            sli=None,
            events=None,
            bad_events=None,
            remaining_ratio=None,
            budget=None,
            current_burn_rate=None,
            exhaustion_at=None,
            alerts=[],
            firing=[],
        )
    return SloOut(
        **base,
        window=SloWindowOut(**period, start=st.window_start_ms, end=st.at_ms),
        evaluated=True,
        at=st.at_ms,
        sli=_num(st.sli),
        events=_num(st.events),
        bad_events=_num(st.bad_events),
        remaining_ratio=_num(st.remaining_ratio),
        budget=SloBudgetOut(
            unit=st.unit,
            total=_num(st.budget_total),
            spent=_num(st.budget_spent),
            remaining=_num(st.budget_remaining),
            spent_ratio=_num(st.spent_ratio),
            remaining_ratio=_num(st.remaining_ratio),
        ),
        current_burn_rate=_num(st.current_burn),
        exhaustion_at=st.exhaustion_at_ms,
        alerts=[_alert(a) for a in st.alerts],
        firing=[f"{a.window.severity}/{a.window.name}" for a in st.firing],
    )


def slo_list(engine: Engine | None) -> SloList:
    """The body of ``GET /api/v1/slos`` for ``engine`` (``configured: false`` without an SLO
    evaluator). SLOs are in the order of their spec files; one not yet evaluated (or whose
    every evaluation failed) has ``evaluated: false``."""
    evaluator = engine.slo_evaluator if engine is not None else None
    if engine is None or evaluator is None:
        return SloList(
            configured=False, interval_seconds=None, last_evaluation=None, last_error=None, slos=[]
        )
    info: dict[str, Any] = engine.status().get("slos", {})
    errors: dict[str, str] = info.get("errors", {})
    latest = {st.slo.id: st for st in engine.slo_statuses()}
    return SloList(
        configured=True,
        interval_seconds=engine.slo_interval_s,
        last_evaluation=info.get("last_evaluation_ms"),
        last_error=info.get("last_error"),
        slos=[_slo(s, latest.get(s.id), errors.get(s.id)) for s in evaluator.slos],
    )


def slos_router(engine: Engine | None) -> APIRouter:
    """A router with ``GET /api/v1/slos`` over ``engine``'s latest SLO evaluation (no auth
    inside: mount it behind the API's auth dependency)."""
    router = APIRouter(prefix="/api/v1", tags=["slos"])

    @router.get(
        "/slos",
        response_model=SloList,
        summary="SLOs with their remaining error budget and burn-rate alerts (last evaluation)",
    )
    def slos() -> SloList:
        return slo_list(engine)

    return router
