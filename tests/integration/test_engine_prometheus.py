"""The engine reading from a real Prometheus server and a real scrape target on loopback."""

from __future__ import annotations

import time

import numpy as np
import pytest

from relia.engine.local import LocalExecutor
from relia.engine.loop import Engine
from relia.signals import SeriesIndex
from relia.sources.prometheus import PrometheusSource
from relia.sources.scrape import ScrapeSource
from relia.store.duckdb import DuckDBStore
from tests.integration.conftest import PrometheusServer, wave_value

pytestmark = pytest.mark.integration


def test_engine_ingests_and_scores_from_prometheus_and_scrape(
    prometheus_server: PrometheusServer,
) -> None:
    index = SeriesIndex()
    prom = PrometheusSource(
        "prom", prometheus_server.url, [('relia_test_wave{shape="sine"}', 1.0)], index,
        lookback_s=60.0,
    )  # fmt: skip
    scrape = ScrapeSource("exporter", prometheus_server.exporter_url, index)
    store = DuckDBStore(":memory:")
    engine = Engine(store, [prom, scrape], LocalExecutor("default"), index=index)
    try:
        first = engine.tick()
        assert first.source_errors == {}
        assert first.samples > 0 and first.scored > 0
        time.sleep(2.5)
        second = engine.tick()
        assert second.source_errors == {}
        assert second.samples > 0

        # From Prometheus: the labels it attached (job, instance) and the exporter's own.
        wave = next(
            s
            for s in store.list_series()
            if s.name == "relia_test_wave" and s.labels.get("job") == prometheus_server.job
        )
        assert wave.labels["shape"] == "sine"
        ts, values = store.samples(wave.series_id)
        assert len(ts) >= 3
        assert np.all(np.diff(ts) > 0), "a sample was stored twice or out of order"
        # Prometheus answers each step with the latest scraped sample (up to 1 s old).
        for t, v in zip(ts / 1000, values, strict=True):
            assert min(abs(v - wave_value(t - lag)) for lag in (0, 0.5, 1, 1.5, 2, 2.5)) < 0.15

        scraped = [s for s in store.list_series() if s.labels.get("job") == "exporter"]
        names = {s.name for s in scraped}
        assert {"relia_test_wave", "up"} <= names
        up = next(s for s in scraped if s.name == "up")
        assert store.samples(up.series_id)[1][-1] == 1.0
        # Every series has a detector state except raw counters, whose :rate series is scored.
        assert scrape.counters, "the exporter's counter was not recognised"
        watched = len(store.list_series()) - len(scrape.counters)
        assert engine.checkpoint(changed_only=False) == watched
    finally:
        engine.close()
        store.close()


def test_a_bad_query_beside_a_good_one_costs_no_samples_of_the_good_one(
    prometheus_server: PrometheusServer,
) -> None:
    index = SeriesIndex()
    prom = PrometheusSource(
        "prom", prometheus_server.url,
        [("sum(relia_test_wave", 1.0), ('relia_test_wave{shape="sine"}', 1.0)], index,
        lookback_s=30.0,
    )  # fmt: skip
    store = DuckDBStore(":memory:")
    engine = Engine(store, [prom], LocalExecutor("default"), index=index)
    try:
        first = engine.tick()
        assert "sum(relia_test_wave" in first.source_errors["prom"]
        assert "HTTP 400" in first.source_errors["prom"]
        time.sleep(2.5)
        second = engine.tick()
        assert "prom" in second.source_errors
        (wave,) = [s for s in store.list_series() if s.name == "relia_test_wave"]
        ts, _ = store.samples(wave.series_id)
        # Every step since the server's first scrape up to the second tick, once each.
        assert len(ts) >= 3 and np.all(np.diff(ts) == 1000)
    finally:
        engine.close()
        store.close()
