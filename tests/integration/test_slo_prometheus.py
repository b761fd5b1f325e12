"""``relia slo report`` against a real Prometheus holding a known series (backfilled with
promtool): SLI, budget and burn rates checked against values worked out by hand.

The data (``slo_requests_per_minute`` in conftest): 120 requests a minute; 1 bad a minute, 3 from
6 h to 1 h before the end, 24 in the last hour. The SLO: 98 % over a rolling 2 days (error budget
2 %), with three custom alerts (page 8x over 1h/5m, page 4x over 6h/30m, ticket 0.9x over 1d/2h).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from relia.cli import app
from relia.slo.evaluate import evaluate_slo
from relia.slo.loader import load_slos
from relia.sources.prometheus import PrometheusClient
from relia.timeparse import format_ms
from tests.integration.conftest import SloPrometheus

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
