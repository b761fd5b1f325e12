"""``relia slo report`` against a real Prometheus holding a known series (backfilled with
promtool): SLI, budget and burn rates checked against values worked out by hand.

The data (``slo_requests_per_minute`` in conftest): 120 requests a minute; 1 bad a minute, 3 from
6 h to 1 h before the end, 24 in the last hour. The SLO: 98 % over a rolling 2 days (error budget
2 %), with three custom alerts (page 8x over 1h/5m, page 4x over 6h/30m, ticket 0.9x over 1d/2h).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from relia.cli import app
from relia.slo.evaluate import evaluate_slo
from relia.slo.loader import load_slo_text, load_slos
from relia.sources.prometheus import PrometheusClient
from relia.timeparse import format_ms
from tests.integration.conftest import (
    SLO_DATA_END_S,
    SloPrometheus,
    backfilled_prometheus,
    wait_backfilled,
)

pytestmark = pytest.mark.integration

SPEC = """\
apiVersion: relia/v1
service: shop
slos:
  - name: requests
    objective: 98
    period: 2d
    sli:
      events:
        error_query: sum(rate(relia_slo_requests_total{code="500"}[{{.window}}]))
        total_query: sum(rate(relia_slo_requests_total[{{.window}}]))
    alert_windows:
      - {severity: page, name: quick, burn_rate: 8, long_window: 1h, short_window: 5m}
      - {severity: page, name: slow, burn_rate: 4, long_window: 6h, short_window: 30m}
      - {severity: ticket, name: quick, burn_rate: 0.9, long_window: 1d, short_window: 2h}
"""

EB = 0.02
# By hand, minute by minute over the 2-day window (2,880 minutes of 120 requests):
EVENTS = 2880 * 120  # 345,600
BAD = 60 * 24 + 300 * 3 + (2880 - 360) * 1  # 1,440 + 900 + 2,520 = 4,860
BUDGET = EB * EVENTS  # 6,912 bad requests allowed
# Burn rate = bad / events / budget over each window:
BURN_1H = 60 * 24 / (60 * 120) / EB  # 10.0
BURN_5M = 5 * 24 / (5 * 120) / EB  # 10.0
BURN_6H = (60 * 24 + 300 * 3) / (360 * 120) / EB  # 2.708
BURN_30M = 30 * 24 / (30 * 120) / EB  # 10.0
BURN_1D = (60 * 24 + 300 * 3 + 1080 * 1) / (1440 * 120) / EB  # 0.990
BURN_2H = (60 * 24 + 60 * 3) / (120 * 120) / EB  # 5.625


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "shop.yaml"
    path.write_text(SPEC)
    return path


def test_report_matches_the_hand_computed_budget(slo_prometheus: SloPrometheus, spec: Path) -> None:
    [slo] = load_slos([spec])
    at = slo_prometheus.data_end_s * 1000
    with PrometheusClient(slo_prometheus.url) as client:
        st = evaluate_slo(client, slo, at)
    assert st.at_ms == at and st.step_s == 300
    assert st.events == pytest.approx(EVENTS, rel=1e-9)
    assert st.bad_events == pytest.approx(BAD, rel=1e-9)
    assert st.sli == pytest.approx(1 - BAD / EVENTS, rel=1e-12)
    assert st.budget_total == pytest.approx(BUDGET, rel=1e-9)
    assert st.budget_spent == pytest.approx(BAD, rel=1e-9)
    assert st.spent_ratio == pytest.approx(BAD / BUDGET, rel=1e-9)  # 70.3 %
    assert st.current_burn == pytest.approx(BURN_1H, rel=1e-9)
    # 29.7 % of a 2-day budget left, burning at 10x: gone in 0.297 * 172,800 s / 10.
    assert st.exhaustion_s == pytest.approx((1 - BAD / BUDGET) * 2 * 86400 / BURN_1H, rel=1e-9)
    got = {a.window.severity + "/" + a.window.name: a for a in st.alerts}
    expected = {
        "page/quick": (BURN_1H, BURN_5M, True),
        "page/slow": (BURN_6H, BURN_30M, False),  # the 6 h window is only at 2.7x
        "ticket/quick": (BURN_1D, BURN_2H, True),
    }
    for name, (long_burn, short_burn, firing) in expected.items():
        assert got[name].long_burn == pytest.approx(long_burn, rel=1e-9), name
        assert got[name].short_burn == pytest.approx(short_burn, rel=1e-9), name
        assert got[name].firing is firing, name
    assert st.burn_down[-1] == pytest.approx(1 - BAD / BUDGET, rel=1e-9)


def test_cli_report_json_and_table(
    slo_prometheus: SloPrometheus, spec: Path, tmp_path: Path
) -> None:
    at = format_ms(slo_prometheus.data_end_s * 1000)
    runner = CliRunner()
    plot = tmp_path / "burn.png"
    args = ["slo", "report", str(spec), "--prometheus", slo_prometheus.url, "--at", at]
    res = runner.invoke(app, [*args, "--json", "--plot", str(plot)])
    assert res.exit_code == 0, res.output
    [doc] = json.loads(res.stdout)["slos"]
    assert doc["id"] == "shop-requests" and doc["at"] == at
    assert doc["sli"] == pytest.approx(1 - BAD / EVENTS, rel=1e-12)
    assert doc["error_budget"]["total"] == pytest.approx(BUDGET, rel=1e-9)
    assert doc["error_budget"]["spent"] == pytest.approx(BAD, rel=1e-9)
    assert doc["error_budget"]["remaining"] == pytest.approx(BUDGET - BAD, rel=1e-9)
    assert doc["firing"] == ["page/quick", "ticket/quick"]
    assert plot.read_bytes()[:4] == b"\x89PNG"
    table = runner.invoke(app, args)
    assert table.exit_code == 0, table.output
    assert "shop-requests" in table.stdout and "page/quick, ticket/quick" in table.stdout
    # A query Prometheus rejects: one line, exit code 2.
    broken = tmp_path / "broken.yaml"
    broken.write_text(SPEC.replace('code="500"}[', 'code="500"}}['))
    res = runner.invoke(app, ["slo", "report", str(broken), "--prometheus", slo_prometheus.url])
    assert res.exit_code == 2 and res.stderr.startswith("relia: error: ")
    assert "Prometheus answered HTTP 400 (bad_data)" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


# --- scrape intervals: a counter scraped every minute, a gauge every 15 s ------------------------

#: One day of data ending at SLO_DATA_END_S. The counter is scraped every 60 s, 7 s off the
#: minute (as a real scrape is): ``increase(x[1m])`` then holds one sample and answers nothing.
SCRAPED_DAY_S = 86400
COUNTER_OFFSET_S = 7
#: The latency gauge, every 15 s: 100 ms, and 900 ms over the last two hours.
GAUGE_EVERY_S = 15
GAUGE_POINTS = SCRAPED_DAY_S // GAUGE_EVERY_S  # 5,760
GAUGE_BAD_POINTS = 2 * 3600 // GAUGE_EVERY_S  # 480


def _scraped_openmetrics() -> str:
    start = SLO_DATA_END_S - SCRAPED_DAY_S
    lines = ["# HELP relia_r60 Requests, by status code.", "# TYPE relia_r60 counter"]
    for code, per_minute in (("200", 59), ("500", 1)):
        for i in range(SCRAPED_DAY_S // 60):
            t = start - 60 + COUNTER_OFFSET_S + 60 * i
            lines.append(f'relia_r60_total{{code="{code}"}} {per_minute * i} {t}')
    lines += ["# HELP relia_latency_ms Latency.", "# TYPE relia_latency_ms gauge"]
    for i in range(GAUGE_POINTS):
        t = start + GAUGE_EVERY_S * (i + 1)
        value = 900 if i >= GAUGE_POINTS - GAUGE_BAD_POINTS else 100
        lines.append(f"relia_latency_ms {value} {t}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def scraped_prometheus() -> Iterator[str]:
    """A Prometheus holding :func:`_scraped_openmetrics`, backfilled."""
    ready = wait_backfilled("count(relia_r60_total)", "2")
    with backfilled_prometheus(_scraped_openmetrics(), "relia-slo-scraped-", ready) as url:
        yield url


ONE_MINUTE_SLICES = """\
apiVersion: relia/v1
service: shop
slos:
  - name: r60
    objective: 99
    period: 1d
    budgeting: {method: ratio_timeslices, timeslice_window: 1m}
    sli:
      events:
        error_query: sum(increase(relia_r60_total{code="500"}[{{.window}}]))
        total_query: sum(increase(relia_r60_total[{{.window}}]))
    alert_windows:
      - {severity: page, name: quick, burn_rate: 10, long_window: 1h, short_window: 5m}
