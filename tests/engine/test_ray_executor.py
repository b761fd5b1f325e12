"""The Ray executor against the local one, and an actor killed mid-run (real local Ray)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
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


@pytest.mark.parametrize("backend", BACKENDS)
def test_recovery_from_store_leaves_out_series_the_engine_has_forgotten(
    request: pytest.FixtureRequest, backend: str
) -> None:
    day = 86_400_000
    with open_backend(request, backend, 2000) as store:
        store.upsert_series([(1, "m", {"i": "1"})], seen_at=T0 - 8 * day)  # forgotten
        store.upsert_series([(2, "m", {"i": "2"})], seen_at=T0 - 6 * day)  # still held
        ex = LocalExecutor("default")
        b = MetricBatch(np.array([1, 2]), np.full(2, T0), np.array([1.0, 2.0]))
        store.append_samples(b, ex.process(b))
        store.save_checkpoints(ex.checkpoints())
        b = MetricBatch(np.array([1, 2]), np.full(2, T0 + STEP), np.array([1.0, 2.0]))
        store.append_samples(b, ex.process(b))
        recover = recovery_from_store(store, forget_after_s=7 * 86400, clock=lambda: T0)
        ck, replay = recover(lambda ids: np.ones(len(ids), bool))
        assert sorted(ck) == [2] and replay.series_id.tolist() == [2]
        # Without forget_after, both come back.
        ck, replay = recovery_from_store(store)(lambda ids: np.ones(len(ids), bool))
        assert sorted(ck) == [1, 2] and replay.series_id.tolist() == [1, 2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_recovery_from_store_leaves_out_a_series_forgotten_within_the_hour(
    request: pytest.FixtureRequest, backend: str
) -> None:
    # The engine forgot series 1 ten minutes after its last sample; the store's seen_at says it
    # was seen 11 minutes ago, inside forget_after + 1 h: only the engine knows it is gone.
    minute = 60_000
    with open_backend(request, backend, 2000) as store:
        store.upsert_series([(1, "m", {"i": "1"}), (2, "m", {"i": "2"})], seen_at=T0 - 11 * minute)
        ex = LocalExecutor("default")
        b = MetricBatch(np.array([1, 2]), np.full(2, T0), np.array([1.0, 2.0]))
        store.append_samples(b, ex.process(b))
        store.save_checkpoints(ex.checkpoints())
        b = MetricBatch(np.array([1, 2]), np.full(2, T0 + STEP), np.array([1.0, 2.0]))
        store.append_samples(b, ex.process(b))
        everyone = lambda ids: np.ones(len(ids), bool)  # noqa: E731
        recover = recovery_from_store(
            store, forget_after_s=600, clock=lambda: T0, held=lambda: frozenset({2})
        )
        ck, replay = recover(everyone)
        assert sorted(ck) == [2] and replay.series_id.tolist() == [2]
        # No engine yet (held answers None): the seen_at cut alone, which keeps both.
        recover = recovery_from_store(
            store, forget_after_s=600, clock=lambda: T0, held=lambda: None
        )
        ck, replay = recover(everyone)
        assert sorted(ck) == [1, 2] and sorted(replay.series_id.tolist()) == [1, 2]


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


# -- without a cluster: a fake ``ray`` module, so that recovery and fan-out rules run fast ------


class _ActorDied(Exception):
    """The fake's ``ray.exceptions.RayActorError``."""


class _GetTimeout(Exception):
    """The fake's ``ray.exceptions.GetTimeoutError``."""


class _Ref:
    def __init__(self, fn: Any, answers: bool = True) -> None:
        # Run at once, as a live actor would: a result (or the error) waits for ``ray.get``. A
        # ref of an actor that does not answer (hung, or not placed) is never ready.
        self.ready = answers
        self.value: Any = None
        self.error: Exception | None = None
        if answers:
            try:
                self.value = fn()
            except Exception as exc:  # noqa: BLE001 - handed to whoever gets the ref
                self.error = exc


