from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relia.detect import create
from relia.engine.executor import Executor, ScoredPoints, shard_of
from relia.engine.local import LocalExecutor
from relia.errors import DetectorError
from relia.signals import MetricBatch


def _data(n_series: int = 5, n: int = 120, seed: int = 0) -> MetricBatch:
    rng = np.random.default_rng(seed)
    sids = rng.integers(1, 2**62, n_series)
    ts = np.arange(n, dtype=np.int64) * 15_000 + 1_700_000_000_000
    parts = []
    for k, sid in enumerate(sids):
        v = 10.0 * k + rng.normal(0, 1, n)
        v[n // 2] += 40  # a spike per series
        parts.append(MetricBatch.for_series(int(sid), ts, v))
    return MetricBatch.concat(parts)


def _by_key(p: ScoredPoints) -> dict[tuple[int, int], tuple[float, float]]:
    # NaN (warm-up) compares unequal to itself; -1 stands in for it.
    exp = np.nan_to_num(p.expected, nan=-1.0)
    return {
        (int(s), int(t)): (float(sc), float(e))
        for s, t, sc, e in zip(p.series_id, p.ts, p.score, exp, strict=True)
    }


def _ticks(batch: MetricBatch, n_ticks: int) -> list[MetricBatch]:
    ts = np.unique(batch.ts)
    cuts = np.array_split(ts, n_ticks)
    return [
        MetricBatch(batch.series_id[m], batch.ts[m], batch.value[m])
        for m in (np.isin(batch.ts, c) for c in cuts)
    ]


def test_is_an_executor() -> None:
    ex = LocalExecutor("cusum", {}, n_shards=2)
    assert isinstance(ex, Executor)
    assert ex.components == create("cusum").components


def test_matches_a_detector_per_series_run_on_everything() -> None:
    batch = _data()
    ex = LocalExecutor("cusum", {}, n_shards=1)
    got = ScoredPoints.concat([ex.process(b) for b in _ticks(batch, 7)])
    assert len(got) == len(batch)
    for sid, ts, val in batch.split():
        det = create("cusum")
        d = det.score_detail(val, ts)
        m = got.series_id == sid
        np.testing.assert_array_equal(got.ts[m], ts)
        np.testing.assert_allclose(got.score[m], d.score)
        np.testing.assert_allclose(got.expected[m], d.expected)
        np.testing.assert_array_equal(got.component[m], d.component)
    assert got.score.max() > 0.5  # the spikes are found


@pytest.mark.parametrize("n_shards", [2, 3, 8])
def test_sharding_does_not_change_scores(n_shards: int) -> None:
    batch = _data(n_series=9)
    one = LocalExecutor("mad", {}, 1)
    many = LocalExecutor("mad", {}, n_shards)
    a = ScoredPoints.concat([one.process(b) for b in _ticks(batch, 4)])
    b = ScoredPoints.concat([many.process(b) for b in _ticks(batch, 4)])
    assert _by_key(a) == _by_key(b)
    assert many.n_series() == 9
    owners = shard_of(np.unique(batch.series_id), n_shards)
    assert set(owners.tolist()) <= set(range(n_shards))


def test_old_and_repeated_points_are_dropped_and_counted() -> None:
    ex = LocalExecutor("mad", {})
    ts = np.arange(10, dtype=np.int64) * 1000
    ex.process(MetricBatch.for_series(7, ts, np.ones(10)))
    again = ex.process(MetricBatch.for_series(7, ts[5:] + 500, np.ones(5)))
    # 5500..9500: the points at or before 9000 are old; only 9500 is new
    assert again.dropped == 4
    assert again.ts.tolist() == [9500]
    none = ex.process(MetricBatch.for_series(7, ts, np.ones(10)))
    assert len(none) == 0 and none.dropped == 10


def test_checkpoint_restore_continues_like_an_uninterrupted_run() -> None:
    batch = _data(n_series=4)
    ticks = _ticks(batch, 6)
    straight = LocalExecutor("cusum", {}, 2)
    ref = ScoredPoints.concat([straight.process(b) for b in ticks])

    first = LocalExecutor("cusum", {}, 2)
    head = [first.process(b) for b in ticks[:3]]
    blobs = first.checkpoints()
    assert len(blobs) == 4 and all(isinstance(v, bytes) for v in blobs.values())
    second = LocalExecutor("cusum", {}, 3)  # a different shard count still works
    assert second.restore(blobs) == 4
    tail = [second.process(b) for b in ticks[3:]]
    got = ScoredPoints.concat(head + tail)
    assert _by_key(got) == _by_key(ref)
    # restored last-seen times: replaying the first ticks scores nothing
    replay = second.process(ticks[0])
    assert len(replay) == 0 and replay.dropped == len(ticks[0])


def test_changed_only_checkpoints() -> None:
    ex = LocalExecutor("mad", {})
    ex.process(MetricBatch.for_series(1, [1000], [1.0]))
    ex.process(MetricBatch.for_series(2, [1000], [1.0]))
    assert set(ex.checkpoints(changed_only=True)) == {1, 2}
    assert ex.checkpoints(changed_only=True) == {}
    ex.process(MetricBatch.for_series(2, [2000], [1.0]))
    assert set(ex.checkpoints(changed_only=True)) == {2}
    assert set(ex.checkpoints()) == {1, 2}


def test_checkpoint_of_another_detector_is_skipped() -> None:
    mad = LocalExecutor("mad", {})
    mad.process(MetricBatch.for_series(1, [1000, 2000], [1.0, 2.0]))
    cusum = LocalExecutor("cusum", {})
    assert cusum.restore(mad.checkpoints()) == 0
    assert cusum.restore({5: b"garbage"}) == 0
    assert cusum.n_series() == 0


def test_bad_detector_fails_at_construction() -> None:
    with pytest.raises(DetectorError, match="nope"):
        LocalExecutor("nope", {})
    with pytest.raises(DetectorError):
        LocalExecutor("mad", {}, n_shards=0)


def test_nan_values_are_scored_not_dropped() -> None:
    ex = LocalExecutor("cusum", {})
    out = ex.process(MetricBatch.for_series(3, [1000, 2000, 3000], [1.0, np.nan, 1.0]))
    assert len(out) == 3 and out.dropped == 0
    assert np.isfinite(out.score).all()


# -- the detector-table path (default / adaptive) ------------------------------------------


def _with_repeats(batch: MetricBatch, n_ticks: int, seed: int = 3) -> list[MetricBatch]:
    """Ticks in shuffled order within each, plus old and repeated points a real source sends."""
    rng = np.random.default_rng(seed)
    out = []
    prev: MetricBatch | None = None
    for b in _ticks(batch, n_ticks):
        parts = [b]
        if prev is not None and len(prev):
            pick = rng.choice(len(prev), min(5, len(prev)), replace=False)
            parts.append(MetricBatch(prev.series_id[pick], prev.ts[pick], prev.value[pick]))
        m = MetricBatch.concat(parts)
        order = rng.permutation(len(m))
        out.append(MetricBatch(m.series_id[order], m.ts[order], m.value[order]))
        prev = b
    return out


def _object_executor(monkeypatch: pytest.MonkeyPatch, *args: object) -> LocalExecutor:
    # The per-series object path for a detector that has a table: the reference to compare with.
    import relia.engine.local as local

    monkeypatch.setattr(local, "table_for", lambda det: None)
    ex = LocalExecutor(*args)  # type: ignore[arg-type]
    monkeypatch.undo()
    return ex


def _assert_points_equal(a: ScoredPoints, b: ScoredPoints) -> None:
    np.testing.assert_array_equal(a.series_id, b.series_id)
    np.testing.assert_array_equal(a.ts, b.ts)
    np.testing.assert_array_equal(a.value, b.value)
    for k in ("score", "expected", "lower", "upper"):
        np.testing.assert_allclose(getattr(a, k), getattr(b, k), rtol=0, atol=1e-12, err_msg=k)
    np.testing.assert_array_equal(a.component, b.component)
    assert a.dropped == b.dropped


def test_default_streams_through_a_table() -> None:
    assert all(s.batched for s in LocalExecutor("default", {}, 2)._shards)
    assert not LocalExecutor("cusum", {})._shards[0].batched
    ex = LocalExecutor("adaptive", {"bins": 24})
    assert ex._shards[0].batched and ex.components == create("adaptive").components


@pytest.mark.parametrize("n_shards", [1, 3])
def test_table_path_equals_object_path(monkeypatch: pytest.MonkeyPatch, n_shards: int) -> None:
    batch = _data(n_series=7, n=300)
    ticks = _with_repeats(batch, 12)
    table = LocalExecutor("default", {}, n_shards)
    objects = _object_executor(monkeypatch, "default", {}, n_shards)
    assert not objects._shards[0].batched
    dropped = 0
    for b in ticks:
        got, want = table.process(b), objects.process(b)
        _assert_points_equal(got, want)
        dropped += got.dropped
    assert dropped > 0  # the old and repeated points were there and were dropped alike
    assert table.n_series() == objects.n_series() == 7
    assert table.checkpoints() == objects.checkpoints()  # byte for byte


def test_table_path_matches_a_detector_per_series_run_on_everything() -> None:
    batch = _data(n_series=4, n=300)
    ex = LocalExecutor("default", {}, n_shards=2)
    got = ScoredPoints.concat([ex.process(b) for b in _ticks(batch, 9)])
    assert len(got) == len(batch) and got.dropped == 0
    for sid, ts, val in batch.split():
        d = create("default").score_detail(val, ts)
        m = got.series_id == sid
        np.testing.assert_array_equal(got.ts[m], ts)
        np.testing.assert_allclose(got.score[m], d.score, rtol=0, atol=1e-12)
        np.testing.assert_allclose(got.upper[m], d.upper, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(got.component[m], d.component)
    assert got.score.max() >= 0.5  # the spikes are found


def test_table_checkpoints_restore_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    batch = _data(n_series=5, n=240)
    ticks = _ticks(batch, 6)
    straight = LocalExecutor("default", {}, 2)
    ref = ScoredPoints.concat([straight.process(b) for b in ticks])
    # Checkpoints written by the object path (as stored before the table existed) restore into
    # the table, and the table's restore into objects: all three runs agree.
    objects = _object_executor(monkeypatch, "default", {}, 1)
    head = [objects.process(b) for b in ticks[:3]]
    table = LocalExecutor("default", {}, 3)
    assert table.restore(objects.checkpoints()) == 5
    mid = [table.process(ticks[3])]
    back = _object_executor(monkeypatch, "default", {}, 2)
    assert back.restore(table.checkpoints()) == 5
    tail = [back.process(b) for b in ticks[4:]]
    got = ScoredPoints.concat(head + mid + tail)
    # Shard counts differ, so the order of series within a tick does too: compare sorted.
    _assert_points_equal(
        got.take(np.lexsort((got.ts, got.series_id))), ref.take(np.lexsort((ref.ts, ref.series_id)))
    )
    replay = table.process(ticks[0])  # restored last-seen times drop the replayed tick
    assert len(replay) == 0 and replay.dropped == len(ticks[0])


def test_table_changed_only_and_foreign_checkpoints() -> None:
    ex = LocalExecutor("default", {})
    ex.process(MetricBatch.for_series(1, [1000], [1.0]))
    ex.process(MetricBatch.for_series(2, [1000], [1.0]))
    assert set(ex.checkpoints(changed_only=True)) == {1, 2}
    assert ex.checkpoints(changed_only=True) == {}
    ex.process(MetricBatch.for_series(2, [2000], [1.0]))
    ex.process(MetricBatch.for_series(2, [2000], [5.0]))  # dropped: not newer
    assert set(ex.checkpoints(changed_only=True)) == {2}
    assert set(ex.checkpoints()) == {1, 2}
    assert ex.checkpoints(changed_only=True) == {}
    ex.process(MetricBatch.for_series(1, [3000], [1.0]))
    assert set(ex.checkpoints()) == {1, 2}
    assert ex.checkpoints(changed_only=True) == {}  # a full checkpoint clears the flags too
    cusum = LocalExecutor("cusum", {})
    cusum.process(MetricBatch.for_series(3, [1000], [1.0]))
    assert ex.restore({**cusum.checkpoints(), 4: b"garbage"}) == 0
    assert ex.n_series() == 2


def test_table_nan_values_are_scored_not_dropped() -> None:
    ex = LocalExecutor("default", {})
    out = ex.process(MetricBatch.for_series(3, [1000, 2000, 3000], [1.0, np.nan, 1.0]))
    assert len(out) == 3 and out.dropped == 0
    assert np.isfinite(out.score).all()
    assert len(ex.process(MetricBatch.empty())) == 0


@pytest.mark.parametrize("detector", ["cusum", "default"])
def test_a_restored_series_drops_what_it_learned_before_its_checkpoint(detector: str) -> None:
    # After a restart a source may send again what the checkpoint already holds (a query's
    # lookback, the replay of stored samples): the first batch must not teach it twice.
    ts = np.arange(10, dtype=np.int64) * 1000
    first = LocalExecutor(detector, {})
    first.process(MetricBatch.for_series(7, ts, np.arange(10.0)))
    again = LocalExecutor(detector, {}, n_shards=2)
    assert again.restore(first.checkpoints()) == 1
    out = again.process(MetricBatch.for_series(7, np.append(ts[5:], 10_000), np.ones(6)))
    assert out.ts.tolist() == [10_000] and out.dropped == 5


# -- forgetting idle series ------------------------------------------------------------------

_LIFE = 1000  # a series id s in its k-th life is s + k * _LIFE on the reference executor


def _sorted_points(p: ScoredPoints) -> ScoredPoints:
    return p.take(np.lexsort((p.ts, p.series_id)))


@settings(max_examples=25)
@given(
    detector=st.sampled_from(["default", "cusum"]),
    n_shards=st.sampled_from([1, 3]),
    n_series=st.integers(1, 8),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_forgetting_leaves_the_others_exact_and_a_forgotten_series_starts_afresh(
    detector: str, n_shards: int, n_series: int, seed: int, data: st.DataObject
) -> None:
    # The reference never forgets: each life of a series is a series of its own there.
    rng = np.random.default_rng(seed)
    ts = np.arange(60, dtype=np.int64) * 15_000 + 1_700_000_000_000
    batch = MetricBatch.concat(
        [
            MetricBatch.for_series(s, ts, 3.0 * s + rng.normal(0, 1, 60))
            for s in range(1, n_series + 1)
        ]
    )
    ex = LocalExecutor(detector, {}, n_shards)
    ref = LocalExecutor(detector, {}, 2)
    life = dict.fromkeys(range(1, n_series + 1), 0)
    held: set[int] = set()
    for b in _with_repeats(batch, data.draw(st.integers(1, 6), "ticks"), seed):
        alias = np.array([s + life[s] * _LIFE for s in b.series_id.tolist()], np.int64)
        got = _sorted_points(ex.process(b))
        want = ref.process(MetricBatch(alias, b.ts, b.value))
        want = _sorted_points(
            ScoredPoints(
                want.series_id % _LIFE,
                want.ts,
                want.value,
                want.score,
                want.expected,
                want.lower,
                want.upper,
                want.component,
                want.dropped,
            )  # fmt: skip
        )
        _assert_points_equal(got, want)
        held |= set(got.series_id.tolist())
        gone = data.draw(st.sets(st.integers(1, n_series + 2)), "forget")
        assert ex.forget(gone) == len(held & gone)
        assert ex.forget(gone) == 0  # nothing left of them
        for s in gone & set(life):
            life[s] += 1
        held -= gone
        assert ex.n_series() == len(held)
        changed_only = data.draw(st.booleans(), "changed_only")
        live = {s + life[s] * _LIFE: s for s in held}
        want_ck = {live[a]: blob for a, blob in ref.checkpoints(changed_only).items() if a in live}
        assert ex.checkpoints(changed_only) == want_ck


@pytest.mark.parametrize("detector", ["cusum", "default"])
def test_forget_of_nothing_or_unknown_series_changes_nothing(detector: str) -> None:
    ex = LocalExecutor(detector, {}, n_shards=3)
    ex.process(_data(n_series=4, n=30))
    before = ex.checkpoints()
    assert ex.forget([]) == 0 and ex.forget({-1, 12345}) == 0
    assert ex.checkpoints() == before and ex.n_series() == 4
    first = sorted(before)[0]
    assert ex.forget([first, first]) == 1 and ex.n_series() == 3
    assert first not in ex.checkpoints()


@pytest.mark.parametrize("detector", ["default", "mad", "cusum", "seasonal", "ensemble"])
@pytest.mark.parametrize("n_shards", [1, 2])
def test_a_sample_repeated_inside_one_batch_is_learned_once(detector: str, n_shards: int) -> None:
    # A remote-write request sent again can bring a sample twice in one tick: it must teach the
    # model once (the last value, as the store keeps), like a repeat in the next tick does.
    ts = np.arange(100, dtype=np.int64) * 60_000
    values = np.sin(np.arange(100) / 3.0) * 5 + 20
    history = MetricBatch(np.array([1, 2] * 50, np.int64), np.repeat(ts[:50], 2), values)
    once = LocalExecutor(detector, {}, n_shards)
    twice = LocalExecutor(detector, {}, n_shards)
    once.process(history)
    twice.process(history)
    t = ts[60:63]
    clean = MetricBatch(np.array([1, 1, 1, 2], np.int64), np.r_[t, t[0]], [1.0, 30.0, 2.0, 4.0])
    repeated = MetricBatch(
        np.array([1, 1, 2, 1, 1, 2], np.int64),
        np.r_[t[0], t[1], t[0], t[1], t[2], t[0]],
        [1.0, 99.0, 4.0, 30.0, 2.0, 4.0],  # series 1 at t[1]: 99 then 30, 30 is kept
    )
    a = once.process(clean)
    b = twice.process(repeated)
    assert a.dropped == 0 and b.dropped == 2
    assert sorted(
        zip(b.series_id.tolist(), b.ts.tolist(), b.value.tolist(), strict=True)
    ) == sorted(zip(a.series_id.tolist(), a.ts.tolist(), a.value.tolist(), strict=True))
    assert twice.checkpoints() == once.checkpoints()


@pytest.mark.parametrize("detector", ["default", "mad"])
def test_refused_checkpoints_are_one_warning_per_reason(
    detector: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A config change refuses every series' checkpoint: one line, not one per series.
    old = LocalExecutor(detector, {}, 2)
    ids = np.arange(1, 201, dtype=np.int64)
    old.process(MetricBatch(ids, np.full(200, 60_000, np.int64), np.ones(200)))
    blobs = old.checkpoints()
    blobs[999] = b"garbage"
    blobs[998] = b"more garbage"
    new = LocalExecutor(detector, {"min_samples": 8}, 3)
    with caplog.at_level(logging.WARNING, logger="relia.engine.local"):
        assert new.restore(blobs) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    config = next(w for w in warnings if "another config" in w)
    assert config.startswith("200 series start afresh, their checkpoint refused: ")
    assert "(e.g. series " in config
    assert any(w.startswith("2 series start afresh") and "bad magic" in w for w in warnings)
