"""SLO evaluation against a (fake) Prometheus, the report's table, JSON and chart, and the
``relia slo report`` command."""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from relia.cli import app
from relia.errors import DataError, SourceError
from relia.incidents.model import FindingKind, Severity
from relia.slo import evaluate as E
from relia.slo import report as R
from relia.slo.burnrate import default_alert_windows
from relia.slo.spec import SLO, EventsSLI, RawSLI, ThresholdSLI, TimeWindow
from relia.sources.fakes import fake_prometheus_transport
from relia.sources.prometheus import PrometheusClient, RangeSeries
from relia.timeparse import format_ms

DAY = 86_400
END = 1_714_564_800_000  # 2024-05-01T12:00:00Z, on the 5-minute grid
PERIOD = 7 * DAY  # the shortest period the default alert windows (up to 3d) allow
STEPS = PERIOD // 300  # 2,016 steps of 5 minutes
URL = "http://prometheus.test"


def _series(labels: dict[str, str], fn: Any, days: float = 7.2) -> RangeSeries:
    """A sample every minute from ``days`` before END to END; ``fn(age_s)`` gives the value."""
    ts = END - np.arange(int(days * 1440), -1, -1, dtype=np.int64) * 60_000
    age = (END - ts) / 1000
    return RangeSeries(labels, ts, np.array([fn(a) for a in age], dtype=np.float64))


def _rates(base_bad: float, hot_bad: float, hot_s: int = 3600) -> list[RangeSeries]:
    """10 requests/s; ``base_bad`` errors/s, ``hot_bad`` during the last ``hot_s`` seconds."""
    return [
        _series({"__name__": "req", "kind": "total"}, lambda a: 10.0),
        _series({"__name__": "req", "kind": "bad"}, lambda a: hot_bad if a < hot_s else base_bad),
    ]


def _client(series: list[RangeSeries]) -> PrometheusClient:
    return PrometheusClient(URL, transport=fake_prometheus_transport(series))


def _slo(**kw: Any) -> SLO:
    base: dict[str, Any] = {
        "service": "shop",
        "name": "checkout",
        "objective": 99.0,
        "window": TimeWindow(period_s=PERIOD),
        "sli": EventsSLI(error_query='req{kind="bad"}', total_query='req{kind="total"}'),
    }
    base.update(kw)
    return SLO.model_validate(base)


def test_substitute_window_and_steps() -> None:
    q = "sum(rate(x[{{.window}}])) / sum(rate(x[{{ .window }}]))"
    assert E.substitute_window(q, 300) == "sum(rate(x[5m])) / sum(rate(x[5m]))"
    assert E.step_for(_slo()) == 300
    sliced = {"budgeting": "timeslices", "timeslice_target": 0.9}
    assert E.step_for(_slo(timeslice_window_s=60, **sliced)) == 60
    assert E.step_for(_slo(timeslice_window_s=3600, **sliced)) == 300
    assert E.step_for(_slo(timeslice_window_s=480, **sliced)) == 60  # gcd(8m, 5m)
    threshold = ThresholdSLI(query="q", op="lte", value=0.3)
    assert E.step_for(_slo(sli=threshold, budgeting="timeslices", timeslice_window_s=900)) == 900
    assert E.evaluation_end_ms(_slo(), END + 299_999, 300) == END
    assert E.evaluation_end_ms(_slo(timeslice_window_s=3600, **sliced), END, 300) == (
        END // 3_600_000 * 3_600_000
    )


def test_evaluate_against_prometheus_by_hand() -> None:
    """10 req/s; 0.1 % errors, 20 % in the last hour; a 99 % SLO over 7 days, 5 minute steps."""
    slo = _slo()
    with _client(_rates(0.01, 2.0)) as client:
        st = E.evaluate_slo(client, slo, END + 120_000)  # rounded down to END
    assert st.at_ms == END and st.step_s == 300 and st.window_start_ms == END - PERIOD * 1000
    steps = STEPS  # of 3,000 requests each
    bad = 12 * 600 + (steps - 12) * 3  # the hot hour: 600 bad a step; before: 3
    assert st.events == pytest.approx(steps * 3000)
    assert st.bad_events == pytest.approx(bad)
    assert st.sli == pytest.approx(1 - bad / (steps * 3000))
    assert st.budget_total == pytest.approx(steps * 3000 * 0.01)
    assert st.budget_spent == pytest.approx(bad)
    budget = steps * 30  # 1 % of the events
    assert st.remaining_ratio == pytest.approx(1 - bad / budget)
    assert st.current_burn == pytest.approx(20.0)
    assert st.exhaustion_s == pytest.approx((1 - bad / budget) * PERIOD / 20)
    windows = default_alert_windows(PERIOD)
    by_name = {f"{a.window.severity}/{a.window.name}": a for a in st.alerts}
    assert [a.window for a in st.alerts] == list(windows)
    quick = by_name["page/quick"]
    assert quick.long_burn == pytest.approx(20.0) and quick.short_burn == pytest.approx(20.0)
    assert quick.firing and quick.long_events == pytest.approx(36_000)
    six_h = 72 * 3000
    assert by_name["page/slow"].long_burn == pytest.approx((12 * 600 + 60 * 3) / six_h / 0.01)
    assert [f"{a.window.severity}/{a.window.name}" for a in st.firing] == ["page/quick"]
    # The burn-down covers the window, starts near full and ends at the remaining share.
    assert len(st.burn_down) == steps and st.burn_down_ts[-1] == END
    assert st.burn_down[0] == pytest.approx(1 - 3 / budget)
    assert st.burn_down[-1] == pytest.approx(st.remaining_ratio)
    assert np.all(np.diff(st.burn_down) <= 0)