class _FakeActor:
    def __init__(self, ray: _FakeRay, cls: type, num_cpus: float, args: tuple[Any, ...]) -> None:
        self.ray, self.dead, self.calls = ray, False, []
        self.unreachable = False  # calls fail as if it died, yet it lives (and holds its CPUs)
        self.hung = False  # calls never answer (its node partitioned, its raylet killed)
        self.num_cpus = num_cpus
        self.placed = False
        self.dead = ray.born_dead
        self.place()
        self.inst = cls(*args)

    def place(self) -> bool:
        """Placed once the cluster has room for it (Ray keeps trying, as a node may join)."""
        if not self.placed and not self.dead:
            self.placed = self.ray.free_cpus() >= self.num_cpus - 1e-9
        return self.placed

    def __getattr__(self, method: str) -> Any:
        actor = self

        class _Method:
            @staticmethod
            def remote(*args: Any) -> _Ref:
                def run() -> Any:
                    if actor.dead or actor.unreachable:
                        raise _ActorDied("The actor died unexpectedly before finishing this task.")
                    actor.calls.append(method)
                    return getattr(actor.inst, method)(*args)

                answers = actor.dead or (actor.place() and not actor.hung)
                return _Ref(run, answers)

        return _Method()


class _FakeRay:
    """Enough of ``ray`` for :class:`RayExecutor`: actors in this process, killable, on a
    cluster of ``cpus`` CPUs; arrays come back read-only, as from Ray's object store."""

    def __init__(self, cpus: float = 4, initialized: bool = True) -> None:
        self.exceptions = type(
            "exceptions", (), {"RayActorError": _ActorDied, "GetTimeoutError": _GetTimeout}
        )
        self.cpus, self.initialized = cpus, initialized
        self.inits: list[dict[str, Any]] = []
        self.init_error: Exception | None = None
        self.shutdowns = 0
        self.actors: list[_FakeActor] = []
        self.born_dead = False

    def is_initialized(self) -> bool:
        return self.initialized

    def init(self, **kwargs: Any) -> None:
        self.inits.append(kwargs)
        if self.init_error is not None:
            raise self.init_error
        self.initialized = True

    def shutdown(self) -> None:
        self.shutdowns += 1
        self.initialized = False

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": float(self.cpus)}

    def free_cpus(self) -> float:
        return self.cpus - sum(a.num_cpus for a in self.actors if a.placed and not a.dead)

    def remote(self, *, num_cpus: float, **options: Any) -> Any:
        fake = self

        def wrap(cls: type) -> Any:
            class _Cls:
                @staticmethod
                def remote(*args: Any) -> _FakeActor:
                    actor = _FakeActor(fake, cls, num_cpus, args)
                    fake.actors.append(actor)
                    return actor

            return _Cls

        return wrap

    def get(self, refs: Any, timeout: float | None = None) -> Any:
        if isinstance(refs, list):
            if not all(r.ready for r in refs):
                return self.get(next(r for r in refs if not r.ready), timeout)
            return [self.get(r) for r in refs]
        if not refs.ready:
            # An unbounded wait on a ref that never answers would hang the test (and relia).
            assert timeout is not None, "ray.get without a timeout on a ref that never answers"
            time.sleep(min(timeout, 0.01))
            raise _GetTimeout("Get timed out: some object(s) not ready.")
        if refs.error is not None:
            raise refs.error
        return _read_only(refs.value)

    def kill(self, actor: _FakeActor, no_restart: bool = True) -> None:
        actor.dead = True


def _read_only(value: Any) -> Any:
    if isinstance(value, ScoredPoints):
        arrays = [
            getattr(value, f)
            for f in ("series_id", "ts", "value", "score", "expected", "lower", "upper")
        ]
        arrays.append(value.component)
        for a in arrays:
            a.setflags(write=False)
    return value


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> _FakeRay:
    fake = _FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    return fake


def _spread_ids(n: int = 30) -> np.ndarray:
    return np.arange(1, n + 1, dtype=np.int64)  # ids % 3: every shard of 3 gets 10


def _learn_with_a_checkpoint_at_6(
    ex: RayExecutor,
    local: LocalExecutor,
    ids: np.ndarray,
    saved: dict[int, bytes],
    learned: list[MetricBatch],
) -> None:
    """Score batches 0–11 on both executors (they agree), checkpoint after batch 6 into
    ``saved`` and keep the batches learned since in ``learned``: what a recovery replays."""
    for k in range(12):
        b = _batch(ids, k)
        _assert_same(ex.process(b), local.process(b))
        if k == 6:
            saved.update(ex.checkpoints())
            learned.clear()
        else:
            learned.append(b)


def test_series_stay_on_their_actor_and_results_come_in_shard_order(fake_ray: _FakeRay) -> None:
    ids = _spread_ids()
    local = LocalExecutor("default")
    with RayExecutor("default", n_actors=3) as ex:
        for k in range(6):
            b = _batch(ids[::-1], k)
            got = ex.process(b)
            _assert_same(got, local.process(b))
            assert got.series_id.tolist() == sorted(ids.tolist(), key=lambda s: (s % 3, s))
        held = [a.inst.n_series() for a in fake_ray.actors]
        assert held == [10, 10, 10]
        assert [sorted(a.inst.checkpoints()) for a in fake_ray.actors] == [
            [s for s in range(1, 31) if s % 3 == k] for k in range(3)
        ]


