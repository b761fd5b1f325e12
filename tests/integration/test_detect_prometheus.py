"""`relia detect --prometheus` against a real Prometheus server on loopback."""

from __future__ import annotations

import io
import time
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from relia.cli import app
from tests.integration.conftest import PrometheusServer, wave_value

pytestmark = pytest.mark.integration
runner = CliRunner()


def test_detect_reads_a_series_from_prometheus(prometheus_server: PrometheusServer) -> None:
    time.sleep(2)  # a few more scrapes
    result = runner.invoke(
        app,
        [
            "detect", "--prometheus", prometheus_server.url, "--query",
            'relia_test_wave{shape="sine"}', "--start", "now-60s", "--end", "now", "--step", "1s",
            "-d", "mad",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    frame = pl.read_csv(io.StringIO(result.stdout))
    assert frame.columns == ["timestamp", "value", "anomaly_score", "is_anomaly"]
    assert frame.height >= 3
    # Each value is the wave at (about) its scrape time: Prometheus returns the latest sample at
    # or before each step, at most a scrape interval old.
    ts = frame["timestamp"].str.to_datetime(time_zone="UTC").dt.epoch("ms").to_numpy() / 1000
    for t, v in zip(ts, frame["value"].to_numpy(), strict=True):
        assert min(abs(v - wave_value(t - lag)) for lag in (0, 0.5, 1, 1.5, 2, 2.5)) < 0.15
    assert "anomalous window" in result.stderr  # window or windows


def test_long_ranges_are_split_under_the_points_limit(
    prometheus_server: PrometheusServer, tmp_path: Path
) -> None:
    # 4 h at 1 s is 14,401 points: one request would be refused by Prometheus (11,000 max).
    out = tmp_path / "wave.csv"
    result = runner.invoke(
        app,
        [
            "detect", "--prometheus", prometheus_server.url, "--query", "relia_test_wave",
            "--start", "now-4h", "--end", "now", "--step", "1s", "--out", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert pl.read_csv(out).height >= 3


def test_one_output_per_series(prometheus_server: PrometheusServer, tmp_path: Path) -> None:
    out = tmp_path / "up.csv"
    result = runner.invoke(
        app,
        [
            "detect", "--prometheus", prometheus_server.url, "--query",
            '{job="relia_test", __name__=~"relia_test_wave|relia_test_requests_total"}',
            "--start", "now-30s", "--end", "now", "--step", "1s", "--out", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert out.exists() and (tmp_path / "up_2.csv").exists()


def test_bad_promql_is_prometheus_message_and_exit_2(prometheus_server: PrometheusServer) -> None:
    result = runner.invoke(
        app, ["detect", "--prometheus", prometheus_server.url, "--query", "rate(x[5m]"]
    )
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("relia: error:")
    assert "parse error" in lines[0]


def test_query_without_series_is_exit_2(prometheus_server: PrometheusServer) -> None:
    result = runner.invoke(
        app, ["detect", "--prometheus", prometheus_server.url, "--query", "no_such_metric"]
    )
    assert result.exit_code == 2
    assert "no series" in result.stderr
