from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from relia.config import IncidentsConfig
from relia.detect.checkpoint import unpack
from relia.engine.executor import ScoredPoints
from relia.engine.incidents import IncidentPipeline
from relia.engine.local import LocalExecutor
from relia.engine.loop import Engine
from relia.errors import DataError, SourceError, StoreError
from relia.incidents.model import Finding
from relia.signals import MetricBatch, SeriesIndex
from relia.sources.base import MetricSource, PartialPollError
from relia.store.base import SampleScores, SeriesInfo, Store
from relia.store.duckdb import DuckDBStore
from tests.engine.memstore import MemoryStore

StoreFactory = Callable[[], Store]


@pytest.fixture(params=["memory", "duckdb"])
def make_store(request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
    made: list[Store] = []

    def make() -> Store:
        st: Store = MemoryStore() if request.param == "memory" else DuckDBStore(":memory:")
        made.append(st)
        return st

    yield make
    for st in made:
        st.close()


STEP = 15_000
T0 = 1_700_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


class WaveSource:
    """Two series; a deterministic value per (series, tick); a spike at tick ``spike_at``."""

    def __init__(self, index: SeriesIndex, name: str = "wave", spike_at: int = 40) -> None:
        self.name = name
        self.index = index
        self.spike_at = spike_at
        self.ids = [index.get_or_add("cpu", {"host": "a"}), index.get_or_add("mem", {"host": "a"})]

    def poll(self, now_ms: int) -> MetricBatch:
        k = (now_ms - T0) // STEP
        rng = np.random.default_rng(k)
        v = np.array([50.0, 20.0]) + rng.normal(0, 1, 2)
        if k in (self.spike_at, self.spike_at + 1):
            v[0] += 60
        return MetricBatch(np.array(self.ids), np.array([now_ms, now_ms]), v)


class BrokenSource:
    name = "broken"

    def __init__(self) -> None:
        self.calls = 0

    def poll(self, now_ms: int) -> MetricBatch:
        self.calls += 1
        raise SourceError("broken: connection refused to http://127.0.0.1:1/metrics")


def _engine(store: Store, clock: Clock, *sources: object, **kw: object) -> Engine:
    index = SeriesIndex()
    srcs = [WaveSource(index)] + list(sources)
    return Engine(
        store,
        srcs,  # type: ignore[arg-type]
        LocalExecutor("cusum", {}),
        index=index,
        clock=clock,
        registry=CollectorRegistry(),
        **kw,  # type: ignore[arg-type]
    )


def test_tick_stores_samples_scores_and_finds_the_spike(make_store: StoreFactory) -> None:
    store, clock = make_store(), Clock()
    eng = _engine(store, clock)
    for _ in range(50):
        eng.tick()
        clock.now += STEP
    series = store.list_series()
    assert [s.name for s in series] == ["cpu", "mem"]
    assert all(s.n_samples == 50 for s in series)
    found = store.findings()
    assert len(found) == 1
    f = found[0]
    assert f.key == 'cpu{host="a"}'
    assert f.start == T0 + 40 * STEP and T0 + 41 * STEP <= f.end <= T0 + 43 * STEP
    assert "above expected" in f.summary
    reg = eng.registry
    assert reg.get_sample_value("relia_engine_ticks_total") == 50
    assert reg.get_sample_value("relia_samples_ingested_total") == 100
    assert reg.get_sample_value("relia_findings_total") == 1
    assert reg.get_sample_value("relia_series") == 2
    st = eng.status()
    assert st["ticks"] == 50 and st["series"] == 2 and st["last_tick_ms"] == T0 + 49 * STEP


def test_a_finding_the_store_refuses_as_bad_data_is_dropped_not_retried_forever(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A DataError (a NUL PostgreSQL cannot keep, say) is refused again at every retry: kept in
    # the tick's retry queue, it would hold back every later sample. It is dropped and counted.
    class RefusingStore(DuckDBStore):
        def add_findings(self, findings: list[Finding]) -> int:
            if any(f.key.startswith("cpu") for f in findings):
                raise DataError("its summary holds a NUL character", where="findings[0]")
            return super().add_findings(findings)

    clock = Clock()
    with RefusingStore(":memory:") as store:
        eng = _engine(store, clock)
        for _ in range(46):  # the spike is at ticks 40-41
            eng.tick()
            clock.now += STEP
        assert {s.name: s.n_samples for s in store.list_series()} == {"cpu": 46, "mem": 46}
        assert store.findings() == [] and eng.status()["unstored_samples"] == 0
        assert eng.registry.get_sample_value("relia_findings_unstorable_total", {}) >= 1
        assert any("dropped finding" in r.getMessage() for r in caplog.records)


def test_a_tick_stores_findings_then_samples_then_commits_its_push_sources() -> None:
    # Findings go first so the bulk write of samples does not delay them; a push source's
    # write-ahead log is committed only once the samples are stored, so a crash in between
    # replays them.
    calls: list[str] = []

    class RecordingStore(MemoryStore):
        def append_samples(self, batch: MetricBatch, scores: object | None = None) -> None:
            calls.append("samples")
            super().append_samples(batch, scores)

        def add_findings(self, findings: list[Finding]) -> int:
            calls.append("findings")
            return super().add_findings(findings)

    class PushSource(WaveSource):
        def stored(self) -> None:
            calls.append("committed")

    clock = Clock()
    index = SeriesIndex()
    eng = Engine(
        RecordingStore(),
        [PushSource(index)],
        LocalExecutor("cusum", {}),
        index=index,
        clock=clock,
        registry=CollectorRegistry(),
    )
    for _ in range(41):  # the spike is at tick 40
        calls.clear()
        eng.tick()
        clock.now += STEP
    assert calls == ["findings", "samples", "committed"]


def test_a_failing_source_does_not_stop_the_others(make_store: StoreFactory) -> None:
    store, clock = make_store(), Clock()
    broken = BrokenSource()
    eng = _engine(store, clock, broken)
    r = eng.tick()
    clock.now += STEP
    eng.tick()
    assert r.samples == 2 and "broken" in r.source_errors
    assert broken.calls == 2
    assert eng.registry.get_sample_value("relia_source_errors_total", {"source": "broken"}) == 2
    st = eng.status()["sources"]["broken"]
    assert st["errors"] == 2 and "connection refused" in st["last_error"]
    assert all(s.n_samples == 2 for s in store.list_series())


def test_a_source_that_partly_failed_counts_the_error_and_keeps_what_it_returned(
    make_store: StoreFactory,
) -> None:
    class HalfBrokenSource:
        name = "half"

        def __init__(self, index: SeriesIndex) -> None:
            self.sid = index.get_or_add("disk", {"host": "a"})

        def poll(self, now_ms: int) -> MetricBatch:
            batch = MetricBatch.for_series(self.sid, [now_ms], [1.0])
            raise PartialPollError("source 'half', query 'sum(': parse error", batch)

    store, clock = make_store(), Clock()
    eng = _engine(store, clock)
    eng.sources.append(HalfBrokenSource(eng.index))  # type: ignore[arg-type]
    r = eng.tick()
    assert r.samples == 3 and "parse error" in r.source_errors["half"]
    assert eng.registry.get_sample_value("relia_source_errors_total", {"source": "half"}) == 1
    assert eng.status()["sources"]["half"]["errors"] == 1
    assert {s.name: s.n_samples for s in store.list_series()} == {"cpu": 1, "mem": 1, "disk": 1}


class OutageStore(DuckDBStore):
    """A DuckDB store whose writes fail while ``down`` (a PostgreSQL restart, a full disk)."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise StoreError("cannot connect to the store: connection refused")

    def upsert_series(
        self, series: list[tuple[int, str, dict[str, str]]], seen_at: int | None = None
    ) -> None:
        self._check()
        super().upsert_series(series, seen_at)

    def append_samples(self, batch: MetricBatch, scores: SampleScores | None = None) -> None:
        self._check()
        super().append_samples(batch, scores)

    def add_findings(self, findings: list[Finding]) -> int:
        self._check()
        return super().add_findings(findings)


class CountingSource(WaveSource):
    def __init__(self, index: SeriesIndex) -> None:
        super().__init__(index)
        self.polled: list[int] = []

    def poll(self, now_ms: int) -> MetricBatch:
        self.polled.append((now_ms - T0) // STEP)
        return super().poll(now_ms)


def _correlating_engine(
    store: Store, source: MetricSource, index: SeriesIndex, clock: Clock
) -> Engine:
    """A cusum engine on one source whose findings go to an incident pipeline on ``store``."""
    pipeline = IncidentPipeline(store, IncidentsConfig(), index.labels)
    return Engine(
        store, [source], LocalExecutor("cusum", {}), index=index, clock=clock,
        registry=CollectorRegistry(), incidents=pipeline,
    )  # fmt: skip


def _tick_through_outage(
    eng: Engine, store: OutageStore, clock: Clock, *, ticks: int, down: set[int]
) -> None:
    """``ticks`` ticks one STEP apart; on those in ``down`` the store is down and the tick fails."""
    for k in range(ticks):
        store.down = k in down
        if store.down:
            with pytest.raises(StoreError):
                eng.tick()
        else:
            eng.tick()
        clock.now += STEP


def test_a_tick_the_store_failed_is_stored_by_the_next_before_it_polls() -> None:
    # The spike (ticks 40-41) arrives while the store is down for ticks 40 and 41: what tick
    # 40 polled and scored is stored once the store is back, its finding too; tick 41 does not
    # poll while tick 40's samples wait (a pull source is held back, not emptied into nothing).
    store, clock, index = OutageStore(), Clock(), SeriesIndex()
    source = CountingSource(index)
    eng = _correlating_engine(store, source, index, clock)
    try:
        for k in range(44):
            store.down = k in (40, 41)
            if store.down:
                with pytest.raises(StoreError):
                    eng.tick()
                assert eng.status()["unstored_samples"] == 2  # tick 40's, waiting
            else:
                eng.tick()
                assert eng.status()["unstored_samples"] == 0
            clock.now += STEP
        assert source.polled == [k for k in range(44) if k != 41]
        (cpu,) = [s for s in store.list_series() if s.name == "cpu"]
        stored = store.scored_samples(cpu.series_id)
        assert stored.ts.tolist() == [T0 + k * STEP for k in range(44) if k != 41]
        assert np.isfinite(stored.score).all(), "a sample of the failed tick lost its score"
        (finding,) = store.findings()
        assert finding.start == T0 + 40 * STEP
        (incident,) = store.incidents()
        assert finding.id in incident.finding_ids
    finally:
        eng.close()
        store.close()


def test_closing_stores_what_a_failed_tick_left_if_the_store_takes_it() -> None:
    store, clock, index = OutageStore(), Clock(), SeriesIndex()
    eng = Engine(
        store, [WaveSource(index)], LocalExecutor("cusum", {}), index=index, clock=clock,
        registry=CollectorRegistry(),
    )  # fmt: skip
    try:
        eng.tick()
        clock.now += STEP
        store.down = True
        with pytest.raises(StoreError):
            eng.tick()
        store.down = False
        eng.close()
        (cpu,) = [s for s in store.list_series() if s.name == "cpu"]
        assert store.samples(cpu.series_id)[0].tolist() == [T0, T0 + STEP]
    finally:
        store.close()


def test_closing_hands_the_findings_of_the_failed_tick_it_stored_to_the_incidents() -> None:
    # The spike arrives at tick 40 while the store is down; relia is stopped before another
    # tick. Closing stores tick 40's samples and its finding, and that finding opens its
    # incident now, not at the next start.
    store, clock, index = OutageStore(), Clock(), SeriesIndex()
    eng = _correlating_engine(store, CountingSource(index), index, clock)
    try:
        _tick_through_outage(eng, store, clock, ticks=41, down={40})
        assert store.findings() == [] and store.incidents() == []
        store.down = False
        eng.close()
        (finding,) = store.findings()
        assert finding.start == T0 + 40 * STEP
        (incident,) = store.incidents()
        assert finding.id in incident.finding_ids
    finally:
        store.close()


def test_a_push_source_is_committed_once_the_failed_tick_is_stored_and_not_handed_twice() -> None:
    class PushSource(WaveSource):
        push = True

        def __init__(self, index: SeriesIndex) -> None:
            super().__init__(index)
            self.pending: MetricBatch | None = None
            self.committed = 0

        def poll(self, now_ms: int) -> MetricBatch:
            fresh = super().poll(now_ms)  # like IngestSource: the uncommitted ones come again
            self.pending = (
                fresh if self.pending is None else MetricBatch.concat([self.pending, fresh])
            )
            return self.pending

        def stored(self) -> None:
            self.pending = None
            self.committed += 1

    store, clock, index = OutageStore(), Clock(), SeriesIndex()
    source = PushSource(index)
    eng = Engine(
        store, [source], LocalExecutor("cusum", {}), index=index, clock=clock,
        registry=CollectorRegistry(),
    )  # fmt: skip
    try:
        for k in range(5):
            store.down = k == 2
            if store.down:
                with pytest.raises(StoreError):
                    eng.tick()
            else:
                r = eng.tick()
                assert r.dropped == 0, "samples were handed to the detectors twice"
            clock.now += STEP
        assert source.committed == 5 and source.pending is None
        (cpu,) = [s for s in store.list_series() if s.name == "cpu"]
        stored = store.scored_samples(cpu.series_id)
        assert stored.ts.tolist() == [T0 + k * STEP for k in range(5)]
        assert np.isfinite(stored.score).all()
    finally:
        eng.close()
        store.close()


def test_checkpoints_every_n_ticks_and_on_close(make_store: StoreFactory) -> None:
    store, clock = make_store(), Clock()
    eng = _engine(store, clock, checkpoint_every=3, checkpoint_interval_s=1e9)
    results = []
    for _ in range(4):
        results.append(eng.tick().checkpointed)
        clock.now += STEP
    assert results == [0, 0, 2, 0]
    assert len(store.load_checkpoints()) == 2
    eng.close()
    assert eng.registry.get_sample_value("relia_checkpoints_saved_total") == 4


class _RefusesCheckpointsOnce(MemoryStore):
    """A store that refuses one ``save_checkpoints`` once ``refuse`` is set."""

    refuse = False

    def save_checkpoints(self, checkpoints: dict[int, bytes]) -> None:
        if self.refuse:
            self.refuse = False
            raise StoreError("cannot connect to the store: connection refused")
        super().save_checkpoints(checkpoints)


def test_checkpoints_the_store_refused_are_saved_by_the_next_checkpoint() -> None:
    # The executor hands each changed state out once; a series that learns nothing after a
    # failed save would otherwise keep its older checkpoint for good.
    store, clock, index = _RefusesCheckpointsOnce(), Clock(), SeriesIndex()
    source = WaveSource(index)
    eng = Engine(
        store, [source], LocalExecutor("cusum", {}), index=index, clock=clock,
        registry=CollectorRegistry(), checkpoint_every=1000, checkpoint_interval_s=1e9,
    )  # fmt: skip
    eng.tick()
    store.refuse = True
    with pytest.raises(StoreError):
        eng.checkpoint()
    assert store.load_checkpoints() == {}
    assert eng.checkpoint() == 2  # nothing learned since: the refused ones are saved now
    assert sorted(store.load_checkpoints()) == sorted(source.ids)
    eng.close()


def test_checkpoints_by_clock_time(make_store: StoreFactory) -> None:
    store, clock = make_store(), Clock()
    eng = _engine(store, clock, checkpoint_every=1000, checkpoint_interval_s=30)
    got = []
    for _ in range(5):
        got.append(eng.tick().checkpointed)
        clock.now += STEP
    assert got == [0, 0, 2, 0, 2]


def test_restart_resumes_like_an_uninterrupted_run(make_store: StoreFactory) -> None:
    # uninterrupted
    ref_store, ref_clock = make_store(), Clock()
    ref = _engine(ref_store, ref_clock)
    for _ in range(60):
        ref.tick()
        ref_clock.now += STEP
    # stop after 38 ticks (just before the spike) ... and after 41 (inside it)
    for cut in (38, 41):
        store, clock = make_store(), Clock()
        first = _engine(store, clock, checkpoint_every=1000, checkpoint_interval_s=1e9)
        for _ in range(cut):
            first.tick()
            clock.now += STEP
        first.close()
        second = _engine(store, clock)
        assert second.start() == 2
        st = second.status()
        assert (st["series"], st["restored_series"]) == (2, 2)  # before its first tick
        for _ in range(60 - cut):
            second.tick()
            clock.now += STEP
        assert second.executor.checkpoints() == ref.executor.checkpoints()
        mine = [(f.id, f.start, f.end, f.score) for f in store.findings()]
        theirs = [(f.id, f.start, f.end, f.score) for f in ref_store.findings()]
        assert mine == theirs, cut


def test_tick_with_no_data_is_fine(make_store: StoreFactory) -> None:
    store = MemoryStore()
    eng = Engine(
        store,
        [],
        LocalExecutor("mad", {}),
        index=SeriesIndex(),
        clock=Clock(),
        registry=CollectorRegistry(),
    )
    r = eng.tick()
    assert r.samples == 0 and r.new_findings == 0


def _run_until_the_third_poll(store: Store, interval_s: float) -> tuple[Engine, int]:
    """Run the engine's loop on ``store`` with a wave source that stops it at its third poll;
    the engine and how many polls were made."""
    index = SeriesIndex()
    polls = {"n": 0}
    stop = threading.Event()

    class Src(WaveSource):
        def poll(self, now_ms: int) -> MetricBatch:
            polls["n"] += 1
            if polls["n"] >= 3:
                stop.set()
            return super().poll(T0 + polls["n"] * STEP)

    eng = Engine(
        store, [Src(index)], LocalExecutor("mad", {}), index=index, registry=CollectorRegistry()
    )
    t = threading.Thread(target=eng.run, args=(stop, interval_s))
    t.start()
    t.join(20)
    assert not t.is_alive()
    return eng, polls["n"]


def test_run_loop_stops_and_survives_a_failing_tick() -> None:
    class FlakyStore(MemoryStore):
        fail = True

        def append_samples(self, batch: MetricBatch, scores: object | None = None) -> None:
            if self.fail:
                self.fail = False
                raise OSError("disk full")
            super().append_samples(batch, scores)

    eng, polls = _run_until_the_third_poll(FlakyStore(), interval_s=0.01)
    assert eng.registry.get_sample_value("relia_engine_tick_errors_total") == 1
    assert eng.status()["last_error"] is None  # the later ticks succeeded
    assert polls == 3
    assert eng.status()["running"] is False


def test_a_tick_failing_the_same_way_again_and_again_logs_one_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class DownFor(OutageStore):
        """Down for its first 30 writes of samples."""

        failures = 0

        def append_samples(self, batch: MetricBatch, scores: SampleScores | None = None) -> None:
            self.down = self.failures < 30
            self.failures += self.down
            super().append_samples(batch, scores)

    store = DownFor()
    with caplog.at_level(logging.INFO, logger="relia.engine.loop"):
        eng, polls = _run_until_the_third_poll(store, interval_s=0.001)
    # The first tick polls and fails; the next 29 fail at the store before they poll.
    assert eng.registry.get_sample_value("relia_engine_tick_errors_total") == 30
    assert polls == 3
    failed = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failed) == 1 and failed[0].exc_info is not None
    (recovered,) = [r for r in caplog.records if "recovered" in r.getMessage()]
    assert recovered.getMessage() == "engine tick recovered after 30 failures"
    assert eng.status()["last_error"] is None
    eng.close()
    store.close()


@pytest.mark.parametrize("value", [np.nan])
def test_missing_values_are_stored_and_scored(make_store: StoreFactory, value: float) -> None:
    store, clock = make_store(), Clock()
    index = SeriesIndex()
    sid = index.get_or_add("x")

    class Src:
        name = "nan"

        def poll(self, now_ms: int) -> MetricBatch:
            return MetricBatch.for_series(sid, [now_ms], [value])

    eng = Engine(
        store,
        [Src()],
        LocalExecutor("mad", {}),
        index=index,
        clock=clock,
        registry=CollectorRegistry(),
    )
    r = eng.tick()
    assert r.samples == 1 and r.scored == 1
    assert np.isnan(store.samples(sid)[1][0])


def test_with_the_packaged_fake_source(make_store: StoreFactory) -> None:
    from relia.sources.fakes import FakeSource

    index = SeriesIndex()
    a, b = index.get_or_add("q", {"i": "1"}), index.get_or_add("q", {"i": "2"})
    ts = T0 + STEP * np.arange(30, dtype=np.int64)
    vals = 5.0 + np.sin(np.arange(30.0))
    vals[25] = 80.0
    whole = MetricBatch.concat(
        [MetricBatch.for_series(a, ts, vals), MetricBatch.for_series(b, ts, vals * 0 + 1.0)]
    )
    # three polls of ten points each; the second one repeats the first's last point
    polls = [
        MetricBatch(whole.series_id[m], whole.ts[m], whole.value[m])
        for m in (
            whole.ts < ts[10],
            (whole.ts >= ts[9]) & (whole.ts < ts[20]),
            whole.ts >= ts[20],
        )
    ]
    store, clock = make_store(), Clock()
    eng = Engine(
        store,
        [FakeSource("fake", polls)],
        LocalExecutor("cusum", {}),
        index=index,
        clock=clock,
        registry=CollectorRegistry(),
    )
    results = [eng.tick() for _ in range(4)]
    assert [r.samples for r in results] == [20, 22, 20, 0]
    assert results[1].dropped == 2
    assert eng.registry.get_sample_value("relia_samples_dropped_total") == 2
    found = store.findings()
    assert [f.series_id for f in found] == [a]
    assert found[0].start == int(ts[25])


def test_raw_counters_are_stored_but_their_rates_are_scored(make_store: StoreFactory) -> None:
    """A scraped counter that restarts must not alarm: the engine scores its ``:rate`` series
    (steady through the restart) and only stores the raw counter."""
    import httpx

    from relia.sources.scrape import ScrapeSource

    total = [0.0]

    def page(request: httpx.Request) -> httpx.Response:
        total[0] = 10.0 if total[0] >= 3000.0 else total[0] + 10.0  # restarts at 3,000
        body = f"# TYPE requests_total counter\nrequests_total {total[0]}\n"
        return httpx.Response(200, content=body.encode(), headers={"Content-Type": "text/plain"})

    store, clock = make_store(), Clock()
    index = SeriesIndex()
    scrape = ScrapeSource(
        "app", "http://127.0.0.1:1/metrics", index, transport=httpx.MockTransport(page)
    )
    eng = Engine(
        store,
        [scrape],
        LocalExecutor("cusum", {}),
        index=index,
        clock=clock,
        registry=CollectorRegistry(),
    )
    for _ in range(800):
        eng.tick()
        clock.now += STEP
    eng.close()
    by_name = {s.name: s for s in store.list_series()}
    assert by_name["requests_total"].n_samples > 0  # the raw counter is stored
    raw_id = next(iter(scrape.counters))
    rate_id = scrape.counters[raw_id]
    assert eng.executor.n_series() == 2  # the rate and `up`, not the raw counter
    # Without the rate in its place, each of the two restarts (a drop of 3,000) would alarm.
    assert not [f for f in store.findings() if f.series_id in (raw_id, rate_id)]


class TripStore(OutageStore):
    """Goes down right after its next successful write of samples, once ``trip`` is set."""

    trip = False

    def append_samples(self, batch: MetricBatch, scores: SampleScores | None = None) -> None:
        super().append_samples(batch, scores)
        if self.trip:
            self.trip, self.down = False, True


class SamplesRefusedStore(DuckDBStore):
    """Takes findings but refuses samples while ``down`` (a timeout on the bulk write)."""

    down = False

    def append_samples(self, batch: MetricBatch, scores: SampleScores | None = None) -> None:
        if self.down:
            raise StoreError("cannot connect to the store: connection refused")
        super().append_samples(batch, scores)


def test_closing_with_samples_refused_still_hands_the_stored_finding_to_the_incidents() -> None:
    # Tick 40 stores its finding but the store refuses its samples, and still refuses them when
    # relia stops: the samples are lost (said in the log), the stored finding opens its incident.
    store, clock, index = SamplesRefusedStore(":memory:"), Clock(), SeriesIndex()
    eng = _correlating_engine(store, CountingSource(index), index, clock)
    try:
        for _ in range(40):
            eng.tick()
            clock.now += STEP
        store.down = True
        with pytest.raises(StoreError):
            eng.tick()
        (finding,) = store.findings()
        eng.close()
        (incident,) = store.incidents()
        assert finding.id in incident.finding_ids
    finally:
        store.close()


class CommittingPushSource(WaveSource):
    push = True

    def __init__(self, index: SeriesIndex) -> None:
        super().__init__(index)
        self.decided_calls = 0
        self.committed = 0

    def decided(self) -> None:
        self.decided_calls += 1

    def stored(self) -> None:
        self.committed += 1


def test_a_failed_tick_finished_by_a_failing_tick_still_hands_its_findings_to_incidents() -> None:
    # The store is down for ticks 40-41 (the spike); tick 42 stores tick 40's samples and its
    # new finding, then the store goes again before tick 42's own samples are stored. The
    # stored finding must still open an incident (not wait for the next restart).
    store, clock, index = TripStore(), Clock(), SeriesIndex()
    source = CommittingPushSource(index)
    eng = _correlating_engine(store, source, index, clock)
    try:
        _tick_through_outage(eng, store, clock, ticks=42, down={40, 41})
        committed = source.committed
        store.down, store.trip = False, True
        with pytest.raises(StoreError):
            eng.tick()  # tick 42
        # Tick 40's samples are stored: the push source may drop them from its log.
        assert source.committed == committed + 1
        (finding,) = store.findings()
        assert finding.start == T0 + 40 * STEP
        (incident,) = store.incidents()
        assert finding.id in incident.finding_ids
    finally:
        eng.close()
        store.close()


def test_a_tick_whose_samples_the_store_refused_counts_and_correlates_its_finding_once() -> None:
    # Tick 40 stores its new finding, then the store refuses its samples: tick 41 stores them
    # without storing the finding again, reports them in its samples, and the finding counts
    # once as new (not as updated) and reaches the incidents.
    store, clock, index = SamplesRefusedStore(":memory:"), Clock(), SeriesIndex()
    source = CommittingPushSource(index)
    eng = _correlating_engine(store, source, index, clock)
    try:
        for _ in range(40):
            eng.tick()
            clock.now += STEP
        store.down = True
        with pytest.raises(StoreError):
            eng.tick()
        clock.now += STEP
        store.down = False
        r = eng.tick()
        assert r.samples == 4  # tick 40's two and its own two
        assert r.new_findings == 1 and r.updated_findings == 1  # tick 41 extends it
        reg = eng.registry
        assert reg.get_sample_value("relia_findings_total") == 1
        assert reg.get_sample_value("relia_findings_updated_total") == 1
        # Told once per poll (42 of them) that the findings of its samples are stored.
        assert source.decided_calls == 42
        (finding,) = store.findings()
        (incident,) = store.incidents()
        assert finding.id in incident.finding_ids
    finally:
        eng.close()
        store.close()


def test_checkpoints_once_a_series_may_have_learned_a_quarter_of_what_the_store_keeps() -> None:
    # The store keeps 40 samples a series: after 10 learned ones a checkpoint is due, so a
    # replay after a crash still finds every sample learned since the last checkpoint.
    store, clock = MemoryStore(samples_per_series=40), Clock()
    eng = _engine(store, clock, checkpoint_every=1000, checkpoint_interval_s=1e9)
    got = []
    for _ in range(25):
        got.append(eng.tick().checkpointed)
        clock.now += STEP
    assert [i for i, n in enumerate(got) if n] == [9, 19]


def test_push_ticks_poll_only_push_sources_and_count_towards_checkpoints_only_by_samples() -> None:
    class QueueSource:
        name = "push"
        push = True

        def __init__(self, index: SeriesIndex) -> None:
            self.sid = index.get_or_add("queue_depth")

        def poll(self, now_ms: int) -> MetricBatch:
            return MetricBatch.for_series(self.sid, [now_ms], [3.0])

    store, clock = MemoryStore(), Clock()
    eng = _engine(store, clock, checkpoint_every=2, checkpoint_interval_s=1e9)
    eng.sources.append(QueueSource(eng.index))  # type: ignore[arg-type]
    got = []
    for _ in range(5):
        got.append(eng.tick(push_only=True).checkpointed)
        clock.now += 1000
    assert got == [0] * 5
    assert {s.name: s.n_samples for s in store.list_series()} == {"queue_depth": 5}
    assert eng.tick().checkpointed == 0  # the first full tick
    clock.now += STEP
    assert eng.tick().checkpointed == 3
    assert eng.status()["ticks"] == 7


def test_a_refused_checkpoint_never_overwrites_a_newer_state() -> None:
    store, clock = _RefusesCheckpointsOnce(), Clock()
    eng = _engine(store, clock, checkpoint_every=1000, checkpoint_interval_s=1e9)
    eng.tick()
    clock.now += STEP
    store.refuse = True
    with pytest.raises(StoreError):
        eng.checkpoint()
    eng.tick()  # learns one more sample per series
    assert eng.checkpoint() == 2
    assert store.load_checkpoints() == eng.executor.checkpoints()
    assert eng.checkpoint() == 0  # saved: nothing is written again
    eng.close()


class ClosingPushSource(CommittingPushSource):
    def __init__(self, index: SeriesIndex, fails: bool = False) -> None:
        super().__init__(index)
        self.fails = fails
        self.closed = False

    def close(self) -> None:
        self.closed = True
        if self.fails:
            raise OSError("write-ahead log: disk full")


def test_closing_commits_the_push_source_whose_failed_tick_it_stored_and_closes_every_source() -> (
    None
):
    store, clock, index = OutageStore(), Clock(), SeriesIndex()
    broken, source = (
        ClosingPushSource(SeriesIndex(), fails=True),
        ClosingPushSource(index),
    )
    eng = Engine(
        store, [broken, source], LocalExecutor("cusum", {}), index=index, clock=clock,
        registry=CollectorRegistry(),
    )  # fmt: skip
    try:
        eng.tick()
        clock.now += STEP
        store.down = True
        with pytest.raises(StoreError):
            eng.tick()
        store.down = False
        eng.close()  # a source that fails to close does not stop the others
        assert source.committed == 2 and source.closed and broken.closed
    finally:
        store.close()


def test_closing_while_the_store_is_still_down_says_what_is_lost_and_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, clock, index = OutageStore(), Clock(), SeriesIndex()
    source = ClosingPushSource(index)
    eng = Engine(
        store, [source], LocalExecutor("cusum", {}), index=index, clock=clock,
        registry=CollectorRegistry(),
    )  # fmt: skip
    try:
        eng.tick()
        clock.now += STEP
        store.down = True
        with pytest.raises(StoreError):
            eng.tick()
        with caplog.at_level(logging.WARNING, logger="relia.engine.loop"):
            eng.close()
        assert "2 samples of the last tick were not stored" in caplog.text
        assert source.closed and source.committed == 1  # not committed: replayed on restart
    finally:
        store.close()


def test_samples_a_failed_tick_left_count_towards_the_next_checkpoint() -> None:
    class DownMemoryStore(MemoryStore):
        down = False

        def append_samples(self, batch: MetricBatch, scores: object | None = None) -> None:
            if self.down:
                raise StoreError("cannot connect to the store: connection refused")
            super().append_samples(batch, scores)

    # A checkpoint is due after 10 learned samples a series: 8 ticks, a failed one whose
    # samples the next tick stores along with its own, make 10.
    store, clock = DownMemoryStore(samples_per_series=40), Clock()
    eng = _engine(store, clock, checkpoint_every=1000, checkpoint_interval_s=1e9)
    for k in range(9):
        store.down = k == 8
        if store.down:
            with pytest.raises(StoreError):
                eng.tick()
        else:
            assert eng.tick().checkpointed == 0
        clock.now += STEP
    store.down = False
    assert eng.tick().checkpointed == 2


def test_a_batch_the_detectors_failed_to_score_is_stored_without_scores_and_not_retried() -> None:
    class FailsOnce(LocalExecutor):
        fail = False

        def process(self, batch: MetricBatch) -> ScoredPoints:
            if self.fail:
                self.fail = False
                raise RuntimeError("detector crashed")
            return super().process(batch)

    store, clock, index = DuckDBStore(":memory:"), Clock(), SeriesIndex()
    executor = FailsOnce("cusum", {})
    eng = Engine(
        store, [WaveSource(index)], executor, index=index, clock=clock,
        registry=CollectorRegistry(),
    )  # fmt: skip
    eng.tick()
    clock.now += STEP
    executor.fail = True
    with pytest.raises(RuntimeError, match="detector crashed"):
        eng.tick()
    assert eng.status()["unstored_samples"] == 0
    clock.now += STEP
    r = eng.tick()
    assert r.samples == 2 and r.scored == 2  # only its own
    (cpu,) = [s for s in store.list_series() if s.name == "cpu"]
    stored = store.scored_samples(cpu.series_id)
    assert stored.ts.tolist() == [T0, T0 + STEP, T0 + 2 * STEP]
    assert np.isnan(stored.score).tolist() == [False, True, False]
    eng.close()
    store.close()


def test_a_source_that_answers_again_has_no_last_error_but_keeps_its_count() -> None:
    class FlakySource(WaveSource):
        fail = True

        def poll(self, now_ms: int) -> MetricBatch:
            if self.fail:
                self.fail = False
                raise SourceError("flaky: connection refused to http://127.0.0.1:1/metrics")
            return super().poll(now_ms)

    store, clock = MemoryStore(), Clock()
    eng = _engine(store, clock)
    flaky = FlakySource(eng.index, name="flaky")
    eng.sources = [flaky]
    assert "flaky" in eng.tick().source_errors
    assert "connection refused" in eng.status()["sources"]["flaky"]["last_error"]
    clock.now += STEP
    assert eng.tick().source_errors == {}
    assert eng.status()["sources"]["flaky"] == {"errors": 1, "last_error": None}


def test_a_restart_extends_the_open_finding_of_a_series_that_went_quiet_before_the_others() -> None:
    class CpuGoesQuiet(WaveSource):
        """cpu spikes at tick 40, is not reported at ticks 41-42, spikes again at 43."""

        def poll(self, now_ms: int) -> MetricBatch:
            b = super().poll(now_ms)
            k = (now_ms - T0) // STEP
            if k in (41, 42):
                return MetricBatch(b.series_id[1:], b.ts[1:], b.value[1:])
            if k == 43:
                b.value[0] += 60
            return b

    store, clock = MemoryStore(), Clock()

    def engine() -> Engine:
        index = SeriesIndex()
        return Engine(
            store, [CpuGoesQuiet(index, spike_at=40)], LocalExecutor("cusum", {}), index=index,
            clock=clock, registry=CollectorRegistry(),
        )  # fmt: skip

    first = engine()
    for _ in range(43):
        first.tick()
        clock.now += STEP
    first.close()
    (before,) = store.findings()
    second = engine()
    second.tick()
    (after,) = store.findings()
    assert after.id == before.id and after.end == T0 + 43 * STEP


def test_the_series_index_and_its_refusals_are_on_metrics() -> None:
    store = MemoryStore()
    index = SeriesIndex(max_series=2)
    eng = Engine(
        store,
        [WaveSource(index), BrokenSource()],  # type: ignore[list-item]
        LocalExecutor("cusum", {}),
        index=index,
        clock=Clock(),
        registry=CollectorRegistry(),
    )
    reg = eng.registry
    assert reg.get_sample_value("relia_series_limit") == 2
    assert reg.get_sample_value("relia_series_registered") == 2
    # Every source's count starts at 0, so rate() works from the first refusal.
    assert reg.get_sample_value("relia_series_refused_total", {"source": "wave"}) == 0
    assert reg.get_sample_value("relia_series_refused_total", {"source": "broken"}) == 0
    assert index.get_or_add("new", source="wave") is None
    assert index.get_or_add("other", source="remote_write") is None
    assert reg.get_sample_value("relia_series_refused_total", {"source": "wave"}) == 1
    assert reg.get_sample_value("relia_series_refused_total", {"source": "remote_write"}) == 1
    assert reg.get_sample_value("relia_series_registered") == 2


class PausingSource:
    """``cpu{host="a"}`` every tick, ``job{host="b"}`` only while ``b_on`` is set; the ids are
    resolved once and remembered, as real sources do, unless they are forgotten."""

    name = "pausing"

    def __init__(self, index: SeriesIndex) -> None:
        self.index = index
        self.b_on = True
        self.forgotten: list[list[int]] = []
        self._ids: dict[str, int] = {}

    def _id(self, name: str, host: str) -> int:
        if name not in self._ids:
            sid = self.index.get_or_add(name, {"host": host})
            assert sid is not None
            self._ids[name] = sid
        return self._ids[name]

    def forget(self, series_ids: list[int]) -> None:
        self.forgotten.append(sorted(series_ids))
        self._ids = {k: v for k, v in self._ids.items() if v not in series_ids}

    def poll(self, now_ms: int) -> MetricBatch:
        k = (now_ms - T0) // STEP
        ids = [self._id("cpu", "a")] + ([self._id("job", "b")] if self.b_on else [])
        v = 50.0 + np.random.default_rng(k).normal(0, 1, len(ids))
        return MetricBatch(np.array(ids), np.full(len(ids), now_ms), v)


HOUR = 3_600_000


def _forgetting_engine(store: Store, clock: Clock, src: object, **kw: object) -> Engine:
    index = src.index if isinstance(src, PausingSource | ManySeries) else SeriesIndex()
    return Engine(
        store,
        [src],  # type: ignore[list-item]
        LocalExecutor("default", {}),
        index=index,
        clock=clock,
        registry=CollectorRegistry(),
        **{"forget_after_s": 3600.0, **kw},  # type: ignore[arg-type]  # looks every 7.5 min
    )


def _tick_for(eng: Engine, clock: Clock, ms: int) -> None:
    end = clock.now + ms
    while clock.now < end:
        eng.tick()
        clock.now += STEP


def test_a_series_silent_for_forget_after_is_forgotten_and_starts_afresh_when_back(
    make_store: StoreFactory,
) -> None:
    store, clock = make_store(), Clock()
    src = PausingSource(SeriesIndex())
    eng = _forgetting_engine(store, clock, src)
    _tick_for(eng, clock, HOUR)
    cpu, job = src._ids["cpu"], src._ids["job"]
    assert eng.executor.n_series() == 2
    src.b_on = False
    _tick_for(eng, clock, HOUR - STEP)  # silent for less than an hour: kept
    assert job in src.index and eng.executor.n_series() == 2
    _tick_for(eng, clock, HOUR // 4)  # past the hour, and past the next look
    assert job not in src.index and cpu in src.index
    assert eng.executor.n_series() == 1
    assert src.forgotten == [[job]]
    assert eng.status()["series"] == 1
    assert eng.registry.get_sample_value("relia_series_forgotten_total") == 1
    assert eng.registry.get_sample_value("relia_series") == 1
    # The store keeps its rows: deleting them is the history pruner's, hours later.
    assert {s.series_id for s in store.list_series()} == {cpu, job}
    # Back: registered again (its seen_at raised) and scored from scratch (no band while the
    # detector warms up), while the other series keeps its state.
    src.b_on = True
    eng.tick()
    back = clock.now
    assert len(store.samples(job, since=back)[0]) == 1
    if isinstance(store, DuckDBStore):  # the one that keeps the band
        assert np.isnan(store.scored_samples(job, since=back).expected).all()
        assert not np.isnan(store.scored_samples(cpu, since=back).expected).any()
    ck = unpack(eng.executor.checkpoints()[job])
    assert ck["n_seen"] == 1
    assert {s.series_id: s.seen_at for s in store.list_series()}[job] == back
    assert job in src.index and eng.executor.n_series() == 2


class ManySeries:
    """``n`` series, every one of them every tick."""

    name = "many"

    def __init__(self, index: SeriesIndex, n: int) -> None:
        self.index = index
        ids = [index.get_or_add("m", {"i": str(i)}) for i in range(n)]
        self.ids = np.array(ids, np.int64)

    def poll(self, now_ms: int) -> MetricBatch:
        v = np.random.default_rng(now_ms).normal(0, 1, len(self.ids))
        return MetricBatch(self.ids, np.full(len(self.ids), now_ms), v)


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.marked: list[dict[int, int]] = []

    def mark_series_seen(self, seen: Mapping[int, int]) -> None:
        self.marked.append(dict(seen))
        super().mark_series_seen(seen)


def test_receipt_times_reach_the_store_spread_out_and_never_too_late() -> None:
    # Writing every series' receipt time at every look would rewrite every row of the store's
    # series table each time (seconds at a million series on PostgreSQL). The store only needs
    # seen_at well inside forget_after (its pruner deletes at forget_after plus a grace), so a
    # series is written once its receipts run a quarter to a half of forget_after ahead of what
    # the store holds, the share set by its id so the writes spread over the looks.
    store, clock = CountingStore(), Clock()
    src = ManySeries(SeriesIndex(), 400)
    eng = _forgetting_engine(store, clock, src)
    look = eng.forget_every_ms
    worst_lag = 0
    end = clock.now + 3 * HOUR
    while clock.now < end:
        eng.tick()
        stored = {s.series_id: s.seen_at for s in store.list_series()}
        worst_lag = max(worst_lag, max(clock.now - v for v in stored.values() if v is not None))
        clock.now += STEP
    assert worst_lag <= HOUR // 2 + look  # never near forget_after: the pruner cannot delete it
    writes = [len(m) for m in store.marked]
    assert sum(writes) < 400 * (3 * HOUR // look) / 3  # far fewer than one per series per look
    assert max(writes) <= 400 // 2  # spread over the looks, not all at once
    per_series: dict[int, list[int]] = {}
    for m in store.marked:
        for sid, t in m.items():
            per_series.setdefault(sid, []).append(t)
    gaps = [b - a for ts in per_series.values() for a, b in zip(ts, ts[1:], strict=False)]
    assert gaps and min(gaps) >= HOUR // 4


def test_a_receipt_half_of_forget_after_ahead_of_the_store_is_written_whatever_its_turn() -> None:
    store, clock = CountingStore(), Clock()
    src = ManySeries(SeriesIndex(), 50)
    eng = _forgetting_engine(store, clock, src)
    eng.tick()  # registered at T0
    clock.now += HOUR // 2  # the engine stalled: the next look comes half an hour later
    eng.tick()
    assert store.marked and set(store.marked[-1]) == set(src.ids.tolist())
    assert {s.seen_at for s in store.list_series()} == {clock.now}


def test_series_the_store_last_saw_long_ago_are_forgotten_unless_they_report_soon() -> None:
    store, clock = MemoryStore(), Clock()
    index = SeriesIndex()
    src = PausingSource(index)
    cpu = index.get_or_add("cpu", {"host": "a"})
    gone = index.get_or_add("old", {"host": "z"})
    assert cpu is not None and gone is not None
    long_ago = T0 - 10 * 86_400_000  # relia was down for ten days
    store.upsert_series(
        [(cpu, "cpu", {"host": "a"}), (gone, "old", {"host": "z"})], seen_at=long_ago
    )
    index.forget([cpu, gone])
    src.b_on = False
    eng = _forgetting_engine(store, clock, src)
    eng.tick()
    assert {cpu, gone} <= set(index)  # loaded: not forgotten before anything could report
    # The one that reported was registered again, so the store cannot delete it under it.
    assert {s.series_id: s.seen_at for s in store.list_series()}[cpu] == T0
    _tick_for(eng, clock, eng.forget_every_ms + STEP)
    assert cpu in index and gone not in index


def test_a_sample_named_by_an_id_forgotten_meanwhile_is_stored_or_dropped_never_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, clock = MemoryStore(), Clock()
    src = PausingSource(SeriesIndex())
    src.forget = lambda ids: None  # type: ignore[method-assign]  # a source that keeps stale ids
    eng = _forgetting_engine(store, clock, src)
    eng.tick()
    job = src._ids["job"]

    def silence_job_then_look() -> None:
        src.b_on = False
        _tick_for(eng, clock, HOUR - 4 * STEP)
        clock.now += 4 * STEP
        assert eng.forget_idle() == 1 and job not in src.index
        src.b_on = True

    # Resolved before the look that forgot it: still named (a tombstone), so stored.
    silence_job_then_look()
    eng.tick()
    assert job in src.index and len(store.samples(job)[0]) == 2
    # Forgotten two looks ago: nothing names it any more; its samples are dropped, logged.
    silence_job_then_look()
    assert eng.forget_idle() == 0
    with caplog.at_level(logging.WARNING, logger="relia.engine.loop"):
        result = eng.tick()
    assert result.samples == 2 and len(store.samples(job)[0]) == 2
    assert "no longer in the series index" in caplog.text


def test_without_forget_after_nothing_is_forgotten(make_store: StoreFactory) -> None:
    store, clock = make_store(), Clock()
    src = PausingSource(SeriesIndex())
    eng = _forgetting_engine(store, clock, src, forget_after_s=None)
    eng.tick()
    src.b_on = False
    _tick_for(eng, clock, 3 * HOUR)
    assert eng.executor.n_series() == 2 and src.forgotten == []


def test_held_series_drops_a_forgotten_series_at_once() -> None:
    # What recovery_from_store(held=...) asks: a replaced Ray actor must not bring it back.
    store, clock = MemoryStore(), Clock()
    src = PausingSource(SeriesIndex())
    eng = _forgetting_engine(store, clock, src)
    eng.tick()
    job = src._ids["job"]
    assert job in eng.held_series()
    src.b_on = False
    _tick_for(eng, clock, HOUR - 4 * STEP)
    clock.now += 4 * STEP
    assert eng.forget_idle() == 1
    assert job not in eng.held_series() and eng.held_series()


class SineSource:
    """One series: a sine with noise, and a spike at each tick in ``spikes`` (by offset)."""

    name = "sine"

    def __init__(self, index: SeriesIndex, spikes: Mapping[int, float] | None = None) -> None:
        sid = index.get_or_add("cpu", {"host": "a"})
        assert sid is not None
        self.sid = sid
        self.spikes = dict(spikes or {})

    def poll(self, now_ms: int) -> MetricBatch:
        k = (now_ms - T0) // STEP
        v = 50 + 10 * np.sin(k / 7) + np.random.default_rng(k).normal(0, 1)
        v += self.spikes.get(k, 0.0)
        return MetricBatch(np.array([self.sid]), np.array([now_ms]), np.array([v]))


def _sine_engine(store: Store, clock: Clock, **kw: object) -> Engine:
    index = SeriesIndex()
    return Engine(
        store,
        [SineSource(index, {170: 300.0, 171: -300.0, 173: 300.0})],
        LocalExecutor("default", {}),
        index=index,
        clock=clock,
        registry=CollectorRegistry(),
        threshold=0.4,
        **kw,  # type: ignore[arg-type]
    )


def _sine_run(cut: int | None, crash: bool, ticks: int = 200) -> tuple[Engine, Store]:
    """``ticks`` ticks; with ``cut``, the engine is stopped (or crashes) after tick ``cut`` and
    a new one goes on over the same store."""
    store, clock = DuckDBStore(":memory:"), Clock()
    eng = _sine_engine(store, clock, checkpoint_every=1000, checkpoint_interval_s=1e9)
    for k in range(ticks):
        eng.tick()
        clock.now += STEP
        if k == cut:
            if not crash:
                eng.close()
            eng = _sine_engine(store, clock, checkpoint_every=1000, checkpoint_interval_s=1e9)
    return eng, store


def test_after_a_crash_the_samples_learned_since_the_last_checkpoint_are_relearned() -> None:
    ref, ref_store = _sine_run(None, crash=False)
    # 80 ticks in: the last checkpoint is the first tick's (checkpoint_interval_s is huge).
    eng, store = _sine_run(80, crash=True)
    sid = eng.sources[0].sid  # type: ignore[attr-defined]
    mine, theirs = store.scored_samples(sid), ref_store.scored_samples(sid)
    np.testing.assert_array_equal(mine.score, theirs.score)
    np.testing.assert_array_equal(mine.expected, theirs.expected)
    assert eng.executor.checkpoints() == ref.executor.checkpoints()
    key = [(f.id, f.start, f.end, f.score) for f in ref_store.findings()]
    assert [(f.id, f.start, f.end, f.score) for f in store.findings()] == key


def test_a_clean_restart_reads_no_samples_to_relearn() -> None:
    store, clock = DuckDBStore(":memory:"), Clock()
    first = _sine_engine(store, clock)
    for _ in range(30):
        first.tick()
        clock.now += STEP
    first.close()
    calls: list[str] = []
    learned, listed = store.learned_samples, store.list_series

    def counting_learned(since: Mapping[int, int]) -> MetricBatch:
        calls.append("learned_samples")
        return learned(since)

    def counting_listed() -> list[SeriesInfo]:
        calls.append("list_series")
        return listed()

    store.learned_samples = counting_learned  # type: ignore[method-assign]
    store.list_series = counting_listed  # type: ignore[method-assign]
    assert _sine_engine(store, clock).start() == 1
    # Nothing to relearn is read, and the series are listed once (the relearning reuses them).
    assert calls == ["list_series"]


def test_a_crash_restart_relearns_in_one_read_for_all_series() -> None:
    store, clock = DuckDBStore(":memory:"), Clock()
    first = _sine_engine(store, clock)
    for _ in range(30):
        first.tick()
        clock.now += STEP
    # No close(): a crash leaves the samples stored after the last checkpoint.
    calls: list[int] = []
    learned = store.learned_samples

    def counting(since: Mapping[int, int]) -> MetricBatch:
        calls.append(len(since))
        return learned(since)

    store.learned_samples = counting  # type: ignore[method-assign]
    _sine_engine(store, clock).start()
    assert calls == [1]  # one read, for the one series


def _stored_run(store: Store, params: dict[str, Any] | None = None, ticks: int = 30) -> None:
    """``ticks`` ticks of the sine source through ``default`` with ``params``, then a clean
    stop (the final checkpoint holds everything stored)."""
    clock = Clock()
    index = SeriesIndex()
    eng = Engine(
        store,
        [SineSource(index)],
        LocalExecutor("default", dict(params or {})),
        index=index,
        clock=clock,
        registry=CollectorRegistry(),
    )
    for _ in range(ticks):
        eng.tick()
        clock.now += STEP
    eng.close()


def _restarted(store: Store, detector: str, params: dict[str, Any] | None = None) -> Engine:
    """An engine with another detector (or config) over ``store``, started."""
    eng = Engine(
        store,
        [],
        LocalExecutor(detector, dict(params or {})),
        index=SeriesIndex(),
        clock=Clock(),
        registry=CollectorRegistry(),
    )
    eng.start()
    return eng


def _fresh_model_of_the_stored_samples(
    store: Store, detector: str, params: dict[str, Any] | None = None
) -> dict[int, bytes]:
    ids = [s.series_id for s in store.list_series()]
    fresh = LocalExecutor(detector, dict(params or {}))
    fresh.process(store.learned_samples(dict.fromkeys(ids, -(2**63))).sorted())
    return fresh.checkpoints()


def test_checkpoints_of_a_newer_relia_stop_the_start_and_are_left_as_they_are(
    tmp_path: Path,
) -> None:
    # An unknown RLC<n> was "corrupt: bad magic": those series started afresh and the next
    # checkpoint overwrote what the newer relia had written.
    path = tmp_path / "relia.duckdb"
    with DuckDBStore(path) as store:
        _stored_run(store)
        newer = {sid: b"RLC9" + blob[4:] for sid, blob in store.load_checkpoints().items()}
        store.save_checkpoints(newer)
        eng = Engine(
            store,
            [],
            LocalExecutor("default", {}),
            index=SeriesIndex(),
            clock=Clock(),
            registry=CollectorRegistry(),
        )
        with pytest.raises(StoreError) as info:
            eng.start()
        eng.close()
        assert str(info.value).startswith(f"{path}: detector checkpoints were written by a newer")
        assert "(format RLC9 > RLC3, e.g. series " in str(info.value)
        assert "upgrade relia or use another data directory" in str(info.value)
        assert store.load_checkpoints() == newer


def test_a_checkpoint_refused_for_another_detector_is_relearned_from_the_stored_samples(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Only the samples after the refused checkpoint's last point were relearned: none, after a
    # clean stop. The series started from nothing though the store held its samples.
    store = DuckDBStore(":memory:")
    _stored_run(store)
    with caplog.at_level(logging.INFO, logger="relia.engine"):
        eng = _restarted(store, "mad")
    assert eng.executor.checkpoints() == _fresh_model_of_the_stored_samples(store, "mad")
    assert unpack(next(iter(eng.executor.checkpoints().values())))["n_seen"] == 30
    assert "relearning 30 stored samples of 1 series whose checkpoint was refused" in caplog.text
    store.close()


@pytest.mark.parametrize(("set_now", "note"), [({}, True), ({"long": 0.002}, False)])
def test_a_checkpoint_made_under_another_default_is_relearned_and_the_warning_names_it(
    set_now: dict[str, Any], note: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # A relia whose default `long` was 0.001 (before 461dd91): every model was discarded as
    # "made with another config", naming nothing, though the user had changed nothing.
    store = DuckDBStore(":memory:")
    _stored_run(store, {"long": 0.001})
    with caplog.at_level(logging.WARNING, logger="relia.engine"):
        eng = _restarted(store, "default", set_now)
    want = _fresh_model_of_the_stored_samples(store, "default", set_now)
    assert eng.executor.checkpoints() == want
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    now = set_now.get("long", 0.003)
    assert f"(long 0.001 in the checkpoint, {now} now)" in warning
    assert ("relia.yaml sets none of these: their default changed" in warning) == note
    store.close()


def test_corrupt_checkpoints_are_one_warning_per_reason_and_relearned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # One warning per series came before the executor's summary: a million lines for a million.
    store = DuckDBStore(":memory:")
    n = 100
    ids = np.arange(1, n + 1, dtype=np.int64)
    store.upsert_series([(int(i), "cpu", {"i": str(i)}) for i in ids])
    ts = np.tile(T0 + STEP * np.arange(5, dtype=np.int64), n)
    sid = np.repeat(ids, 5)
    nan = np.full(len(ts), np.nan)
    ones = np.ones(len(ts))
    scores = ScoredPoints(
        sid, ts, ones, np.zeros(len(ts)), nan, nan, nan, np.full(len(ts), -1, np.int8)
    )
    store.append_samples(MetricBatch(sid, ts, ones), scores)
    store.save_checkpoints({int(i): b"RLC3 damaged" for i in ids})
    with caplog.at_level(logging.INFO):
        eng = _restarted(store, "default")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"{n} series start afresh, their checkpoint refused: corrupt")
    assert eng.executor.checkpoints() == _fresh_model_of_the_stored_samples(store, "default")
    store.close()


@pytest.mark.parametrize("cut", [172, 173])
def test_a_restart_inside_a_findings_merge_gap_extends_it(cut: int) -> None:
    # Anomalies at 170, 171 and 173, a normal point at 172: one finding 170..173.
    _, ref_store = _sine_run(None, crash=False)
    _, store = _sine_run(cut, crash=False)
    theirs = [(f.id, f.start, f.end, f.score) for f in ref_store.findings()]
    assert len(theirs) == 1
    assert [(f.id, f.start, f.end, f.score) for f in store.findings()] == theirs


def _open_finding_store(n: int) -> tuple[DuckDBStore, list[int]]:
    """``n`` series whose last sample is anomalous: an open finding each."""
    from relia.engine.findings import FindingTracker

    store, index = DuckDBStore(":memory:"), SeriesIndex()
    ids = [index.get_or_add("m", {"i": str(i)}) for i in range(n)]
    store.upsert_series([(s, "m", {"i": str(i)}) for i, s in enumerate(ids)], seen_at=T0)
    sid, ts = np.array(ids, np.int64), np.full(n, T0, np.int64)
    store.append_samples(MetricBatch(sid, ts, np.ones(n)))
    tracker = FindingTracker("default", lambda s: f"m{{id={s}}}", ("level",))
    zero = np.zeros(n)
    points = ScoredPoints(
        sid, ts, np.ones(n), np.full(n, 0.9), zero, zero, zero, np.zeros(n, np.int64)
    )
    store.add_findings(tracker.update(points))
    return store, ids  # type: ignore[return-value]


def test_a_restart_reopens_every_open_finding_however_many() -> None:
    store, ids = _open_finding_store(10_050)
    eng = Engine(store, [], LocalExecutor("default", {}), index=SeriesIndex())
    eng.start()
    assert sorted(eng.tracker.open_series) == sorted(ids)


def test_a_restart_reopens_an_open_finding_behind_a_page_of_newer_closed_ones() -> None:
    store, (sid,) = _open_finding_store(1)
    # 10,000 newer findings of another series, all closed (three normal points followed them),
    # fill the first page.
    other = 12345
    store.upsert_series([(other, "n", {})], seen_at=T0)
    later = T0 + HOUR * np.arange(1, 4)
    store.append_samples(MetricBatch.for_series(other, later, np.ones(3)))
    closed = [
        Finding(
            id=f"{i:020x}",
            kind="metric",
            key="n",
            series_id=other,
            start=T0 + i,
            end=T0 + i,
            score=0.9,
            severity="warning",
            detector="default",
            summary="n",
        )
        for i in range(1, 10_001)
    ]
    store.add_findings(closed)
    eng = Engine(store, [], LocalExecutor("default", {}), index=SeriesIndex())
    eng.start()
    assert eng.tracker.open_series == [sid]


def test_the_store_may_forget_series_only_once_a_look_wrote_their_receipt_times() -> None:
    store, clock = MemoryStore(), Clock()
    src = PausingSource(SeriesIndex())
    eng = _forgetting_engine(store, clock, src)
    eng.tick()
    assert not eng.receipts_written()
    _tick_for(eng, clock, eng.forget_every_ms + STEP)
    assert eng.receipts_written()


def test_a_pause_longer_than_forget_after_gives_the_series_one_look_before_forgetting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, clock = MemoryStore(), Clock()
    src = PausingSource(SeriesIndex())
    eng = _forgetting_engine(store, clock, src)
    _tick_for(eng, clock, eng.forget_every_ms * 2)
    job = src._id("job", "b")
    assert len(eng.held_series()) == 2 and eng.receipts_written()
    clock.now += 2 * HOUR  # relia (and what sends to it) paused: a suspended VM
    src.b_on = False  # job's next samples would come in a later request
    with caplog.at_level(logging.INFO, logger="relia.engine.loop"):
        eng.tick()
    assert "no tick for 7215s" in caplog.text
    assert job in eng.held_series() and not eng.receipts_written()
    clock.now += STEP
    src.b_on = True  # back: kept
    _tick_for(eng, clock, eng.forget_every_ms + STEP)
    assert job in eng.held_series()
    clock.now += 2 * HOUR
    src.b_on = False  # silent for one look after the pause: forgotten
    _tick_for(eng, clock, eng.forget_every_ms + 2 * STEP)
    assert job not in eng.held_series() and len(eng.held_series()) == 1


def test_healthz_is_degraded_when_the_loop_has_not_ticked_for_three_intervals() -> None:
    store, clock = MemoryStore(), Clock()
    eng = _engine(store, clock, interval_s=15.0)
    eng.tick()
    eng._running = True  # as under run(), whose next tick is stuck
    clock.now += 45_000
    assert eng.status()["problems"] == []
    clock.now += 30_000
    assert eng.status()["problems"] == ["no engine tick for 75s (interval 15s): a tick is stuck"]


class _HangingExecutor(LocalExecutor):
    """Scores once ``release`` is set (a Ray cluster that lost a node, say)."""

    def __init__(self) -> None:
        super().__init__("cusum", {})
        self.entered, self.release = threading.Event(), threading.Event()

    def process(self, batch: MetricBatch) -> ScoredPoints:
        self.entered.set()
        assert self.release.wait(10)
        return super().process(batch)


def test_healthz_blames_the_executor_not_the_store_for_a_tick_stuck_scoring() -> None:
    store, clock = MemoryStore(), Clock()
    index = SeriesIndex()
    ex = _HangingExecutor()
    eng = Engine(
        store,
        [WaveSource(index)],  # type: ignore[list-item]
        ex,
        index=index,
        clock=clock,
        registry=CollectorRegistry(),
        interval_s=15.0,
    )
    eng._running = True
    tick = threading.Thread(target=eng.tick)
    tick.start()
    try:
        assert ex.entered.wait(10)
        clock.now += 75_000
        # The store took everything it was given: "samples wait for the store" was wrong.
        assert eng.status()["problems"] == [
            "no engine tick for 75s (interval 15s): a tick is stuck waiting on the executor"
        ]
    finally:
        ex.release.set()
        tick.join(10)
    assert not any("store" in p for p in eng.status()["problems"])


class _RefusesCheckpoints(MemoryStore):
    def save_checkpoints(self, blobs: Mapping[int, bytes]) -> None:
        raise StoreError("connection refused", where="postgresql://db")


class _ClosingExecutor(LocalExecutor):
    closed = False

    def close(self) -> None:
        self.closed = True
        super().close()


def test_closing_with_the_final_checkpoint_refused_says_so_and_closes_everything(
    caplog: pytest.LogCaptureFixture,
) -> None:
    index = SeriesIndex()
    source = ClosingPushSource(index)
    executor = _ClosingExecutor("cusum", {})
    eng = Engine(
        _RefusesCheckpoints(), [source], executor, index=index, clock=Clock(),
        registry=CollectorRegistry(), checkpoint_every=1000,
    )  # fmt: skip
    eng.tick()
    with caplog.at_level(logging.WARNING, logger="relia.engine.loop"):
        eng.close()
    assert source.closed and executor.closed
    assert (
        "final checkpoint not saved (the series resume from their previous checkpoint and "
        "relearn what the store holds after it): postgresql://db: connection refused"
    ) in caplog.text


class SlowSource(WaveSource):
    """Takes 0.3 s to poll; sets ``stop`` at its ``polls``-th poll."""

    def __init__(self, index: SeriesIndex, stop: threading.Event, polls: int) -> None:
        super().__init__(index)
        self.stop, self.left = stop, polls

    def poll(self, now_ms: int) -> MetricBatch:
        import time

        time.sleep(0.3)
        self.left -= 1
        if self.left == 0:
            self.stop.set()
        return super().poll(now_ms)


def test_a_tick_longer_than_the_interval_counts_the_slots_it_skips_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, stop, index = MemoryStore(), threading.Event(), SeriesIndex()
    registry = CollectorRegistry()
    eng = Engine(
        store, [SlowSource(index, stop, 4)], LocalExecutor("cusum", {}), index=index,
        registry=registry,
    )  # fmt: skip
    eng.tick()  # compiled and started before the timed loop
    with caplog.at_level(logging.WARNING, logger="relia.engine.loop"):
        eng.run(stop, 0.2)  # three ticks of 0.3 s: each skips one slot
    assert registry.get_sample_value("relia_engine_ticks_skipped_total") == 3.0
    (line,) = [r.getMessage() for r in caplog.records if "interval slots skipped" in r.getMessage()]
    assert "longer than the interval (0.2s): 1 interval slots skipped" in line


def test_a_clock_step_back_is_said_once_counted_and_on_healthz_until_it_catches_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, clock = MemoryStore(), Clock()
    clock.now = T0 + 2 * HOUR
    eng = _engine(store, clock)
    registry = eng.registry
    for _ in range(5):
        eng.tick()
        clock.now += STEP
    high = clock.now - STEP
    clock.now = high - HOUR  # NTP or an RTC correction
    with caplog.at_level(logging.WARNING, logger="relia.engine.loop"):
        for _ in range(3):
            assert eng.tick().dropped == 2  # stamped with relia's clock: not newer
            clock.now += STEP
    (line,) = [r.getMessage() for r in caplog.records if "clock went back" in r.getMessage()]
    assert line.startswith("the clock went back 3600s: samples relia stamps with its clock")
    assert registry.get_sample_value("relia_clock_steps_back_total") == 1.0
    assert eng.status()["problems"] == [
        "the clock went back: samples relia stamps are dropped until it is past "
        "2023-11-15T00:14:20Z"
    ]
    clock.now = high + STEP
    assert eng.tick().dropped == 0
    assert eng.status()["problems"] == []