def test_an_empty_batch_scores_nothing_and_calls_no_actor(fake_ray: _FakeRay) -> None:
    with RayExecutor("default", n_actors=2) as ex:
        out = ex.process(MetricBatch.empty())
        assert len(out) == 0 and out.dropped == 0
        assert all(a.calls == ["n_series"] for a in fake_ray.actors)


def test_results_can_be_modified_although_ray_hands_back_read_only_arrays(
    fake_ray: _FakeRay,
) -> None:
    with RayExecutor("default", n_actors=2) as ex:
        out = ex.process(_batch(np.array([2, 4, 6]), 0))  # all on one shard: no concat copy
        out.score[0] = 1.0
        out.expected[:] = 0.0
        out.component[0] = 1
        assert out.score[0] == 1.0


def _unless_down(recorder: Any, down: dict[str, bool]) -> Any:
    """``recorder`` as a recovery that fails while ``down["store"]`` is set."""

    def recover(owns: Any) -> tuple[dict[int, bytes], MetricBatch]:
        if down["store"]:
            raise ReliaError("the store is unreachable")
        return recorder(owns)  # type: ignore[no-any-return]

    return recover


def _recorder(saved: dict[int, bytes], learned: list[MetricBatch], asked: list[list[int]]) -> Any:
    def recover(owns: Any) -> tuple[dict[int, bytes], MetricBatch]:
        asked.append([s for s in range(1, 31) if owns(np.array([s]))[0]])
        rows = MetricBatch.concat(learned)
        mine = owns(rows.series_id)
        ck = {s: b for s, b in saved.items() if owns(np.array([s]))[0]}
        return ck, MetricBatch(rows.series_id[mine], rows.ts[mine], rows.value[mine])

    return recover


def test_a_dead_actors_series_come_back_from_checkpoint_and_replay_and_others_score_once(
    fake_ray: _FakeRay,
) -> None:
    ids = _spread_ids()
    local = LocalExecutor("default")
    saved: dict[int, bytes] = {}
    learned: list[MetricBatch] = []
    asked: list[list[int]] = []
    registry = CollectorRegistry()
    with RayExecutor(
        "default", n_actors=3, recover=_recorder(saved, learned, asked), registry=registry
    ) as ex:
        _learn_with_a_checkpoint_at_6(ex, local, ids, saved, learned)
        victim = ex.actors()[1]
        fake_ray.kill(victim)
        for k in range(12, 16):
            b = _batch(ids, k)
            out = ex.process(b)
            _assert_same(out, local.process(b))
            assert out.dropped == 0 and len(out) == len(ids)  # nothing scored twice
        # Only the dead shard was asked for, once; its replacement holds its series only.
        assert asked == [[s for s in range(1, 31) if s % 3 == 1]]
        assert ex.actors()[1] is not victim and ex.actors()[0] is fake_ray.actors[0]
        assert ex.restarts == 1
        assert registry.get_sample_value("relia_executor_actor_restarts_total") == 1
        assert ex.n_series() == 30
        assert [s["series"] for s in ex.actor_stats()] == [10, 10, 10]
        assert ex.checkpoints() == local.checkpoints()


def test_checkpoints_hand_back_only_changed_states_once_also_after_a_replacement(
    fake_ray: _FakeRay,
) -> None:
    ids = _spread_ids()
    local = LocalExecutor("default")
    learned: list[MetricBatch] = []
    with RayExecutor("default", n_actors=3, recover=_recorder({}, learned, [])) as ex:
        for k in range(5):
            b = _batch(ids, k)
            learned.append(b)
            ex.process(b)
            local.process(b)
        assert ex.checkpoints(changed_only=True) == local.checkpoints(changed_only=True)
        assert ex.checkpoints(changed_only=True) == {}
        b = _batch(ids[:4], 5)
        learned.append(b)
        ex.process(b)
        local.process(b)
        assert sorted(ex.checkpoints(changed_only=True)) == [1, 2, 3, 4]
        assert ex.checkpoints(changed_only=True) == {}
        fake_ray.kill(ex.actors()[2])
        # The replacement replayed its series: they are handed back as changed, once.
        changed = ex.checkpoints(changed_only=True)
        assert sorted(changed) == [s for s in range(1, 31) if s % 3 == 2]
        assert ex.checkpoints(changed_only=True) == {}
        assert ex.checkpoints() == local.checkpoints() and len(ex.checkpoints()) == 30