def test_calendar_window_starts_at_the_period_boundary() -> None:
    # Weeks from Monday 2024-04-29 00:00 UTC; END is Wednesday 12:00: 2.5 days into the week.
    week = TimeWindow(period_s=PERIOD, rolling=False, calendar_start=datetime(2024, 4, 29))
    with _client(_rates(0.01, 0.01)) as client:
        st = E.evaluate_slo(client, _slo(window=week), END)
    assert st.window_start_ms == END - int(2.5 * DAY * 1000)
    assert st.events == pytest.approx(2.5 * DAY / 300 * 3000)
    assert st.to_dict()["window"]["start"] == "2024-04-29T00:00:00Z"
    # The alerts still look back over the boundary: the 3-day window is full.
    slow = next(a for a in st.alerts if a.window.long_s == 3 * DAY)
    assert slow.long_events == pytest.approx(3 * DAY * 10)


def test_queries_good_raw_threshold_and_several_series() -> None:
    series = _rates(0.01, 0.01) + [
        _series({"__name__": "good", "kind": "total"}, lambda a: 9.99),
        _series({"__name__": "split", "part": "a"}, lambda a: 4.0),
        _series({"__name__": "split", "part": "b"}, lambda a: 6.0),
        _series({"__name__": "ratio"}, lambda a: 0.002),
        _series({"__name__": "latency"}, lambda a: 0.5 if a < 1800 else 0.1),
    ]
    with _client(series) as client:
        good = _slo(sli=EventsSLI(good_query='good{kind="total"}', total_query="split"))
        st = E.evaluate_slo(client, good, END)
        # The two "split" series are summed: 10/s; 9.99/s good: 0.1 % bad.
        assert st.events == pytest.approx(STEPS * 3000) and st.sli == pytest.approx(0.999)
        raw = E.evaluate_slo(client, _slo(sli=RawSLI(error_ratio_query="ratio")), END)
        assert raw.sli == pytest.approx(0.998) and raw.events == STEPS  # one event per step
        thr = _slo(sli=ThresholdSLI(query="latency", op="lte", value=0.3),
                   budgeting="timeslices", timeslice_window_s=600)  # fmt: skip
        th = E.evaluate_slo(client, thr, END)
        # 10-minute slices; the last 30 minutes (3 slices) are over the threshold.
        assert th.step_s == 600 and th.unit == "slices"
        assert th.budget_total == pytest.approx(PERIOD / 600 * 0.01) and th.budget_spent == 3
        with pytest.raises(DataError, match="returned 2 series"):
            E.evaluate_slo(client, _slo(sli=RawSLI(error_ratio_query="split")), END)
        with pytest.raises(SourceError, match=r"SLO shop-checkout: total_query 'rate\(x\)'"):
            E.evaluate_slo(client, _slo(sli=EventsSLI(error_query="req", total_query="rate(x)")),
                           END)  # fmt: skip
        nothing = E.evaluate_slo(
            client, _slo(sli=EventsSLI(error_query="none", total_query="nothing")), END
        )
    assert math.isnan(nothing.sli) and nothing.to_dict()["sli"] is None
    assert not nothing.firing


def test_increase_queries_are_counts_and_missing_errors_are_zero() -> None:
    class Fixed:
        """Answers every query with one value per step."""

        def __init__(self) -> None:
            self.queries: list[str] = []

        def query_range(self, query: str, start: int, end: int, step: float) -> list[RangeSeries]:
            self.queries.append(query)
            if "errors" in query:
                return []  # Prometheus: nothing for a sum over no error series
            ts = np.arange(start, end + 1, int(step * 1000), dtype=np.int64)
            return [RangeSeries({}, ts, np.full(len(ts), 50.0))]

    fixed = Fixed()
    slo = _slo(sli=EventsSLI(error_query="sum(increase(errors[{{.window}}]))",
                             total_query="sum(increase(requests[{{.window}}]))"))  # fmt: skip
    st = E.evaluate_slo(fixed, slo, END)
    assert fixed.queries[0] == "sum(increase(requests[5m]))"
    assert st.events == STEPS * 50 and st.bad_events == 0 and st.sli == 1.0


def test_evaluator_fetches_only_new_steps_and_matches_a_fresh_evaluation() -> None:
    series = _rates(0.01, 2.0, hot_s=1200)
    transport = fake_prometheus_transport(series)
    client = PrometheusClient(URL, transport=transport)
    slo = _slo()
    ev = E.SloEvaluator(client, [slo])
    first, errors = ev.evaluate(END - 1800_000)
    assert errors == {} and first[0].at_ms == END - 1800_000
    n_calls = len(transport.calls)
    again, _ = ev.evaluate(END - 1800_000 + 60_000)  # same 5-minute slot: nothing fetched
    assert again[0] is first[0] and len(transport.calls) == n_calls
    later, _ = ev.evaluate(END)
    starts = [float(p["start"]) for _, p in transport.calls[n_calls:]]
    # Only the last 2 known steps and the 6 new ones are asked for.
    assert starts == [(END - 7 * 300_000) / 1000] * 2
    fresh = E.evaluate_slo(client, slo, END)
    assert later[0].sli == pytest.approx(fresh.sli)
    assert later[0].budget_spent == pytest.approx(fresh.budget_spent)
    assert [a.long_burn for a in later[0].alerts] == pytest.approx(
        [a.long_burn for a in fresh.alerts]
    )
    broken = E.SloEvaluator(PrometheusClient("http://127.0.0.1:9", timeout=0.5), [slo])
    statuses, errors = broken.evaluate(END)
    assert statuses == [] and "cannot reach Prometheus" in errors["shop-checkout"]


