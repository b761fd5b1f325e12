"""``GET /api/v1/slos`` over the engine's last SLO evaluation, against the fake Prometheus of
relia.sources.fakes (the same data as tests/engine/test_slo_engine.py)."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from relia.api.slos import _num, slos_router
from relia.engine.local import LocalExecutor
from relia.engine.loop import Engine
from relia.signals import SeriesIndex
from relia.slo.evaluate import SloEvaluator
from relia.slo.loader import load_slos
from relia.sources.fakes import fake_prometheus_transport
from relia.sources.prometheus import PrometheusClient, RangeSeries
from tests.api.bandstore import BandMemoryStore

with warnings.catch_warnings():
    # Starlette >= 1.x warns that TestClient wants the httpx2 package; httpx works the same.
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

T0 = 1_714_564_800_000  # 2024-05-01T12:00:00Z, on the 5-minute grid
HOUR = 3_600_000

SPEC = """\
apiVersion: relia/v1
service: shop
slos:
  - name: checkout
    objective: 99
    period: 7d
    sli:
      events:
        error_query: req{kind="bad",window="{{.window}}"}
        total_query: req{kind="total",window="{{.window}}"}
    alerting:
      name: ShopCheckoutBurn
  - name: search
    objective: 99.9
    period: 7d
    sli:
      events:
        error_query: req{kind="bad",window="{{.window}}"}
        total_query: req{kind="total",window="{{.window}}"}
