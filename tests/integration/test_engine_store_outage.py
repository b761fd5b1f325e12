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
from relia.signals import SeriesIndex
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