def test_findings_one_per_severity_and_episode() -> None:
    slo = _slo(alerting={"name": "CheckoutBurn"})
    with _client(_rates(0.01, 2.0)) as client:
        st = E.evaluate_slo(client, slo, END)
    tracker = E.SloFindings(gap_ms=600_000)
    [f] = tracker.update([st])
    assert f.kind is FindingKind.SLO and f.severity is Severity.CRITICAL and f.score == 1.0
    assert f.key == "shop-checkout:page" and f.start == f.end == END
    assert f.evidence["firing"] == ["quick"] and f.evidence["alert_name"] == "CheckoutBurn"
    assert "20.0x over 1h" in f.summary and "threshold 13.44x" in f.summary
    json.dumps(f.evidence)  # JSON-ready: no NaN, no numpy types
    # The same episode a minute later: same id, later end.
    later = E.status_from_counts(slo, *_counts(st), end_ms=END + 300_000, step_s=300)
    [g] = tracker.update([later])
    assert g.id == f.id and g.end == END + 300_000 and g.evidence["evaluations"] == 2
    # Quiet, then firing again: a new episode, a new id.
    quiet = E.status_from_counts(slo, np.zeros(STEPS), np.full(STEPS, 3000.0), end_ms=END + 600_000,
                                 step_s=300)  # fmt: skip
    assert tracker.update([quiet]) == []
    [h] = tracker.update([later])
    assert h.id != f.id and h.start == later.at_ms
    # Not seen for longer than the gap (and two steps): a new episode too.
    far = E.status_from_counts(slo, *_counts(st), end_ms=END + 2_100_000, step_s=300)
    [h2] = tracker.update([far])
    assert h2.id != h.id and h2.start == END + 2_100_000
    # Restart: seeding from the store continues an open episode.
    fresh = E.SloFindings(gap_ms=600_000)
    assert fresh.seed([h2, g]) == 1  # the latest of the key
    again = E.status_from_counts(slo, *_counts(st), end_ms=END + 2_400_000, step_s=300)
    [k] = fresh.update([again])
    assert k.id == h2.id and k.evidence["evaluations"] == 2
    # A disabled severity raises nothing.
    off = _slo(alerting={"name": "X", "page": {"disabled": True}})
    st_off = E.status_from_counts(off, *_counts(st), end_ms=END, step_s=300)
    assert st_off.firing and st_off.firing[0].disabled
    assert E.SloFindings(gap_ms=1).update([st_off]) == []


def _counts(st: E.SloStatus) -> tuple[np.ndarray, np.ndarray]:
    """Per-step counts that reproduce the hand case of test_evaluate_against_prometheus."""
    n = STEPS
    total = np.full(n, 3000.0)
    bad = np.full(n, 3.0)
    bad[-12:] = 600.0
    return bad, total


# -- the report -----------------------------------------------------------------------------


@pytest.fixture
def statuses() -> list[E.SloStatus]:
    with _client(_rates(0.01, 2.0)) as client:
        hot = E.evaluate_slo(client, _slo(), END)
        guarded = E.evaluate_slo(
            client, _slo(name="guarded", objective=99.5, min_events=10**9), END
        )
    return [hot, guarded]


def _text(table: Any) -> str:
    console = Console(record=True, width=250)
    console.print(table)
    return console.export_text()


def test_tables(statuses: list[E.SloStatus]) -> None:
    text = _text(R.summary_table(statuses))
    assert "shop-checkout" in text and "shop-guarded" in text and "2024-05-01T12:00:00Z" in text
    assert "page/quick" in text and "20.00x" in text
    assert f"{statuses[0].remaining_ratio * 100:.1f}%" in text
    assert f"in {R.format_span(statuses[0].exhaustion_s)}" in text
    alerts = _text(R.alerts_table(statuses))
    assert alerts.count("FIRING") == 1 and "13.44x" in alerts
    assert alerts.count("held: < 1000000000 events") == 2  # the guard holds both pages back
    assert R.format_span(math.inf) == "never" and R.format_span(90061) == "1d 1h"
    assert R.format_span(3720) == "1h 2m" and R.format_span(45) == "45s"
    assert R.format_count(1234567.0) == "1,234,567" and R.format_count(0.5) == "0.5"