"""


def burning_series(end_ms: int, hot: tuple[int, int]) -> list[RangeSeries]:
    """10 requests/s with 0.1 % errors for 7.5 days up to ``end_ms`` (a sample a minute), and
    20 % errors (2/s) between ``hot = (start_ms, end_ms)``."""
    ts = end_ms - np.arange(int(7.5 * 1440), -1, -1, dtype=np.int64) * 60_000
    bad = np.full(len(ts), 0.01)
    bad[(ts > hot[0]) & (ts <= hot[1])] = 2.0
    labels = {"__name__": "req", "window": "5m"}
    return [
        RangeSeries({**labels, "kind": "total"}, ts, np.full(len(ts), 10.0)),
        RangeSeries({**labels, "kind": "bad"}, ts, bad),
    ]


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def slo_engine(spec: Path, series: list[RangeSeries], clock: Clock) -> Engine:
    """An engine (no metric sources) evaluating the SLOs of ``spec`` against ``series``."""
    client = PrometheusClient("http://prometheus.test", transport=fake_prometheus_transport(series))
    return Engine(
        BandMemoryStore(),
        [],
        LocalExecutor("default"),
        index=SeriesIndex(),
        clock=clock,
        slo_evaluator=SloEvaluator(client, load_slos([spec])),
        slo_interval_s=60.0,
    )


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "shop.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture
def burning(spec: Path) -> Iterator[tuple[Engine, Clock]]:
    clock = Clock(T0)
    # The last 50 minutes burn at 20 % errors: 20x the budget of the 99 % SLO.
    engine = slo_engine(spec, burning_series(T0 + HOUR, (T0 - 3_000_000, T0 + 600_000)), clock)
    yield engine, clock
    engine.close()


def _get(engine: Engine | None) -> httpx.Response:
    app = FastAPI()
    app.include_router(slos_router(engine))
    response: httpx.Response = TestClient(app, base_url="http://localhost").get("/api/v1/slos")
    return response


def test_not_configured_without_engine_or_evaluator() -> None:
    for engine in (
        None,
        Engine(BandMemoryStore(), [], LocalExecutor("default"), index=SeriesIndex()),
    ):
        r = _get(engine)
        assert r.status_code == 200
        assert r.json() == {
            "configured": False,
            "interval_seconds": None,
            "last_evaluation": None,
            "last_error": None,
            "slos": [],
        }


def test_configured_but_not_yet_evaluated(burning: tuple[Engine, Clock]) -> None:
    body = _get(burning[0]).json()
    assert body["configured"] is True and body["interval_seconds"] == 60.0
    assert body["last_evaluation"] is None
    assert [s["id"] for s in body["slos"]] == ["shop-checkout", "shop-search"]
    s = body["slos"][0]
    assert s["evaluated"] is False and s["remaining_ratio"] is None and s["budget"] is None
    assert s["objective"] == 99 and s["window"]["period"] == "7d" and s["alerts"] == []


def test_budget_and_burn_rates_after_an_evaluation(burning: tuple[Engine, Clock]) -> None:
    engine, _ = burning
    engine.slo_tick()
    body = _get(engine).json()
    assert body["last_evaluation"] == T0 and body["last_error"] is None
    by_id = {s["id"]: s for s in body["slos"]}
    statuses = {st.slo.id: st for st in engine.slo_statuses()}
    assert set(statuses) == set(by_id)
    s, st = by_id["shop-checkout"], statuses["shop-checkout"]
    assert s["evaluated"] is True and s["at"] == T0 and s["error"] is None
    assert s["window"] == {
        "period": "7d",
        "period_seconds": 7 * 86400,
        "rolling": True,
        "start": T0 - 7 * 86_400_000,
        "end": T0,
    }
    # 7 days at 0.1 % errors, 50 minutes of them at 20 %, against a 1 % budget:
    # spent = (0.001 * (7d - 50m) + 0.2 * 50m) / 7d / 0.01, about 0.198.
    spent = (0.001 * (7 * 1440 - 50) + 0.2 * 50) / (7 * 1440) / 0.01
    assert s["budget"]["spent_ratio"] == pytest.approx(spent, rel=0.02)
    assert s["remaining_ratio"] == pytest.approx(1 - spent, rel=0.01)
    assert s["remaining_ratio"] == s["budget"]["remaining_ratio"] == st.remaining_ratio
    assert s["budget"]["unit"] == "events" and s["sli"] == pytest.approx(st.sli)
    # The quick page alert looks at 1 h and 5 m: 50 minutes at 20x, then 5 minutes at 20x.
    quick = next(a for a in s["alerts"] if a["severity"] == "page" and a["name"] == "quick")
    assert quick["long_burn_rate"] == pytest.approx((50 * 20 + 10 * 0.1) / 60, rel=0.01)
    assert quick["short_burn_rate"] == pytest.approx(20, rel=0.01)
    assert quick["firing"] is True and quick["long_window"] == "1h"
    assert quick["burn_rate_threshold"] < 20
    assert "page/quick" in s["firing"]
    assert s["firing"] == [f"{a.window.severity}/{a.window.name}" for a in st.firing]
    assert len(s["alerts"]) == len(st.alerts) == 4
    # The same data against a 0.1 % budget: ten times the burn, the budget overspent.
    tight = by_id["shop-search"]
    assert tight["remaining_ratio"] < 0 and tight["remaining_ratio"] == pytest.approx(
        1 - spent * 10, rel=0.02
    )


def test_a_failed_round_keeps_the_last_status_and_reports_the_error(
    burning: tuple[Engine, Clock],
) -> None:
    engine, clock = burning
    engine.slo_tick()
    before = _get(engine).json()["slos"][0]
    assert engine.slo_evaluator is not None

    def down(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text="prometheus is restarting")

    engine.slo_evaluator.client = PrometheusClient(
        "http://prometheus.test", transport=httpx.MockTransport(down)
    )
    clock.now = T0 + 600_000  # the step grid moved: the SLOs are queried again, and fail
    result = engine.slo_tick()
    assert result.evaluated == 0 and set(result.errors) == {"shop-checkout", "shop-search"}
    body = _get(engine).json()
    assert body["last_evaluation"] == T0 + 600_000
    after = body["slos"][0]
    assert after["error"] and "shop-checkout" in after["error"]
    assert after["evaluated"] is True and after["at"] == T0  # the last good evaluation
    assert after["remaining_ratio"] == before["remaining_ratio"]


def test_no_data_is_null_not_nan(spec: Path) -> None:
    engine = slo_engine(spec, [], Clock(T0))
    engine.slo_tick()
    r = _get(engine)
    assert "NaN" not in r.text and "Infinity" not in r.text
    s = r.json()["slos"][0]
    assert s["evaluated"] is True and s["sli"] is None and s["firing"] == []
    assert s["remaining_ratio"] is None or math.isfinite(s["remaining_ratio"])
    engine.close()


def test_openapi_documents_the_route() -> None:
    app = FastAPI()
    app.include_router(slos_router(None))
    schema = app.openapi()
    assert "/api/v1/slos" in schema["paths"]
    assert "SloList" in schema["components"]["schemas"]


def test_every_number_of_an_evaluation_reaches_the_response(burning: tuple[Engine, Clock]) -> None:
    engine, _ = burning
    engine.slo_tick()
    s = _get(engine).json()["slos"][0]
    (st,) = [x for x in engine.slo_statuses() if x.slo.id == "shop-checkout"]
    assert s["error_budget_ratio"] == pytest.approx(0.01)
    assert s["current_burn_rate"] is not None
    assert s["current_burn_rate"] == pytest.approx(st.current_burn)
    assert st.exhaustion_at_ms is not None and s["exhaustion_at"] == st.exhaustion_at_ms
    quick = next(a for a in s["alerts"] if a["severity"] == "page" and a["name"] == "quick")
    (q,) = [a for a in st.alerts if (a.window.severity, a.window.name) == ("page", "quick")]
    assert quick["short_window"] == "5m" and quick["short_window_seconds"] == 300
    assert quick["long_window_events"] is not None
    assert quick["long_window_events"] == pytest.approx(q.long_events)


def test_alert_flags_and_a_failed_round_are_passed_on(
    burning: tuple[Engine, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _ = burning
    engine.slo_tick()
    flagged = [
        dataclasses.replace(st, alerts=[dataclasses.replace(a, low_traffic=True, disabled=True)
                                        for a in st.alerts])
        for st in engine.slo_statuses()
    ]  # fmt: skip
    monkeypatch.setattr(engine, "slo_statuses", lambda: flagged)
    status = engine.status()
    status["slos"] = {**status["slos"], "last_error": "prometheus: connection refused"}
    monkeypatch.setattr(engine, "status", lambda: status)
    body = _get(engine).json()
    assert body["last_error"] == "prometheus: connection refused"
    alerts = body["slos"][0]["alerts"]
    assert alerts and all(a["low_traffic"] and a["disabled"] for a in alerts)


def test_a_calendar_window_is_not_rolling(tmp_path: Path) -> None:
    path = tmp_path / "cal.yaml"
    path.write_text(
        SPEC.replace("    period: 7d\n", "    period: 7d\n    calendar:\n"
                     "      start: 2024-01-01\n      timezone: UTC\n", 1)
    )  # fmt: skip
    engine = slo_engine(path, [], Clock(T0))
    window = _get(engine).json()["slos"][0]["window"]
    assert window["rolling"] is False and window["period"] == "7d"
    engine.close()


def test_infinite_numbers_are_null() -> None:
    assert _num(math.inf) is None and _num(-math.inf) is None and _num(math.nan) is None
    assert _num(2.5) == 2.5


def test_a_budget_lasting_centuries_has_no_exhaustion_time(spec: Path) -> None:
    # A trickle of errors put the budget's end in the year 59520: the dashboard showed
    # "Invalid Date". Past the horizon there is none; a status made by hand is held to it too.
    from relia.api import slos as api_slos
    from relia.slo import evaluate as E

    slo = load_slos([spec])[0]
    n = 2016
    st = E.status_from_counts(slo, np.full(n, 1e-3), np.full(n, 3e6), end_ms=T0, step_s=300)
    assert api_slos._slo(slo, st, None).exhaustion_at is None
    far = dataclasses.replace(st, exhaustion_s=1.8e12)
    assert api_slos._slo(slo, far, None).exhaustion_at is None
