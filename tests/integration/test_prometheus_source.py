"""The Prometheus sources against a real Prometheus server and a real exporter on loopback."""

from __future__ import annotations

import time

import numpy as np
import pytest

from relia.errors import SourceError
from relia.signals import SeriesIndex
from relia.sources.prometheus import PrometheusClient, PrometheusSource
from relia.sources.scrape import ScrapeSource
from tests.integration.conftest import (
    JOB,
    REQUESTS_PER_S,
    Exporter,
    PrometheusServer,
    wave_value,
)

pytestmark = pytest.mark.integration


def _now_ms() -> int:
    return int(time.time() * 1000)


def test_query_range_returns_the_exporters_series(prometheus_server: PrometheusServer) -> None:
    end = _now_ms()
    with PrometheusClient(prometheus_server.url) as client:
        result = client.query_range("relia_test_wave", end - 60_000, end, 1.0)
    assert len(result) == 1
    series = result[0]
    assert series.labels["__name__"] == "relia_test_wave"
    assert series.labels["job"] == JOB
    assert series.labels["instance"] == prometheus_server.exporter_address
    assert series.labels["shape"] == "sine"
    assert len(series) >= 3
    assert np.all(np.diff(series.ts) == 1000)
    assert np.all(np.abs(series.values) <= 1.0)
    # Each point is a scrape of sin(2πt/60) taken at most a couple of seconds before it (the
    # scrape interval plus the scrape's own delay), so it is close to the wave at that time.
    expected_now = np.array([wave_value(t / 1000) for t in series.ts.tolist()])
    assert np.max(np.abs(series.values - expected_now)) < 2 * np.pi / 60 * 3.5


def test_counter_follows_the_exporters_count(
    prometheus_server: PrometheusServer, test_exporter: Exporter
) -> None:
    end = _now_ms()
    with PrometheusClient(prometheus_server.url) as client:
        result = client.query_range("relia_test_requests_total", end - 10_000, end, 1.0)
    assert len(result) == 1
    series = result[0]
    assert series.name == "relia_test_requests_total"
    assert np.all(np.diff(series.values) >= 0)  # a counter never goes down
    # Each point is a scrape taken at most ~3 s earlier; the counter grows by 10 per second.
    expected = REQUESTS_PER_S * (series.ts / 1000 - test_exporter.started)
    assert np.all(series.values <= expected + 0.5)
    assert np.all(series.values >= expected - 3.5 * REQUESTS_PER_S)


def test_bad_promql_gives_prometheus_message(prometheus_server: PrometheusServer) -> None:
    end = _now_ms()
    with PrometheusClient(prometheus_server.url) as client:
        with pytest.raises(SourceError) as err:
            client.query_range("sum(relia_test_wave", end - 10_000, end, 1.0)
    text = str(err.value)
    assert prometheus_server.url in text
    assert "400" in text and "bad_data" in text
    assert "parse error" in text
    assert "\n" not in text


def test_too_many_points_are_split_into_chunks(prometheus_server: PrometheusServer) -> None:
    # 30,001 points at a 1 ms step: Prometheus alone would refuse this (limit 11,000).
    end = _now_ms()
    with PrometheusClient(prometheus_server.url) as client:
        # vector(1) has a value at every step, however young the server's data is.
        result = client.query_range("vector(1)", end - 30_000, end, 0.001)
    assert len(result) == 1
    ts = result[0].ts
    assert len(ts) == 30_001
    assert ts[0] == end - 30_000 and ts[-1] == end
    assert np.all(np.diff(ts) == 1)
    assert np.all(result[0].values == 1.0)


def test_source_polls_return_new_samples_only(prometheus_server: PrometheusServer) -> None:
    index = SeriesIndex()
    source = PrometheusSource(
        "prom",
        prometheus_server.url,
        [("relia_test_wave", 1.0), ("relia_test_requests_total", 1.0)],
        index,
        lookback_s=30.0,
    )
    try:
        first = source.poll(_now_ms())
        time.sleep(2.2)
        second = source.poll(_now_ms())
    finally:
        source.close()
    # The server may be only seconds old: at least one point per query on each poll.
    assert len(np.unique(first.series_id)) == 2 and len(second) >= 2
    both = (
        np.concatenate([first.series_id, second.series_id]),
        np.concatenate([first.ts, second.ts]),
    )
    pairs = set(zip(both[0].tolist(), both[1].tolist(), strict=True))
    assert len(pairs) == len(first) + len(second)  # nothing returned twice
    names = {index.name(int(s)) for s in np.unique(first.series_id)}
    assert names == {"relia_test_wave", "relia_test_requests_total"}
    wave = index.find(
        "relia_test_wave",
        {"job": JOB, "instance": prometheus_server.exporter_address, "shape": "sine"},
    )
    assert wave is not None and wave in set(second.series_id.tolist())
    for sid, ts, _ in second.split():
        prev = first.ts[first.series_id == sid]
        assert ts.min() > prev.max()


def test_scrape_source_against_the_real_exporter(prometheus_server: PrometheusServer) -> None:
    index = SeriesIndex()
    source = ScrapeSource("exp", prometheus_server.exporter_url, index)
    try:
        now = _now_ms()
        batch = source.poll(now)
    finally:
        source.close()
    assert source.last_error is None
    target = {"job": "exp", "instance": prometheus_server.exporter_address}
    up = index.find("up", target)
    wave = index.find("relia_test_wave", {**target, "shape": "sine"})
    counter = index.find("relia_test_requests_total", target)
    assert up is not None and wave is not None and counter is not None
    values = dict(zip(batch.series_id.tolist(), batch.value.tolist(), strict=True))
    assert values[up] == 1.0
    assert abs(values[wave] - wave_value(now / 1000)) < 0.05
    assert values[counter] >= 0.0


def test_scrape_source_down_target_reports_up_zero() -> None:
    index = SeriesIndex()
    source = ScrapeSource("gone", "http://127.0.0.1:1/metrics", index, timeout=1.0)
    try:
        batch = source.poll(1_000)
    finally:
        source.close()
    assert len(batch) == 1 and batch.value[0] == 0.0
    assert source.last_error is not None and "127.0.0.1:1" in source.last_error


def test_unreachable_prometheus_is_a_source_error() -> None:
    with PrometheusClient("http://127.0.0.1:1", timeout=1.0) as client:
        with pytest.raises(SourceError, match=r"127\.0\.0\.1:1.*cannot reach"):
            client.query_range("up", 0, 1000, 1.0)