def test_json(statuses: list[E.SloStatus]) -> None:
    doc = json.loads(json.dumps(R.report_json(statuses)))
    hot = doc["slos"][0]
    assert hot["id"] == "shop-checkout" and hot["objective"] == 99.0
    assert hot["window"] == {
        "start": "2024-04-24T12:00:00Z", "end": "2024-05-01T12:00:00Z", "period": "7d",
        "rolling": True,
    }  # fmt: skip
    assert hot["error_budget"]["unit"] == "events"
    assert hot["error_budget"]["total"] == pytest.approx(STEPS * 30)
    assert hot["current_burn_rate"] == {"window": "1h", "value": pytest.approx(20.0)}
    assert hot["firing"] == ["page/quick"]
    assert hot["exhaustion"] == {
        "seconds": pytest.approx(statuses[0].exhaustion_s),
        "at": format_ms(statuses[0].at_ms + round(statuses[0].exhaustion_s * 1000)),
    }
    guarded = doc["slos"][1]
    assert guarded["firing"] == [] and [a["low_traffic"] for a in guarded["alerts"]] == [
        True, True, False, False,
    ]  # fmt: skip


def test_plots(statuses: list[E.SloStatus], tmp_path: Path) -> None:
    png = R.plot_burn_down(tmp_path / "b.png", statuses)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = R.plot_burn_down(tmp_path / "b.html", statuses).read_text()
    assert page.startswith("<!doctype html>") and "<svg" in page and "shop-guarded" in page
    with pytest.raises(DataError, match=r"\.png or \.html"):
        R.plot_burn_down(tmp_path / "b.pdf", statuses)
    with pytest.raises(DataError, match="cannot write plot"):
        R.plot_burn_down(tmp_path / "missing" / "b.png", statuses)


