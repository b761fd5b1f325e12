"""The Ray executor against the local one, and an actor killed mid-run (real local Ray)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from relia.detect.checkpoint import unpack
from relia.engine.executor import Executor, ScoredPoints
from relia.engine.local import LocalExecutor
from relia.engine.loop import Engine, recovery_from_store
from relia.engine.ray_executor import RayExecutor
from relia.errors import ConfigError, DetectorError, ReliaError
from relia.signals import MetricBatch, SeriesIndex
from relia.store.base import Store
from relia.store.duckdb import DuckDBStore
from tests.store.backends import BACKENDS, open_backend

STEP = 15_000
T0 = 1_700_000_000_000


def _sorted(p: ScoredPoints) -> ScoredPoints:
    return p.take(np.lexsort((p.ts, p.series_id)))


def _assert_same(a: ScoredPoints, b: ScoredPoints) -> None:
    a, b = _sorted(a), _sorted(b)
    assert np.array_equal(a.series_id, b.series_id)
    assert np.array_equal(a.ts, b.ts)
    for name in ("value", "score", "expected", "lower", "upper"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name
    assert np.array_equal(a.component, b.component)
    assert a.dropped == b.dropped


def _batch(ids: np.ndarray, k: int) -> MetricBatch:
    rng = np.random.default_rng(k)
    v = np.sin(ids * 0.01 + k / 5.0) * 10 + rng.normal(0, 1, len(ids))
    if k % 9 == 4:
        v[::7] = np.nan  # missing values are learned (and scored) too
    if k == 30:
        v[::5] += 80  # a spike
    return MetricBatch(ids, np.full(len(ids), T0 + k * STEP, np.int64), v)


@pytest.fixture
def ray_exec(ray_local: ModuleType) -> Iterator[RayExecutor]:
    ex = RayExecutor("default", n_actors=3)
    yield ex
    ex.close()


@pytest.mark.integration
@pytest.mark.slow
def test_scores_and_checkpoints_equal_the_local_executors(ray_exec: RayExecutor) -> None:
    ids = (np.arange(1, 61, dtype=np.int64) * 2_654_435_761) % (1 << 62)
    local = LocalExecutor("default")
    assert isinstance(ray_exec, Executor)
    assert ray_exec.components == local.components and ray_exec.n_shards == 3
    for k in range(40):
        b = _batch(ids, k)
        if k == 20:  # a repeated sample is dropped on both
            b = MetricBatch.concat([b, _batch(ids[:5], k - 1)])
        _assert_same(ray_exec.process(b), local.process(b))
    assert ray_exec.n_series() == local.n_series() == 60
    assert ray_exec.checkpoints(changed_only=True) == local.checkpoints(changed_only=True)
    assert ray_exec.checkpoints(changed_only=True) == {}  # nothing learned since
    assert ray_exec.checkpoints() == local.checkpoints()
    stats = ray_exec.actor_stats(checkpoint_bytes=True)
    assert [s["shard"] for s in stats] == [0, 1, 2]
    assert sum(s["series"] for s in stats) == 60 and all(s["series"] > 0 for s in stats)
    assert all(s["rss_bytes"] > 10_000_000 for s in stats)
    assert sum(s["checkpoint_bytes"] for s in stats) == sum(
        len(b) for b in local.checkpoints().values()
    )


@pytest.mark.integration
@pytest.mark.slow
def test_restore_goes_to_the_owning_actors(ray_local: ModuleType) -> None:
    ids = np.arange(100, 130, dtype=np.int64)
    local = LocalExecutor("cusum")  # detector objects, not a table: the other shard path
    for k in range(20):
        local.process(_batch(ids, k))
    with RayExecutor("cusum", n_actors=2) as ex:
        assert ex.restore(local.checkpoints()) == 30
        assert ex.n_series() == 30
        assert sorted(s["series"] for s in ex.actor_stats()) == [15, 15]
        for k in range(20, 30):
            b = _batch(ids, k)
            _assert_same(ex.process(b), local.process(b))
        assert ex.checkpoints() == local.checkpoints()


class _Wave:
    """Many series; a deterministic value per (series, tick), NaNs, a spike, and re-sent
    samples (not newer than what was scored: dropped by the detector, kept by the store)."""

    name = "wave"

    def __init__(self, index: SeriesIndex, n: int = 40) -> None:
        self.ids = np.array(
            [index.get_or_add("m", {"i": str(i)}) for i in range(n)], dtype=np.int64
        )

    def poll(self, now_ms: int) -> MetricBatch:
        k = (now_ms - T0) // STEP
        b = _batch(self.ids, int(k))
        if k % 4 == 3:  # a source re-sending its previous samples (the same values)
            prev = _batch(self.ids, int(k) - 1)
            again = MetricBatch(prev.series_id[::3], prev.ts[::3], prev.value[::3])
            b = MetricBatch.concat([b, again])
        return b


class _Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def _run(store: Store, make: Any, ticks: int, kill_at: set[int], ray: Any = None) -> Engine:
    index, clock = SeriesIndex(), _Clock()
    src = _Wave(index)
    registry = CollectorRegistry()
    ex = make(store, [src], registry)
    eng = Engine(
        store,
        [src],  # type: ignore[list-item]
        ex,
        index=index,
        clock=clock,
        registry=registry,
        checkpoint_every=5,
        checkpoint_interval_s=1e9,
    )
    for t in range(ticks):
        if t in kill_at:
            victim = ex.actors()[1]
            ray.kill(victim)
            _wait_dead(ray, victim)
        eng.tick()
        clock.now += STEP
    return eng


def _wait_dead(ray: Any, actor: Any) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            ray.get(actor.n_series.remote(), timeout=5)
        except ray.exceptions.RayActorError:
            return
        time.sleep(0.05)
    raise AssertionError("the killed actor still answers")


def _stored(store: Store) -> dict[int, tuple[np.ndarray, ...]]:
    out = {}
    for s in store.list_series():
        ss = store.scored_samples(s.series_id)
        out[s.series_id] = (ss.ts, ss.value, ss.score, ss.expected, ss.lower, ss.upper)
    return out


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_killed_actor_resumes_exactly_and_loses_nothing(
    ray_local: ModuleType, request: pytest.FixtureRequest, backend: str
) -> None:
    """Kill an actor twice mid-run (between checkpoints, so its series must replay stored
    samples): every series goes on, every sample is stored, and the scores, bands, findings
    and final checkpoints equal those of a run without the kills."""
    ticks = 36
    with DuckDBStore(":memory:") as ref_store, open_backend(request, backend, 2000) as store:
        # Scores and bands from the 9th point on: a shard that came back empty would differ.
        params = {"min_samples": 8}
        ref = _run(ref_store, lambda st, srcs, reg: LocalExecutor("default", params), ticks, set())

        def make(st: Store, srcs: list[Any], reg: CollectorRegistry) -> RayExecutor:
            recover = recovery_from_store(st, srcs)
            return RayExecutor("default", params, n_actors=3, recover=recover, registry=reg)

        eng = _run(store, make, ticks, {12, 23}, ray_local)  # checkpoints at ticks 5, 10, 15, …
        try:
            assert isinstance(eng.executor, RayExecutor)
            assert eng.executor.restarts == 2
            assert eng.registry.get_sample_value("relia_executor_actor_restarts_total") == 2
            theirs, mine = _stored(ref_store), _stored(store)
            assert mine.keys() == theirs.keys() and len(mine) == 40
            for sid, cols in mine.items():
                assert len(cols[0]) == ticks, sid  # nothing acknowledged is lost
                for a, b in zip(cols, theirs[sid], strict=True):
                    assert np.array_equal(a, b, equal_nan=True), sid
            # The state mattered: bands right after each kill, and the spike found.
            assert all(np.isfinite(c[3][12]) and np.isfinite(c[3][23]) for c in mine.values())
            assert np.nanmax(np.concatenate([c[2] for c in mine.values()])) > 0.5
            assert eng.executor.checkpoints() == ref.executor.checkpoints()
            key = [(f.id, f.start, f.end, f.score) for f in store.findings()]
            assert key and key == [(f.id, f.start, f.end, f.score) for f in ref_store.findings()]
        finally:
            eng.close()
            ref.close()


@pytest.mark.integration
@pytest.mark.slow
def test_a_failed_recovery_is_retried_before_the_shard_scores(ray_local: ModuleType) -> None:
    ids = np.arange(2, 62, 2, dtype=np.int64)  # all on shard 0 of 2
    local = LocalExecutor("default")
    saved: dict[int, bytes] = {}
    learned: list[MetricBatch] = []  # what was scored since the checkpoint (the "store")
    calls = {"n": 0}

    def recover(owns: Any) -> tuple[dict[int, bytes], MetricBatch]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ReliaError("the store is unreachable")
        ck = {s: b for s, b in saved.items() if owns(np.array([s]))[0]}
        rows = MetricBatch.concat(learned)
        return ck, MetricBatch(
            rows.series_id[owns(rows.series_id)],
            rows.ts[owns(rows.series_id)],
            rows.value[owns(rows.series_id)],
        )

    with RayExecutor("default", n_actors=2, recover=recover) as ex:
        for k in range(15):
            b = _batch(ids, k)
            _assert_same(ex.process(b), local.process(b))
            if k == 9:
                saved = ex.checkpoints()
                learned.clear()
            else:
                learned.append(b)
        ray_local.kill(ex.actors()[0])
        _wait_dead(ray_local, ex.actors()[0])
        with pytest.raises(ReliaError, match="unreachable"):
            ex.process(_batch(ids, 15))  # not learned by anyone (the engine stores it unscored)
        # Nothing scored with an empty state: the next call restores, replays, then scores.
        for k in range(16, 20):
            b = _batch(ids, k)
            _assert_same(ex.process(b), local.process(b))
        assert calls["n"] == 2 and ex.restarts == 1
        assert ex.checkpoints() == local.checkpoints()


@pytest.mark.parametrize("backend", BACKENDS)
def test_recovery_from_store_replays_only_what_the_detector_learned(
    request: pytest.FixtureRequest, backend: str
) -> None:
    class Counters:
        name = "scrape"
        counters = {999: 1000}  # raw counter 999, scored as its rate 1000

        def poll(self, now_ms: int) -> MetricBatch:
            return MetricBatch.empty()

    with open_backend(request, backend, 2000) as store:
        store.upsert_series([(s, "m", {"i": str(s)}) for s in (1, 2, 3, 999)])
        ex, other = LocalExecutor("default"), LocalExecutor("default")
        ts = T0 + np.arange(10, dtype=np.int64) * STEP
        for i in range(10):
            b = MetricBatch(np.array([1, 2, 3]), np.full(3, ts[i]), np.array([1.0, 2.0, i]))
            store.append_samples(b, ex.process(b))
            # Even with scores, a raw counter (scored as its rate) is not replayed.
            raw = MetricBatch.for_series(999, [ts[i]], [float(i)])
            store.append_samples(raw, other.process(raw))
            if i == 5:
                store.save_checkpoints(ex.checkpoints())
        # Stored without scores (scoring failed): never learned, never replayed.
        store.append_samples(MetricBatch(np.array([1]), np.array([ts[-1] + STEP]), np.array([5.0])))
        recover = recovery_from_store(store, [Counters()])  # type: ignore[list-item]
        ck, replay = recover(lambda ids: np.isin(ids, [1, 3, 999]))
        assert sorted(ck) == [1, 3]
        assert unpack(ck[1])["last_ts"] == int(ts[5])
        assert replay.series_id.tolist() == [1] * 4 + [3] * 4
        assert replay.ts.tolist() == ts[6:].tolist() * 2
        assert replay.value.tolist() == [1.0] * 4 + [6.0, 7.0, 8.0, 9.0]
        # A series without a checkpoint replays all it learned.
        store.upsert_series([(4, "m", {"i": "4"})])
        b = MetricBatch.for_series(4, ts[:3], [1.0, 2.0, 3.0])
        store.append_samples(b, ex.process(b))
        _, replay = recover(lambda ids: ids == 4)
        assert replay.ts.tolist() == ts[:3].tolist()


@pytest.mark.integration
def test_bad_arguments_fail_before_any_actor(ray_local: ModuleType) -> None:
    with pytest.raises(DetectorError, match="no detector named 'nope'"):
        RayExecutor("nope")
    with pytest.raises(ConfigError, match="engine.ray_actors: must be >= 1"):
        RayExecutor("default", n_actors=0)


@pytest.mark.integration
def test_close_keeps_a_ray_it_did_not_start(ray_local: ModuleType) -> None:
    ex = RayExecutor("default", n_actors=1, address="ray://127.0.0.1:1")  # unused: Ray is up
    assert ex.n_series() == 0
    ex.close()
    ex.close()  # idempotent
    assert ray_local.is_initialized()
    with pytest.raises(DetectorError, match="closed"):
        ex.process(_batch(np.array([1]), 0))


def test_importing_relia_does_not_import_ray() -> None:
    code = (
        "import sys, relia, relia.engine.up, relia.engine.executors, relia.engine.ray_executor\n"
        "assert 'ray' not in sys.modules, 'ray imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