def test_an_actor_dying_on_every_try_is_an_error_naming_its_shard(fake_ray: _FakeRay) -> None:
    with RayExecutor("default", n_actors=3) as ex:
        ex.process(_batch(_spread_ids(), 0))
        fake_ray.born_dead = True
        fake_ray.kill(ex.actors()[2])
        with pytest.raises(ReliaError, match=r"engine.executor: the Ray actor of shard 2 died 4 "):
            ex.process(_batch(_spread_ids(), 1))
        # It gave up after max_restarts_per_call replacements: the first actor and each
        # replacement died once, as many times as the error says.
        assert ex.restarts == RayExecutor.max_restarts_per_call == 3
        assert sum(a.dead for a in fake_ray.actors) == 1 + ex.restarts == 4
        fake_ray.born_dead = False  # the cluster is well again: the shard comes back (afresh)
        assert ex.process(_batch(np.array([2, 5]), 2)).series_id.tolist() == [2, 5]


def test_without_a_recovery_source_a_replaced_shard_starts_afresh_and_says_so_once(
    fake_ray: _FakeRay, caplog: pytest.LogCaptureFixture
) -> None:
    with RayExecutor("default", n_actors=2) as ex:
        ex.process(_batch(_spread_ids(), 0))
        fake_ray.kill(ex.actors()[0])
        for k in range(1, 4):
            assert len(ex.process(_batch(_spread_ids(), k))) == 30
        assert ex.n_series() == 30
    afresh = [r for r in caplog.records if "start afresh" in r.getMessage()]
    assert len(afresh) == 1 and "shard 0" in afresh[0].getMessage()


def test_more_actors_than_cpus_share_them_and_a_replacement_still_fits(
    fake_ray: _FakeRay,
) -> None:
    fake_ray.cpus = 2
    with RayExecutor("default", n_actors=8) as ex:
        assert len(ex.process(_batch(_spread_ids(), 0))) == 30
        fake_ray.kill(ex.actors()[3])
        assert len(ex.process(_batch(_spread_ids(), 1))) == 30
        assert ex.restarts == 1


def test_an_unreachable_actor_is_killed_so_that_its_replacement_fits(fake_ray: _FakeRay) -> None:
    fake_ray.cpus = 2
    with RayExecutor("default", n_actors=2) as ex:
        ex.process(_batch(_spread_ids(), 0))
        lost = ex.actors()[0]
        lost.unreachable = True
        assert len(ex.process(_batch(_spread_ids(), 1))) == 30
        assert lost.dead and ex.restarts == 1


def test_actors_default_to_one_per_cpu(fake_ray: _FakeRay) -> None:
    fake_ray.cpus = 5
    with RayExecutor("default") as ex:
        assert ex.n_shards == 5 and len(ex.actors()) == 5
        assert [s["shard"] for s in ex.actor_stats()] == [0, 1, 2, 3, 4]


def test_a_cluster_that_cannot_place_the_actors_fails_at_start_leaving_none(
    fake_ray: _FakeRay,
) -> None:
    fake_ray.initialized = False
    fake_ray.cpus = 0.5  # … yet Ray said the cluster had no room for the actors
    fake_ray.born_dead = True
    with pytest.raises(_ActorDied):
        RayExecutor("default", n_actors=2)
    assert len(fake_ray.actors) == 2 and all(a.dead for a in fake_ray.actors)
    assert fake_ray.shutdowns == 1  # the Ray it started is shut down again