# -- relia slo report ----------------------------------------------------------------------

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
"""


@pytest.fixture
def fake_prometheus(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """``relia slo report`` talks to a fake Prometheus holding the hand case's series; the
    list it returns gets the timeout of each client made."""
    import relia.sources.prometheus as prom

    rates = _rates(0.01, 2.0)
    # The same rates under both steps the tests use (5m by default, --step 10m).
    series = [
        RangeSeries({**s.labels, "window": w}, s.ts, s.values) for s in rates for w in ("5m", "10m")
    ]
    real = prom.PrometheusClient
    timeouts: list[float] = []

    def make(url: str, timeout: float = 10.0, transport: Any = None) -> PrometheusClient:
        assert url == URL
        timeouts.append(timeout)
        return real(url, timeout=timeout, transport=fake_prometheus_transport(series))

    monkeypatch.setattr(prom, "PrometheusClient", make)
    return timeouts


def test_cli_report(tmp_path: Path, fake_prometheus: list[float]) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(SPEC)
    runner = CliRunner()
    at = "2024-05-01T12:03:00Z"
    res = runner.invoke(app, ["slo", "report", str(spec), "--prometheus", URL, "--at", at])
    assert res.exit_code == 0, res.output
    assert "shop-checkout" in res.stdout and "page/quick" in res.stdout and "FIRING" in res.stdout
    plot = tmp_path / "burn.html"
    res = runner.invoke(
        app,
        ["slo", "report", str(spec), "--prometheus", URL, "--at", at, "--json",
         "--plot", str(plot)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["slos"][0]["sli"] == pytest.approx(
        1 - (12 * 600 + (STEPS - 12) * 3) / (STEPS * 3000)
    )
    assert plot.is_file() and f"wrote {plot}" in res.stderr


def test_cli_reports_every_slo_it_can_and_names_each_refused_query(
    tmp_path: Path, fake_prometheus: list[float]
) -> None:
    # One SLO with a query Prometheus refuses must not hide the report of the others.
    spec = tmp_path / "shop.yaml"
    broken = SPEC.replace("name: checkout", "name: broken").replace(
        'error_query: req{kind="bad",window="{{.window}}"}',
        'error_query: sum(req{kind="bad",window="{{.window}}"}',
    )
    spec.write_text(SPEC + broken.split("slos:\n", 1)[1])
    at = "2024-05-01T12:03:00Z"
    base = ["slo", "report", str(spec), "--prometheus", URL, "--at", at]
    res = CliRunner().invoke(app, base)
    assert res.exit_code == 2
    assert "shop-checkout" in res.stdout and "FIRING" in res.stdout
    assert "shop-broken" not in res.stdout
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("relia: error: SLO shop-broken: ") and "HTTP 400 (bad_data)" in line
    assert line.count("shop-broken") == 1  # the SLO is named once, not again by the error
    res = CliRunner().invoke(app, [*base, "--json"])
    assert res.exit_code == 2
    doc = json.loads(res.stdout)
    assert [s["id"] for s in doc["slos"]] == ["shop-checkout"]
    assert list(doc["errors"]) == ["shop-broken"] and "bad_data" in doc["errors"]["shop-broken"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--at", "yesterday-ish"], "--at: not a time"),
        (["--step", "5x"], "--step: invalid duration"),
        (["--plot", "x.pdf"], "--plot: plot must end in .png or .html"),
        (["--prometheus", "ftp://x"], "--prometheus: expected an http"),
        (["--timeout", "-1"], "--timeout: a duration must not be negative, got '-1'"),
        (["--timeout", "0"], "--timeout: a duration must be positive"),
        (["--timeout", "nan"], "--timeout: expected a duration"),
        (["--timeout", "inf"], "--timeout: expected a duration"),
        (["--timeout", "2x"], "--timeout: expected a duration"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(SPEC)
    base = ["slo", "report", str(spec), "--prometheus", "http://127.0.0.1:9"]
    res = CliRunner().invoke(app, base + args)
    assert res.exit_code == 2
    assert res.stderr.startswith("relia: error: ") and message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_cli_unreachable_prometheus_and_bad_spec(tmp_path: Path) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(SPEC)
    res = CliRunner().invoke(
        app, ["slo", "report", str(spec), "--prometheus", "http://127.0.0.1:9", "--timeout", "2"]
    )
    assert res.exit_code == 2 and "cannot reach Prometheus" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPEC.replace("objective: 99", "objective: 120"))
    res = CliRunner().invoke(app, ["slo", "report", str(bad), "--prometheus", URL])
    assert res.exit_code == 2 and "objective" in res.stderr and str(bad) in res.stderr


# -- what the report shows at its edges (mutation audit) ------------------------------------------


def _status(slo: SLO, bad: Any, total: Any, end_ms: int = END) -> E.SloStatus:
    """``slo`` evaluated on per-step counts (5-minute steps) whose last step ends at ``end_ms``."""
    return E.status_from_counts(
        slo, np.asarray(bad, dtype=np.float64), np.asarray(total, dtype=np.float64),
        end_ms=end_ms, step_s=300,
    )  # fmt: skip


def _rows(table: Any) -> list[dict[str, str]]:
    """The table's cells, one dict per row keyed by the column header (the later of two equal
    headers gets a ``2``)."""
    names: list[str] = []
    for col in table.columns:
        names.append(col.header + ("2" if col.header in names else ""))
    columns = [list(col.cells) for col in table.columns]
    return [dict(zip(names, cells, strict=True)) for cells in zip(*columns, strict=True)]


def test_counts_and_spans_are_written_as_people_read_them() -> None:
    assert R.format_count(math.nan) == "–" and R.format_count(math.inf) == "–"
    assert R.format_count(1234.4) == "1,234" and R.format_count(-1234.4) == "-1,234"
    assert R.format_count(0.1234) == "0.123" and R.format_count(12.0) == "12"
    assert R.format_span(math.nan) == "–"
    assert R.format_span(59.6) == "1m"  # rounded, not cut
    assert R.format_span(86_400) == "1d" and R.format_span(7200) == "2h"
    assert R.format_span(120) == "2m" and R.format_span(150) == "2m"


def test_summary_rows_of_an_slo_without_data_one_overspent_and_one_not_burning() -> None:
    none = _status(_slo(name="none"), np.full(STEPS, np.nan), np.full(STEPS, np.nan))
    over = _status(_slo(name="over"), np.full(STEPS, 3000.0), np.full(STEPS, 3000.0))
    calm = _status(_slo(name="calm"), np.zeros(STEPS), np.full(STEPS, 3000.0))
    rows = _rows(R.summary_table([none, over, calm]))
    assert rows[0]["SLI"] == "–" and rows[0]["remaining"] == "no data"
    assert rows[0]["burn (1h)"] == "–" and rows[0]["budget runs out"] == "–"
    assert rows[0]["budget spent / total"] == "– / – events"
    assert rows[1]["budget runs out"] == "exhausted" and rows[1]["remaining"] == "-9900.0%"
    assert rows[1]["firing"] == "page/quick, page/slow, ticket/quick, ticket/slow"
    assert rows[2]["budget runs out"] == "never" and rows[2]["burn (1h)"] == "0.00x"
    assert rows[2]["firing"] == "–" and rows[2]["SLI"] == "100%"
    alerts = _rows(R.alerts_table([none]))
    assert {(a["burn"], a["burn2"], a["events"], a["state"]) for a in alerts} == {
        ("–", "–", "0", "ok")
    }


def test_summary_shows_the_sli_to_6_digits_and_the_window(statuses: list[E.SloStatus]) -> None:
    week = TimeWindow(period_s=PERIOD, rolling=False, calendar_start=datetime(2024, 4, 29))
    calendar = _status(_slo(name="weekly", window=week), *_counts(statuses[0]))
    hot, guarded, cal = _rows(R.summary_table([*statuses, calendar]))
    assert hot["SLI"] == f"{statuses[0].sli * 100:.6g}%" == "99.7815%"
    assert hot["window"] == "7d rolling"
    assert cal["window"] == "7d from 2024-04-29T00:00:00Z"
    # Pages held back by min_events are counted, with nothing firing before them.
    assert guarded["firing"] == "2 held (low traffic)"


def test_a_disabled_alert_that_fires_is_marked_disabled(statuses: list[E.SloStatus]) -> None:
    off = _slo(alerting={"name": "X", "page": {"disabled": True}})
    st = _status(off, *_counts(statuses[0]))
    assert _rows(R.summary_table([st]))[0]["firing"] == "page/quick (disabled)"
    states = {a["alert"]: a["state"] for a in _rows(R.alerts_table([st]))}
    # A disabled alert says so whether or not it fires.
    assert states == {
        "page/quick": "FIRING (disabled)", "page/slow": "ok (disabled)", "ticket/quick": "ok",
        "ticket/slow": "ok",
    }  # fmt: skip


def test_alert_rows_show_each_window_with_its_own_burn_rate(
    statuses: list[E.SloStatus],
) -> None:
    rows = {r["alert"]: r for r in _rows(R.alerts_table(statuses[:1]))}
    quick, slow = rows["page/quick"], rows["page/slow"]
    assert (quick["long"], quick["short"], quick["events"]) == ("1h", "5m", "36,000")
    assert (slow["long"], slow["short"]) == ("6h", "30m")
    by_name = {f"{a.window.severity}/{a.window.name}": a for a in statuses[0].alerts}
    assert slow["burn"] == f"{by_name['page/slow'].long_burn:.2f}x" == "3.42x"
    assert slow["burn2"] == f"{by_name['page/slow'].short_burn:.2f}x" == "20.00x"


def test_the_title_names_the_time_only_when_all_slos_share_it(
    statuses: list[E.SloStatus],
) -> None:
    later = _status(_slo(name="later"), *_counts(statuses[0]), end_ms=END + 300_000)
    assert R.summary_table(statuses).title == "SLOs at 2024-05-01T12:00:00Z"
    assert R.summary_table([statuses[0], later]).title == "SLOs"


def test_the_report_document_has_one_entry_per_slo_in_order(statuses: list[E.SloStatus]) -> None:
    doc = R.report_json(statuses)
    assert [s["id"] for s in doc["slos"]] == ["shop-checkout", "shop-guarded"]


def test_the_html_chart_draws_each_slo_with_data_in_percent_and_tables_them(
    statuses: list[E.SloStatus], tmp_path: Path
) -> None:
    import matplotlib.pyplot as plt

    none = _status(
        _slo(service="a&b", name="<none>"), np.full(STEPS, np.nan), np.full(STEPS, np.nan)
    )
    page = R.plot_burn_down(tmp_path / "b.HTM", [*statuses, none]).read_text()
    assert plt.get_fignums() == []  # the figure is closed once written
    # matplotlib writes each text of the SVG as a comment next to its glyphs.
    texts = re.findall(r"<!-- (.*?) -->", page)
    assert "shop-checkout (99%)" in texts and "shop-guarded (99.5%)" in texts
    assert not [t for t in texts if "none" in t]  # no data: no line, no legend entry
    assert "budget exhausted" in texts and "error budget remaining (%)" in texts
    assert "100" in texts and "80" in texts  # the y axis is in percent, not a share
    assert "<h3>SLOs (3)</h3>" in page
    rows = [re.findall(r"<td>(.*?)</td>", r) for r in re.findall(r"<tr>(<td>.*?)</tr>", page)]
    hot, _, empty = rows
    assert hot[0] == "shop-checkout" and hot[-1] == "page/quick"
    at = format_ms(statuses[0].at_ms + round(statuses[0].exhaustion_s * 1000))
    assert hot[-2] == f"in {R.format_span(statuses[0].exhaustion_s)} ({at})"
    assert empty[0] == "a&amp;b-&lt;none&gt;"  # escaped: a name is text, not markup
    assert empty[4:] == ["–", "–", "–", "–"]  # remaining, burn, runs out, firing
    png = R.plot_burn_down(tmp_path / "b.PNG", statuses)  # the suffix in any case
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_slo_name_with_dollar_signs_is_drawn_as_written(
    statuses: list[E.SloStatus], tmp_path: Path
) -> None:
    # matplotlib reads text between two $ as TeX: "cost $a^$" crashed the chart, "$x$" lost its
    # dollars. A name is text.
    for name in ("cost $a^$", "$x$ per $y$"):
        slo = _slo(name=name)
        odd = _status(slo, *_counts(statuses[0]))
        page = R.plot_burn_down(tmp_path / "b.html", [odd]).read_text()
        texts = re.findall(r"<!-- (.*?) -->", page)
        assert f"shop-{name} (99%)" in [html.unescape(t) for t in texts]
        assert R.plot_burn_down(tmp_path / "b.png", [odd]).read_bytes()[:4] == b"\x89PNG"


def test_cli_report_options_reach_the_evaluation(
    tmp_path: Path, fake_prometheus: list[float]
) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(SPEC)
    base = ["slo", "report", str(spec), "--prometheus", URL, "--json"]
    res = CliRunner().invoke(app, [*base, "--at", "2024-05-01T12:03:00Z", "--step", "10m"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["slos"][0]["step"] == "10m" and doc["slos"][0]["events"] == pytest.approx(
        STEPS * 3000
    )
    assert "errors" not in doc  # only when an SLO was refused
    assert fake_prometheus == [30.0]  # the default --timeout
    plot = tmp_path / "burn.PNG"  # the suffix in any case
    res = CliRunner().invoke(app, [*base, "--at", "now-1h", "--timeout", "4", "--plot", str(plot)])
    assert res.exit_code == 0, res.output
    assert fake_prometheus[-1] == 4.0 and plot.read_bytes()[:4] == b"\x89PNG"
    at = datetime.fromisoformat(json.loads(res.stdout)["slos"][0]["at"])
    hour_ago = datetime.now(tz=at.tzinfo).timestamp() - 3600
    assert hour_ago - 300 <= at.timestamp() <= hour_ago  # rounded down to the 5-minute step


def test_cli_report_timeout_is_a_duration_as_in_relia_detect(
    tmp_path: Path, fake_prometheus: list[float]
) -> None:
    # It was a float: --timeout 2m, as README teaches for relia detect, got Typer's usage box.
    spec = tmp_path / "shop.yaml"
    spec.write_text(SPEC)
    base = ["slo", "report", str(spec), "--prometheus", URL, "--at", "2024-05-01T12:03:00Z"]
    for given, seconds in (("2m", 120.0), ("1m30s", 90.0), ("45", 45.0), ("2.5", 2.5)):
        res = CliRunner().invoke(app, [*base, "--timeout", given])
        assert res.exit_code == 0, res.output
        assert fake_prometheus[-1] == seconds


def test_cli_an_unreachable_prometheus_is_one_line_for_all_slos(tmp_path: Path) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(SPEC + SPEC.split("slos:\n", 1)[1].replace("name: checkout", "name: other"))
    for url in ("http://127.0.0.1:9", "https://127.0.0.1:9"):
        res = CliRunner().invoke(app, ["slo", "report", str(spec), "--prometheus", url])
        assert res.exit_code == 2 and res.stdout == ""
        (line,) = res.stderr.strip().splitlines()
        assert line.startswith("relia: error: ") and "cannot reach Prometheus" in line


def test_cli_an_slo_whose_query_answers_several_series_does_not_hide_the_others(
    tmp_path: Path, fake_prometheus: list[float]
) -> None:
    # A ratio query must answer one series; this one answers two (bad and total): the SLO's own
    # fault, as a refused query is, so the other SLOs are still reported.
    spec = tmp_path / "shop.yaml"
    spec.write_text(
        SPEC + "  - name: ratio\n    objective: 99\n    period: 7d\n    sli:\n      raw:\n"
        '        error_ratio_query: req{window="{{.window}}"}\n'
    )
    base = ["slo", "report", str(spec), "--prometheus", URL, "--at", "2024-05-01T12:03:00Z"]
    res = CliRunner().invoke(app, [*base, "--json"])
    assert res.exit_code == 2
    doc = json.loads(res.stdout)
    assert [s["id"] for s in doc["slos"]] == ["shop-checkout"]
    assert (
        list(doc["errors"]) == ["shop-ratio"] and "returned 2 series" in doc["errors"]["shop-ratio"]
    )
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("relia: error: SLO shop-ratio: ") and "returned 2 series" in line


def test_cli_report_reads_the_sloth_windows_file(tmp_path: Path) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(SPEC)
    missing = tmp_path / "windows.yaml"
    res = CliRunner().invoke(
        app,
        ["slo", "report", str(spec), "--prometheus", "http://127.0.0.1:9",
         "--sloth-windows", str(missing)],
    )  # fmt: skip
    assert res.exit_code == 2 and res.stderr == f"relia: error: {missing}: no such file\n"


def test_the_chart_title_names_the_time_only_when_all_slos_share_it(
    statuses: list[E.SloStatus], tmp_path: Path
) -> None:
    later = _status(_slo(name="later"), *_counts(statuses[0]), end_ms=END + 300_000)
    same = R.plot_burn_down(tmp_path / "same.html", statuses).read_text()
    assert "<title>Error budget burn-down to 2024-05-01T12:00:00Z</title>" in same
    mixed = R.plot_burn_down(tmp_path / "mixed.html", [statuses[0], later]).read_text()
    assert "<title>Error budget burn-down</title>" in mixed


def test_the_chart_spans_the_window_and_says_when_no_slo_has_data(tmp_path: Path) -> None:
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    # Data only in the last 12 steps of the 7-day window (a Prometheus that began scraping an
    # hour ago): the line starts there, and the axis still shows the whole window.
    total = np.full(STEPS, np.nan)
    total[-12:] = 10.0
    bad = np.where(np.isnan(total), np.nan, 0.0)
    st = _status(_slo(), bad, total)
    assert st.burn_down_ts[0] == END - 11 * 300_000
    fig = R._figure([st], "t")
    lo, hi = fig.axes[0].get_xlim()
    plt.close(fig)
    start = mdates.date2num(np.datetime64(st.window_start_ms, "ms"))
    end = mdates.date2num(np.datetime64(st.at_ms, "ms"))
    assert lo <= start + 1e-6 and hi >= end - 1e-6
    # No SLO with data: the chart said nothing of it, on a 1970 axis in shares (0-1).
    none = _status(_slo(), np.full(STEPS, np.nan), np.full(STEPS, np.nan))
    texts = re.findall(r"<!-- (.*?) -->", R.plot_burn_down(tmp_path / "b.html", [none]).read_text())
    assert "no data in the window" in texts
    assert not [t for t in texts if "1970" in t]


@pytest.mark.parametrize("as_json", [False, True])
def test_cli_report_into_a_closed_pipe_ends_quietly_with_0(
    tmp_path: Path, fake_prometheus: list[float], monkeypatch: pytest.MonkeyPatch, as_json: bool
) -> None:
    # `relia slo report ... | head -1` exited 1 (the table) or with a traceback.
    import os

    spec = tmp_path / "shop.yaml"
    spec.write_text(SPEC)
    read_end, write_end = os.pipe()
    os.close(read_end)
    with open(write_end, "w") as closed:
        monkeypatch.setattr("sys.stdout", closed)
        args = ["slo", "report", str(spec), "--prometheus", URL, "--at", "2024-05-01T12:03:00Z"]
        code = app([*args, *(["--json"] if as_json else [])], standalone_mode=False)
    assert code == 0


def test_cli_plot_that_is_an_input_is_refused_and_the_spec_kept(tmp_path: Path) -> None:
    spec = tmp_path / "spec.html"  # a spec may have any name
    spec.write_text(SPEC)
    args = ["slo", "report", str(spec), "--prometheus", "http://127.0.0.1:9", "--plot", str(spec)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr == f"relia: error: --plot: {spec} is also an input; write elsewhere\n"
    assert spec.read_text() == SPEC


def test_cli_plot_name_that_ends_in_a_slash_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(SPEC)
    plot = f"{tmp_path / 'p.png'}/"
    args = ["slo", "report", str(spec), "--prometheus", "http://127.0.0.1:9", "--plot", plot]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2
    assert (
        res.stderr == f"relia: error: --plot: names a directory ({plot}); --plot writes one file\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shop.yaml"]


def test_cli_plot_that_fails_leaves_the_old_chart_whole(
    tmp_path: Path, fake_prometheus: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The chart was written in place: a failure part-way left a cut-off file.
    import matplotlib.figure

    spec = tmp_path / "shop.yaml"
    spec.write_text(SPEC)
    plot = tmp_path / "burn.png"
    plot.write_bytes(b"old chart")

    def full_disk(self: Any, fname: Any, **kwargs: Any) -> None:
        Path(fname).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full_disk)
    args = ["slo", "report", str(spec), "--prometheus", URL, "--at", "2024-05-01T12:03:00Z"]
    res = CliRunner().invoke(app, [*args, "--plot", str(plot)])
    assert res.exit_code == 2
    assert res.stderr == f"relia: error: {plot}: cannot write plot: No space left on device\n"
    assert plot.read_bytes() == b"old chart"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["burn.png", "shop.yaml"]


def test_a_trickle_of_errors_never_runs_out_in_the_table_json_and_chart(tmp_path: Path) -> None:
    # 3 bad in 3,000,000 a step: the budget would last to the year 59520; writing that date
    # crashed the table, the JSON and the chart ("year 59520 is out of range").
    st = _status(_slo(), np.full(STEPS, 1e-3), np.full(STEPS, 3e6))
    assert _rows(R.summary_table([st]))[0]["budget runs out"] == "never"
    assert R.report_json([st])["slos"][0]["exhaustion"] == {"seconds": None, "at": None}
    page = R.plot_burn_down(tmp_path / "b.html", [st]).read_text()
    rows = [re.findall(r"<td>(.*?)</td>", r) for r in re.findall(r"<tr>(<td>.*?)</tr>", page)]
    assert rows[0][-2] == "never"
    # A status made by hand past the horizon says so too.
    far = dataclasses.replace(st, exhaustion_s=1.8e12)
    assert _rows(R.summary_table([far]))[0]["budget runs out"] == "never"


def test_cli_report_of_a_busy_service_with_a_trickle_of_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 10,000 requests/s and an error every 28 hours: exit 1 with a traceback before.
    import relia.sources.prometheus as prom

    rates = [
        _series({"__name__": "req", "kind": "total"}, lambda a: 10000.0),
        _series({"__name__": "req", "kind": "bad"}, lambda a: 1e-5),
    ]
    series = [RangeSeries({**s.labels, "window": "5m"}, s.ts, s.values) for s in rates]
    real = prom.PrometheusClient
    monkeypatch.setattr(
        prom,
        "PrometheusClient",
        lambda url, timeout=10.0, transport=None: real(
            url, timeout=timeout, transport=fake_prometheus_transport(series)
        ),
    )
    spec = tmp_path / "shop.yaml"
    spec.write_text(SPEC)
    args = ["slo", "report", str(spec), "--prometheus", URL, "--at", "2024-05-01T12:03:00Z"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "never" in res.stdout
    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["slos"][0]["exhaustion"] == {"seconds": None, "at": None}
    res = CliRunner().invoke(app, [*args, "--plot", str(tmp_path / "b.html")])
    assert res.exit_code == 0, res.output
    assert "<td>never</td>" in (tmp_path / "b.html").read_text()


def test_cli_plot_with_a_name_too_long_is_one_line_exit_2(tmp_path: Path) -> None:
    # ENAMETOOLONG came out of Path.is_dir() as a traceback, exit 1.
    spec = tmp_path / "shop.yaml"
    spec.write_text(SPEC)
    plot = tmp_path / ("a" * 300 + ".png")
    args = ["slo", "report", str(spec), "--prometheus", "http://127.0.0.1:9", "--plot", str(plot)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2
    assert res.stderr == f"relia: error: {plot}: cannot write plot: File name too long\n"


def test_an_slo_whose_id_starts_with_an_underscore_is_in_the_legend(
    statuses: list[E.SloStatus], tmp_path: Path
) -> None:
    # matplotlib leaves a line whose label starts with "_" out of the legend: service
    # "_internal" drew an unnamed line.
    odd = _status(_slo(service="_internal"), *_counts(statuses[0]))
    page = R.plot_burn_down(tmp_path / "b.html", [odd, statuses[0]]).read_text()
    texts = re.findall(r"<!-- (.*?) -->", page)
    assert "_internal-checkout (99%)" in texts and "shop-checkout (99%)" in texts
    assert "budget exhausted" in texts


def test_the_chart_says_its_times_are_utc(statuses: list[E.SloStatus], tmp_path: Path) -> None:
    page = R.plot_burn_down(tmp_path / "b.html", statuses).read_text()
    assert "time (UTC)" in re.findall(r"<!-- (.*?) -->", page)