"""


def test_one_minute_slices_over_a_counter_scraped_every_minute_have_data(
    scraped_prometheus: str,
) -> None:
    """1m slices on 60 s scrapes: each step reads at least 5m, so every slice of the day
    (the first few minutes aside) has data, and each is 59 good of 60."""
    [slo] = load_slo_text(ONE_MINUTE_SLICES)
    with PrometheusClient(scraped_prometheus) as client:
        st = evaluate_slo(client, slo, SLO_DATA_END_S * 1000)
    assert st.step_s == 60 and st.unit == "slices"
    assert st.events >= SCRAPED_DAY_S // 60 - 10, st.events
    assert st.sli == pytest.approx(59 / 60, rel=1e-9)


LATENCY_POINTS = """\
apiVersion: openslo/v1
kind: SLO
metadata: {name: search}
spec:
  service: web
  indicator:
    metadata: {name: latency}
    spec:
      thresholdMetric:
        metricSource: {type: prometheus, spec: {query: relia_latency_ms}}
  timeWindow: [{duration: 1d, isRolling: true}]
  budgetingMethod: Occurrences
  objectives: [{op: lt, value: 500, target: 0.99}]
  alertPolicies:
    - kind: AlertPolicy
      metadata: {name: fast}
      spec:
        conditions:
          - kind: AlertCondition
            metadata: {name: fast-burn}
            spec:
              severity: page
              condition: {kind: burnrate, op: gt, threshold: 14.4, lookbackWindow: 1h,
                          alertAfter: 5m}
"""


def test_threshold_occurrences_count_points_not_points_times_the_step(
    scraped_prometheus: str,
) -> None:
    """The importer counts points with count_over_time: the report takes those as counts. Its
    subqueries sample the 15 s gauge every minute (the evaluation interval), so it sees about a
    quarter of the 5,760 points, and the same share of bad ones; not 300 times as many."""
    [slo] = load_slo_text(LATENCY_POINTS)
    with PrometheusClient(scraped_prometheus) as client:
        st = evaluate_slo(client, slo, SLO_DATA_END_S * 1000)
    per_minute = GAUGE_POINTS * GAUGE_EVERY_S / 60  # 1,440
    assert per_minute * 0.95 <= st.events <= per_minute * 1.25, st.events
    assert st.bad_events / st.events == pytest.approx(GAUGE_BAD_POINTS / GAUGE_POINTS, rel=0.05)
    [page] = st.alerts
    assert 60 * 0.95 <= page.long_events <= 60 * 1.25, page.long_events  # 1 h at 1 a minute
    assert page.firing