def test_an_actor_that_cannot_be_created_leaves_none_of_the_others(
    fake_ray: _FakeRay, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_ray.initialized = False
    made = fake_ray.remote

    def third_refused(**options: Any) -> Any:
        wrap = made(**options)

        def refusing(cls: type) -> Any:
            inner = wrap(cls)

            class _Cls:
                @staticmethod
                def remote(*args: Any) -> _FakeActor:
                    if len(fake_ray.actors) == 2:
                        raise RuntimeError("cannot create actor: out of memory")
                    return inner.remote(*args)

            return _Cls

        return refusing

    monkeypatch.setattr(fake_ray, "remote", third_refused)
    with pytest.raises(RuntimeError, match="out of memory"):
        RayExecutor("default", n_actors=3)
    assert len(fake_ray.actors) == 2 and all(a.dead for a in fake_ray.actors)
    assert fake_ray.shutdowns == 1


def test_a_ray_started_here_is_shut_down_when_its_resources_cannot_be_read(
    fake_ray: _FakeRay, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_ray.initialized = False

    def gone() -> dict[str, float]:
        raise ConnectionError("the GCS went away")

    monkeypatch.setattr(fake_ray, "cluster_resources", gone)
    with pytest.raises(ConnectionError):
        RayExecutor("default", n_actors=2)
    assert fake_ray.shutdowns == 1 and fake_ray.actors == []


def test_ray_started_here_is_shut_down_on_close_once(fake_ray: _FakeRay) -> None:
    fake_ray.initialized = False
    ex = RayExecutor("default", n_actors=2)
    # A Ray of its own: "local", never the cluster RAY_ADDRESS or a `ray start` file names.
    assert len(fake_ray.inits) == 1 and fake_ray.inits[0]["address"] == "local"
    ex.close()
    ex.close()
    assert fake_ray.shutdowns == 1 and all(a.dead for a in fake_ray.actors)
    for call in (
        lambda: ex.process(_batch(np.array([1]), 0)),
        ex.checkpoints,
        lambda: ex.restore({1: b""}),
        ex.n_series,
        ex.actor_stats,
    ):
        with pytest.raises(DetectorError, match="closed"):
            call()


def test_an_unreachable_ray_address_is_a_config_error_naming_it(
    fake_ray: _FakeRay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("relia.engine._rayutil._has_ray_client", lambda: True)
    fake_ray.initialized = False
    fake_ray.init_error = ConnectionError("could not connect\nto the GCS (long trace)")
    with pytest.raises(ConfigError) as info:
        RayExecutor("default", address="ray://10.0.0.9:10001")
    assert str(info.value) == (
        "engine.ray_address: cannot connect to Ray at ray://10.0.0.9:10001: could not connect"
    )
    assert fake_ray.inits[0]["address"] == "ray://10.0.0.9:10001"
    fake_ray.init_error = RuntimeError("no room")
    with pytest.raises(ConfigError, match="^engine.executor: cannot start Ray: no room$"):
        RayExecutor("default")
    assert fake_ray.shutdowns == 0


def test_checkpoint_bytes_count_every_series_also_for_per_series_detectors(
    fake_ray: _FakeRay,
) -> None:
    ids = _spread_ids(12)
    local = LocalExecutor("cusum")
    with RayExecutor("cusum", n_actors=2) as ex:
        for k in range(3):
            b = _batch(ids, k)
            ex.process(b)
            local.process(b)
        stats = ex.actor_stats(checkpoint_bytes=True)  # leaves the changed flags alone
        assert ex.checkpoints(changed_only=True) == local.checkpoints(changed_only=True)
        total = sum(len(b) for b in local.checkpoints().values())
        assert sum(s["checkpoint_bytes"] for s in stats) == total
        assert "checkpoint_bytes" not in ex.actor_stats()[0]


def test_one_actor_is_enough_and_none_is_refused_before_any_actor(fake_ray: _FakeRay) -> None:
    with pytest.raises(ConfigError, match="engine.ray_actors: must be >= 1, got 0"):
        RayExecutor("default", n_actors=0)
    assert fake_ray.actors == []
    with RayExecutor("default", n_actors=1) as ex:
        assert ex.process(_batch(np.array([1, 2]), 0)).series_id.tolist() == [1, 2]
    # The Ray it joined (started by someone else) is left running.
    assert fake_ray.shutdowns == 0 and fake_ray.is_initialized()


@pytest.mark.integration
@pytest.mark.slow
def test_an_actor_process_that_crashes_is_replaced_and_restored_not_restarted_empty(
    ray_local: ModuleType,
) -> None:
    """An actor process killed from outside (the OOM killer, a crash) must not be brought back
    empty by Ray's own restarts: the executor replaces it and restores its series."""
    import os
    import signal

    ids = _spread_ids()
    params = {"min_samples": 8}  # scores and bands from the 9th point: an empty shard differs
    local = LocalExecutor("default", params)
    saved: dict[int, bytes] = {}
    learned: list[MetricBatch] = []
    with RayExecutor("default", params, n_actors=2, recover=_recorder(saved, learned, [])) as ex:
        _learn_with_a_checkpoint_at_6(ex, local, ids, saved, learned)
        victim = ex.actors()[1]
        os.kill(ex.actor_stats()[1]["pid"], signal.SIGKILL)
        # Ray's own restart (were it on) would bring it back empty within a few seconds: give it
        # that long; a dead actor keeps failing meanwhile.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if ray_local.get(victim.n_series.remote(), timeout=5) == 0:
                    break
            except ray_local.exceptions.RayActorError:
                time.sleep(0.1)
        for k in range(12, 15):
            b = _batch(ids, k)
            _assert_same(ex.process(b), local.process(b))
        assert ex.restarts == 1
        assert ex.checkpoints() == local.checkpoints()


def test_a_shard_whose_recovery_failed_is_recovered_before_it_scores_again(
    fake_ray: _FakeRay,
) -> None:
    ids = _spread_ids()
    local = LocalExecutor("default")
    learned: list[MetricBatch] = []
    asked: list[list[int]] = []
    recorder = _recorder({}, learned, asked)
    down = {"store": True}
    recover = _unless_down(recorder, down)

    with RayExecutor("default", n_actors=3, recover=recover) as ex:
        for k in range(8):
            b = _batch(ids, k)
            learned.append(b)
            _assert_same(ex.process(b), local.process(b))
        fake_ray.kill(ex.actors()[0])
        with pytest.raises(ReliaError, match="unreachable"):
            ex.process(_batch(ids, 8))  # not learned by anyone
        # The other shards go on scoring meanwhile.
        b = _batch(ids[ids % 3 != 0], 9)
        learned.append(b)
        _assert_same(ex.process(b), local.process(b))
        down["store"] = False
        for k in range(10, 13):
            b = _batch(ids, k)
            _assert_same(ex.process(b), local.process(b))
        assert len(asked) == 1 and ex.restarts == 1


def test_restored_checkpoints_reach_the_actor_that_scores_their_series(fake_ray: _FakeRay) -> None:
    ids = _spread_ids()
    local = LocalExecutor("default")
    for k in range(10):
        local.process(_batch(ids, k))
    with RayExecutor("default", n_actors=3) as ex:
        assert ex.restore({}) == 0
        assert ex.restore(local.checkpoints()) == 30
        assert [s["series"] for s in ex.actor_stats()] == [10, 10, 10]
        for k in range(10, 13):
            b = _batch(ids, k)
            _assert_same(ex.process(b), local.process(b))


def test_forgotten_series_do_not_come_back_when_their_actor_dies_during_the_call(
    fake_ray: _FakeRay,
) -> None:
    ids = _spread_ids()
    local = LocalExecutor("default")
    saved: dict[int, bytes] = {}
    learned: list[MetricBatch] = []
    with RayExecutor("default", n_actors=3, recover=_recorder(saved, learned, [])) as ex:
        _learn_with_a_checkpoint_at_6(ex, local, ids, saved, learned)
        assert ex.forget([]) == 0
        fake_ray.kill(ex.actors()[1])
        # The replacement is restored (the store still has 1's and 4's checkpoints), then
        # forgets: they stay forgotten. 99 is held nowhere.
        gone = [1, 4, 2, 99]
        assert ex.forget(gone) == local.forget(gone) == 3 and ex.restarts == 1
        assert ex.n_series() == 27
        assert ex.checkpoints() == local.checkpoints() and 1 not in ex.checkpoints()
        for k in range(12, 15):  # the forgotten series start afresh on both
            b = _batch(ids, k)
            _assert_same(ex.process(b), local.process(b))
        assert ex.checkpoints() == local.checkpoints() and ex.n_series() == 30


def test_a_shard_awaiting_its_recovery_is_recovered_before_it_forgets(fake_ray: _FakeRay) -> None:
    ids = _spread_ids()
    local = LocalExecutor("default")
    learned: list[MetricBatch] = []
    recorder = _recorder({}, learned, [])
    down = {"store": True}
    recover = _unless_down(recorder, down)

    with RayExecutor("default", n_actors=3, recover=recover) as ex:
        for k in range(6):
            b = _batch(ids, k)
            learned.append(b)
            _assert_same(ex.process(b), local.process(b))
        fake_ray.kill(ex.actors()[0])
        b = _batch(ids, 6)
        with pytest.raises(ReliaError, match="unreachable"):
            ex.process(b)  # shard 0 now awaits its recovery; the others learned the batch
        m = b.series_id % 3 != 0
        local.process(MetricBatch(b.series_id[m], b.ts[m], b.value[m]))
        with pytest.raises(ReliaError, match="unreachable"):
            ex.forget([3, 6])  # not forgotten by a shard that holds nothing yet
        down["store"] = False
        assert ex.forget([3, 6, 1]) == local.forget([3, 6, 1]) == 3
        assert ex.checkpoints() == local.checkpoints() and ex.n_series() == 27


@pytest.mark.integration
@pytest.mark.slow
def test_forget_drops_series_on_their_actors(ray_local: ModuleType) -> None:
    ids = np.arange(100, 130, dtype=np.int64)
    with RayExecutor("default", n_actors=2) as ex:
        local = LocalExecutor("default")
        for k in range(10):
            b = _batch(ids, k)
            _assert_same(ex.process(b), local.process(b))
        gone = [100, 101, 102, 7]
        assert ex.forget(gone) == local.forget(gone) == 3
        assert ex.n_series() == 27 and sorted(s["series"] for s in ex.actor_stats()) == [13, 14]
        assert ex.checkpoints() == local.checkpoints()
        for k in range(10, 14):  # the forgotten ones start afresh
            b = _batch(ids, k)
            _assert_same(ex.process(b), local.process(b))
        assert ex.checkpoints() == local.checkpoints() and ex.n_series() == 30


# -- bounded waits: a lost node or a wedged Ray fails or recovers a call, never hangs it ---------


def test_an_actor_that_never_answers_is_replaced_within_the_bound(fake_ray: _FakeRay) -> None:
    ids = _spread_ids()
    local = LocalExecutor("default")
    saved: dict[int, bytes] = {}
    learned: list[MetricBatch] = []
    recover = _recorder(saved, learned, [])
    with RayExecutor("default", n_actors=3, recover=recover, call_timeout_s=0.3) as ex:
        _learn_with_a_checkpoint_at_6(ex, local, ids, saved, learned)
        wedged = ex.actors()[1]
        wedged.hung = True  # its node partitioned: no answer, no error
        start = time.monotonic()
        b = _batch(ids, 12)
        _assert_same(ex.process(b), local.process(b))
        assert time.monotonic() - start < 3
        assert wedged.dead and ex.actors()[1] is not wedged and ex.restarts == 1
        assert ex.checkpoints() == local.checkpoints()


def test_a_replacement_no_node_has_room_for_fails_the_call_naming_the_shard(
    fake_ray: _FakeRay, caplog: pytest.LogCaptureFixture
) -> None:
    fake_ray.cpus = 2  # two 1-CPU nodes, one actor each
    ids = _spread_ids()
    local = LocalExecutor("default")
    saved: dict[int, bytes] = {}
    learned: list[MetricBatch] = []
    recover = _recorder(saved, learned, [])
    with RayExecutor("default", n_actors=2, recover=recover, call_timeout_s=0.3) as ex:
        _learn_with_a_checkpoint_at_6(ex, local, ids, saved, learned)
        fake_ray.cpus = 1  # a node is lost with the actor of shard 0
        fake_ray.kill(ex.actors()[0])
        start = time.monotonic()
        with pytest.raises(ReliaError) as info:
            ex.process(_batch(ids, 12))
        assert time.monotonic() - start < 3
        assert str(info.value) == (
            "engine.executor: cannot place a replacement Ray actor for shard 0 within 0.3 s "
            "(the cluster has 1 CPUs, an actor needs 1); its series are not scored until it "
            "starts"
        )
        # Every tick meanwhile fails the same way, within the bound, and tries no new actor.
        with pytest.raises(ReliaError, match="cannot place"):
            ex.process(_batch(ids, 12))
        assert ex.restarts == 1
        # The node is back: Ray places the waiting actor, restored before it scores.
        fake_ray.cpus = 2
        b = _batch(ids, 12)
        odd = b.series_id % 2 == 1
        learned.append(MetricBatch(b.series_id[odd], b.ts[odd], b.value[odd]))
        local.process(learned[-1])  # what shard 1 learned meanwhile
        for k in range(13, 16):
            b = _batch(ids, k)
            _assert_same(ex.process(b), local.process(b))
        assert ex.restarts == 1 and ex.checkpoints() == local.checkpoints()


def test_once_stop_is_set_a_wedged_cluster_is_given_up_on_within_the_grace(
    fake_ray: _FakeRay, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import relia.engine.ray_executor as ray_executor

    monkeypatch.setattr(ray_executor, "STOP_GRACE_S", 0.2)
    stop = threading.Event()
    with RayExecutor("default", n_actors=2, call_timeout_s=600, stop=stop) as ex:
        ex.process(_batch(_spread_ids(), 0))
        for actor in ex.actors():
            actor.hung = True
        fake_ray.cpus = 0  # and nowhere to place a replacement
        stop.set()  # SIGTERM under relia up
        start = time.monotonic()
        with pytest.raises(ReliaError, match="cannot place a replacement Ray actor for shard 0"):
            ex.checkpoints()  # the final checkpoint
        assert time.monotonic() - start < 2


def test_actors_the_cluster_cannot_place_fail_the_start_naming_the_cpus(
    fake_ray: _FakeRay, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_ray.initialized = False
    monkeypatch.setattr(fake_ray, "free_cpus", lambda: 0.0)  # another job holds every CPU
    with pytest.raises(ConfigError) as info:
        RayExecutor("default", n_actors=2, call_timeout_s=0.2)
    assert str(info.value) == (
        "engine.ray_actors: Ray did not start the 2 actors within 0.2 s: the cluster has 4 "
        "CPUs, an actor needs 1"
    )
    assert all(a.dead for a in fake_ray.actors) and fake_ray.shutdowns == 1


_NODE_LOSS = """
import sys, time
import numpy as np
import ray
from ray.cluster_utils import Cluster
from relia.engine.ray_executor import RayExecutor
from relia.errors import ReliaError
from relia.signals import MetricBatch

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
worker = cluster.add_node(num_cpus=1)
try:
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    ex = RayExecutor("default", call_timeout_s=3.0)  # one 1-CPU actor on each node
    ids = np.arange(1, 41, dtype=np.int64)
    def batch(k):
        ts = np.full(40, 1_700_000_000_000 + k * 15_000, np.int64)
        return MetricBatch(ids, ts, np.sin(ids + k))
    for k in range(3):
        ex.process(batch(k))
    cluster.remove_node(worker)
    for k in (3, 4):
        start = time.monotonic()
        try:
            ex.process(batch(k))
            print("SCORED")
        except ReliaError as exc:
            print(f"FAILED {time.monotonic() - start:.1f} {exc}", flush=True)
    ex.close()
    ray.shutdown()
finally:
    cluster.shutdown()
"""


@pytest.mark.integration
@pytest.mark.slow
def test_a_lost_node_with_no_room_for_the_replacement_fails_ticks_within_the_bound(
    tmp_path: Path,
) -> None:
    """Two 1-CPU nodes, an actor on each; the worker node is removed. The replacement actor has
    nowhere to go: each call fails in about ``call_timeout_s``, naming the shard and the CPUs
    (it waited in ``ray.get`` for good)."""
    pytest.importorskip("ray")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    proc = subprocess.run(
        [sys.executable, "-c", _NODE_LOSS],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    failed = [line for line in proc.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 2, proc.stdout
    for line in failed:
        seconds, text = line.split(" ", 2)[1:]
        assert float(seconds) < 10
        assert text.startswith("engine.executor: cannot place a replacement Ray actor for shard ")
        assert "(the cluster has 1 CPUs, an actor needs 1)" in text


@pytest.mark.integration
@pytest.mark.slow
def test_sigterm_stops_relia_up_while_its_ray_is_wedged(tmp_path: Path) -> None:
    """The raylet of relia's own Ray SIGKILLed: the tick under way waits on Ray; SIGTERM must
    still stop relia (it hung until SIGKILL), within the stop grace of the tick and of the final
    checkpoint."""
    import signal

    import httpx
    import psutil

    from tests.integration.up_process import ReliaProcess

    pytest.importorskip("ray")
    config = tmp_path / "relia.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\ninterval: 1s\napi: {{port: 0}}\n"
        "engine: {executor: ray, ray_actors: 2}\n"
    )
    relia = ReliaProcess(config)
    try:
        raylets = [
            p for p in psutil.Process(relia.proc.pid).children() if p.name().startswith("raylet")
        ]
        assert len(raylets) == 1
        raylets[0].kill()
        # Until a tick waits on Ray for good (the dead actor's replacement, which cannot be
        # placed): the count of ticks stands still.
        ticks, since = -1, time.monotonic()
        while time.monotonic() - since < 8:
            assert time.monotonic() - since < 120
            now = httpx.get(f"{relia.url}/healthz", timeout=5).json()["engine"]["ticks"]
            if now != ticks:
                ticks, since = now, time.monotonic()
            time.sleep(0.5)
        start = time.monotonic()
        relia.proc.send_signal(signal.SIGTERM)
        assert relia.proc.wait(40) == 0
        assert time.monotonic() - start < 2 * 5.0 + 15  # two stop graces, and closing
    finally:
        relia.ensure_gone()
