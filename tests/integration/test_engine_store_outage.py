"""The engine over a real PostgreSQL that restarts mid-run: the outage costs time, not data."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from relia.config import IncidentsConfig
from relia.engine.incidents import IncidentPipeline
from relia.engine.local import LocalExecutor
from relia.engine.loop import Engine
from relia.errors import StoreError
from relia.signals import MetricBatch, SeriesIndex
from relia.store.postgres import PostgresStore
from tests.engine.test_loop import STEP, T0, Clock, CountingSource
from tests.pgserver import PostgresServer

pytestmark = pytest.mark.integration


def test_samples_and_the_finding_of_a_postgresql_restart_are_all_stored(
    postgres_server: PostgresServer, postgres_dsn: str
) -> None:
    clock, index = Clock(), SeriesIndex()
    source = CountingSource(index)  # the spike is at ticks 40 and 41
    with PostgresStore(postgres_dsn) as store:
        pipeline = IncidentPipeline(store, IncidentsConfig(), index.labels)
        eng = Engine(
            store, [source], LocalExecutor("cusum", {}), index=index, clock=clock,
            registry=CollectorRegistry(), incidents=pipeline,
        )  # fmt: skip
        try:
            for _ in range(40):
                eng.tick()
                clock.now += STEP
            postgres_server.stop()
            try:
                for _ in range(3):  # tick 40 polls and fails; 41 and 42 fail before polling
                    with pytest.raises(StoreError):
                        eng.tick()
                    clock.now += STEP
            finally:
                postgres_server.start()
            for _ in range(3):
                eng.tick()
                clock.now += STEP
            assert source.polled == list(range(41)) + [43, 44, 45]
            (cpu,) = [s for s in store.list_series() if s.name == "cpu"]
            stored = store.scored_samples(cpu.series_id)
            assert stored.ts.tolist() == [T0 + k * STEP for k in source.polled]
            assert np.isfinite(stored.score).all()
            (finding,) = store.findings()
            assert finding.start == T0 + 40 * STEP
            (incident,) = store.incidents()
            assert incident.finding_ids == [finding.id]
        finally:
            eng.close()


class _PoisonSource:
    """Each poll: one sample of ``good`` and one of a series with a NUL in a label value."""

    name = "poison"

    def __init__(self, index: SeriesIndex) -> None:
        self.good = index.get_or_add("good", {"job": "ok"})
        self.bad = index.get_or_add("bad", {"job": "a\x00b"})

    def poll(self, now_ms: int) -> MetricBatch:
        assert self.good is not None and self.bad is not None
        ids = np.array([self.good, self.bad], np.int64)
        return MetricBatch(ids, np.array([now_ms, now_ms], np.int64), np.ones(2))


def test_a_series_postgresql_cannot_keep_never_holds_back_the_others(
    postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A NUL cannot be stored in PostgreSQL (text, jsonb): that is a refusal for good, so the
    # series' samples are dropped (logged once, counted) instead of being retried with, and
    # holding back, every other series' samples at every tick.
    clock, index = Clock(), SeriesIndex()
    source = _PoisonSource(index)
    with PostgresStore(postgres_dsn) as store:
        eng = Engine(
            store, [source], LocalExecutor("cusum", {}), index=index, clock=clock,
            registry=CollectorRegistry(),
        )  # fmt: skip
        try:
            for _ in range(3):
                eng.tick()
                clock.now += STEP
            (good,) = store.list_series()
            assert (good.name, good.n_samples) == ("good", 3)
            assert eng.status()["unstored_samples"] == 0
            assert eng.registry.get_sample_value("relia_samples_unstorable_total") == 3
            dropped = [r for r in caplog.records if "NUL" in r.getMessage()]
            assert len(dropped) == 1 and """'bad{job="a\\x00b"}'""" in dropped[0].getMessage()
        finally:
            eng.close()
