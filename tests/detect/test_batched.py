"""DetectorTable: many series in row arrays must stream exactly like one Detector per series."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relia.detect import create
from relia.detect.adaptive import Adaptive
from relia.detect.base import Detector
from relia.detect.batched import NO_TS, AdaptiveTable, DetectorTable, table_for
from relia.detect.checkpoint import pack, unpack
from relia.errors import DataError, DetectorError

T0 = 1_600_000_000_000
MIN = 60_000
TOL = 1e-12


def _series(n_series: int, n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per series: times (irregular, a daily cycle) and values (noise, spikes, a shift, NaN)."""
    rng = np.random.default_rng(seed)
    out = []
    for s in range(n_series):
        ts = T0 + np.cumsum(rng.integers(MIN // 2, 3 * MIN, n)).astype(np.int64)
        day = np.sin(2 * np.pi * (ts % 86_400_000) / 86_400_000)
        v = 10.0 * s + 5.0 * day + rng.standard_t(3, n)
        v[rng.integers(0, n, 4)] += rng.choice([-30.0, 30.0], 4)  # spikes and dips
        v[n // 2 :] += 8.0 * (s % 2)  # a level shift in every other series
        v[rng.random(n) < 0.03] = np.nan
        out.append((ts, v))
    return out


def _interleave(
    series: list[tuple[np.ndarray, np.ndarray]], ids: list[int], seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random interleaving that keeps each series' own order (as a real stream does)."""
    rng = np.random.default_rng(seed)
    owner = np.concatenate([np.full(len(t), k) for k, (t, _) in enumerate(series)])
    rng.shuffle(owner)
    pos = [0] * len(series)
    sid, ts, val = [], [], []
    for k in owner.tolist():
        t, v = series[k]
        sid.append(ids[k])
        ts.append(t[pos[k]])
        val.append(v[pos[k]])
        pos[k] += 1
    return np.array(sid, np.int64), np.array(ts, np.int64), np.array(val)


def _per_series_reference(
    sid: np.ndarray, ts: np.ndarray, val: np.ndarray, **params: Any
) -> tuple[dict[str, np.ndarray], dict[int, Detector]]:
    """What one Detector per series gives point by point in stream order.

    The expected value, band and component come from one-point ``score_detail`` calls; a twin
    detector per series fed through ``update()`` must give the same scores and end in the same
    state, so the streaming entry is checked against the same reference.
    """
    dets: dict[int, Detector] = {}
    twins: dict[int, Detector] = {}
    n = len(sid)
    ref = {k: np.full(n, np.nan) for k in ("score", "expected", "lower", "upper")}
    ref["component"] = np.full(n, -1, np.int8)
    streamed = np.full(n, np.nan)
    for i, (s, t, v) in enumerate(zip(sid.tolist(), ts.tolist(), val.tolist(), strict=True)):
        det = dets.get(s)
        if det is None:
            det = dets[s] = create("default", **params)
            twins[s] = create("default", **params)
        one = det.score_detail(np.array([v]), np.array([t], np.int64))
        for k in ("score", "expected", "lower", "upper", "component"):
            ref[k][i] = getattr(one, k)[0]
        streamed[i] = twins[s].update(t, v)
    np.testing.assert_array_equal(streamed, ref["score"])
    for s, det in dets.items():
        assert pack(twins[s].state_dict()) == pack(det.state_dict())
    return ref, dets


def _assert_same(got: Any, ref: dict[str, np.ndarray], sl: slice = slice(None)) -> None:
    for k in ("score", "expected", "lower", "upper"):
        np.testing.assert_allclose(getattr(got, k), ref[k][sl], rtol=0, atol=TOL, err_msg=k)
    np.testing.assert_array_equal(got.component, ref["component"][sl])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_update_many_equals_one_detector_per_series(seed: int) -> None:
    series = _series(6, 700, seed)
    ids = [int(x) for x in np.random.default_rng(seed).integers(1, 2**62, 6)]
    sid, ts, val = _interleave(series, ids, seed)
    ref, dets = _per_series_reference(sid, ts, val)
    table = table_for(create("default"))
    assert isinstance(table, AdaptiveTable)
    # Calls of random sizes (engine ticks), one of them a single point.
    cuts = np.sort(np.random.default_rng(seed).choice(np.arange(1, len(sid)), 9, replace=False))
    cuts = np.concatenate([[0, 1], cuts, [len(sid)]])
    for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
        _assert_same(table.update_many(sid[a:b], ts[a:b], val[a:b]), ref, slice(a, b))
    assert (ref["score"] >= 0.5).any()  # the comparison covered alarms, not only quiet points
    assert len(table) == 6 and sorted(table.series_ids) == sorted(ids)
    for s, det in dets.items():
        assert table.checkpoint(s) == pack(det.state_dict())  # byte for byte


def test_matches_batch_scoring_of_each_series() -> None:
    # The table is the same code as score_detail too (streaming equals batch).
    series = _series(3, 400, 7)
    sid, ts, val = _interleave(series, [11, 22, 33], 7)
    got = table_for(create("default"))
    assert got is not None
    d = got.update_many(sid, ts, val)
    for k, s in enumerate([11, 22, 33]):
        batch = create("default").score_detail(series[k][1], series[k][0])
        m = sid == s
        np.testing.assert_allclose(d.score[m], batch.score, rtol=0, atol=TOL)
        np.testing.assert_allclose(d.expected[m], batch.expected, rtol=0, atol=TOL)
        np.testing.assert_array_equal(d.component[m], batch.component)


def test_non_default_config_is_used() -> None:
    params = {"bins": 24, "week_bins": 0, "min_samples": 16, "band_z": 2.5}
    series = _series(2, 300, 3)
    sid, ts, val = _interleave(series, [5, 9], 3)
    ref, dets = _per_series_reference(sid, ts, val, **params)
    table = table_for(create("adaptive", **params))
    assert table is not None
    _assert_same(table.update_many(sid, ts, val), ref)
    assert table.checkpoint(9) == pack(dets[9].state_dict())


def test_checkpoint_round_trip_mid_stream() -> None:
    series = _series(4, 500, 4)
    ids = [101, 202, 303, 404]
    sid, ts, val = _interleave(series, ids, 4)
    half = len(sid) // 2
    straight = table_for(create("default"))
    assert straight is not None
    ref = straight.update_many(sid, ts, val)

    first = table_for(create("default"))
    assert first is not None
    head = first.update_many(sid[:half], ts[:half], val[:half])
    blobs = {s: first.checkpoint(s) for s in ids}
    # Restored into a fresh table (rows in another order) and into plain detectors: both go on
    # exactly as the uninterrupted table.
    second = table_for(create("default"))
    assert second is not None
    for s in reversed(ids):
        second.restore(s, blobs[s])
    tail = second.update_many(sid[half:], ts[half:], val[half:])
    np.testing.assert_allclose(np.r_[head.score, tail.score], ref.score, rtol=0, atol=TOL)
    np.testing.assert_allclose(np.r_[head.upper, tail.upper], ref.upper, rtol=0, atol=TOL)
    for s in ids:
        assert second.checkpoint(s) == straight.checkpoint(s)
        det = create("default")
        det.load_state_dict(unpack(blobs[s]))
        m = sid[half:] == s
        scores = [det.update(t, v) for t, v in zip(ts[half:][m], val[half:][m], strict=True)]
        np.testing.assert_allclose(scores, tail.score[m], rtol=0, atol=TOL)


def test_many_checkpoints_at_once_are_the_single_ones_byte_for_byte() -> None:
    series = _series(3, 300, 5)
    ids = [7, -3, 2**62]
    sid, ts, val = _interleave(series, ids, 5)
    table = table_for(create("default", week_bins=24))
    assert table is not None
    assert table.checkpoints([]) == {}
    table.update_many(sid, ts, val)
    table.rows(np.array([99], np.int64))  # a row that never saw a point: last_ts is None
    every = [*ids, 99]
    many = table.checkpoints(every)
    assert list(many) == every
    for s in every:
        assert many[s] == table.checkpoint(s) == pack(table.state_dict(s))
    assert unpack(many[99])["last_ts"] is None
    with pytest.raises(DetectorError, match="no state for series 5"):
        table.checkpoints([7, 5])


def test_detector_checkpoint_restores_into_the_table() -> None:
    # Checkpoints stored by the per-series engine (before the table) still restore.
    det = create("default")
    ts = T0 + MIN * np.arange(300, dtype=np.int64)
    vals = np.random.default_rng(0).normal(50, 2, 300)
    det.score_detail(vals[:200], ts[:200])
    table = table_for(create("default"))
    assert table is not None
    table.restore(77, pack(det.state_dict()))
    assert table.n_seen(77) == 200
    assert table.last_ts(table.rows([77], create=False)).tolist() == [int(ts[199])]
    got = table.update_many(np.full(100, 77), ts[200:], vals[200:])
    want = det.score_detail(vals[200:], ts[200:])
    np.testing.assert_allclose(got.score, want.score, rtol=0, atol=TOL)
    assert table.checkpoint(77) == pack(det.state_dict())


def test_foreign_or_corrupt_checkpoint_is_refused_and_changes_nothing() -> None:
    table = table_for(create("default"))
    assert table is not None
    with pytest.raises(DetectorError, match="not 'adaptive'"):
        table.restore(1, pack(create("cusum").state_dict()))
    with pytest.raises(DetectorError, match="another config"):
        table.restore(1, pack(create("adaptive", bins=24).state_dict()))
    with pytest.raises(DetectorError, match="corrupt"):
        table.restore(1, b"RLC1 nonsense")
    assert len(table) == 0 and 1 not in table
    with pytest.raises(DetectorError, match="no state for series 1"):
        table.checkpoint(1)


def test_new_series_mid_stream_and_growth() -> None:
    table = table_for(create("default"), capacity=2)
    assert table is not None
    ref: dict[int, Detector] = {}
    rng = np.random.default_rng(5)
    ts = T0
    # Each round brings points of the known series plus brand-new ones: rows grow by doubling.
    for rnd in range(6):
        ids = np.arange(1, 3 * (rnd + 1) + 1, dtype=np.int64)
        for _ in range(40):
            ts += MIN
            vals = rng.normal(100.0, 3.0, len(ids))
            got = table.update_many(ids, np.full(len(ids), ts), vals)
            want = [
                ref.setdefault(int(s), create("default")).update(ts, float(v))
                for s, v in zip(ids, vals, strict=True)
            ]
            np.testing.assert_allclose(got.score, want, rtol=0, atol=TOL)
    assert len(table) == 18 and table.capacity >= 18
    assert table.capacity in (32, 64)  # doubled from 2, not grown one row at a time
    for s, det in ref.items():
        assert table.checkpoint(s) == pack(det.state_dict())
        assert table.n_seen(s) == det.n_seen


def test_nan_values_are_counted_and_band_still_given() -> None:
    table = table_for(create("default"))
    assert table is not None
    n = 200
    ts = T0 + MIN * np.arange(n, dtype=np.int64)
    vals = np.random.default_rng(2).normal(10, 1, n)
    vals[150:160] = np.nan
    det = create("default")
    want = det.score_detail(vals, ts)
    got = table.update_many(np.full(n, 3), ts, vals)
    np.testing.assert_allclose(got.score, want.score, rtol=0, atol=TOL)
    np.testing.assert_allclose(got.expected, want.expected, rtol=0, atol=TOL)
    assert np.isfinite(got.expected[150:160]).all()  # a missing point still has its forecast
    assert (got.score[150:160] == 0).all()
    assert table.n_seen(3) == n and table.checkpoint(3) == pack(det.state_dict())


def test_last_ts_changed_ids_and_rows() -> None:
    table = table_for(create("default"))
    assert table is not None
    assert table.rows([9, 8], create=False).tolist() == [-1, -1]
    rows = table.rows([9, 8, 9])
    assert rows.tolist() == [1, 0, 1]  # new ids get rows in id order, repeated ids share one
    assert table.last_ts(rows).tolist() == [NO_TS] * 3
    assert table.state_dict(9)["last_ts"] is None and table.state_dict(9)["n_seen"] == 0
    table.update_many([9, 9, 7], [5000, 3000, 100], [1.0, 2.0, 3.0])
    # Points are taken in the order given; last_ts is the newest seen, as Detector.update has it.
    assert table.last_ts(table.rows([9, 7], create=False)).tolist() == [5000, 100]
    assert sorted(table.changed_ids()) == [7, 9]
    assert table.changed_ids() == []
    table.update_many([8], [1], [0.0])
    assert table.changed_ids(clear=False) == [8] and table.changed_ids() == [8]


def test_empty_and_bad_input() -> None:
    table = table_for(create("default"))
    assert table is not None
    d = table.update_many([], [], [])
    assert len(d) == 0 and len(table) == 0
    with pytest.raises(DataError, match="2 series ids, 1 timestamps"):
        table.update_many([1, 2], [1], [1.0, 2.0])
    with pytest.raises(DataError, match="one-dimensional"):
        table.update_many([[1]], [[1]], [[1.0]])
    with pytest.raises(DataError, match="not in the table"):
        table.update_rows(np.array([0]), np.array([1]), np.array([1.0]))


def test_only_families_with_a_kernel_loop_get_a_table() -> None:
    assert table_for(create("cusum")) is None
    assert table_for(create("mad")) is None
    assert isinstance(table_for(create("adaptive")), DetectorTable)

    class Tweaked(Adaptive):
        pass

    # A subclass may run another kernel: it streams through its own objects.
    assert table_for(Tweaked()) is None
    with pytest.raises(DetectorError, match="needs an adaptive detector"):
        AdaptiveTable(create("cusum"))


def test_update_rows_refuses_rows_not_in_the_table_and_mismatched_lengths() -> None:
    table = table_for(create("default"))
    assert table is not None
    table.update_many([4], [T0], [1.0])
    unknown = table.rows([5], create=False)  # -1: must not write into some other row
    with pytest.raises(DataError, match="^update_rows: a row is not in the table$"):
        table.update_rows(unknown, np.array([T0]), np.array([1.0]))
    with pytest.raises(DataError, match="^update_rows: 2 rows, 1 timestamps, 2 values$"):
        table.update_rows(np.array([0, 0]), np.array([T0]), np.array([1.0, 2.0]))
    with pytest.raises(DataError, match="^update_rows: 1 rows, 1 timestamps, 2 values$"):
        table.update_rows(np.array([0]), np.array([T0]), np.array([1.0, 2.0]))
    assert table.n_seen(4) == 1 and table.n_seen(5) == 0 and 5 not in table


def test_a_checkpoint_taken_is_not_changed_by_later_points() -> None:
    table = table_for(create("default"))
    assert table is not None
    ts = T0 + MIN * np.arange(60, dtype=np.int64)
    vals = np.random.default_rng(1).normal(10, 1, 60)
    table.update_many(np.full(30, 8), ts[:30], vals[:30])
    taken = table.state_dict(8)
    blob = pack(taken)
    table.update_many(np.full(30, 8), ts[30:], vals[30:])
    assert pack(taken) == blob != table.checkpoint(8)


def test_restoring_a_known_series_overwrites_its_row_and_is_not_a_change() -> None:
    table = table_for(create("default"))
    assert table is not None
    ts = T0 + MIN * np.arange(80, dtype=np.int64)
    vals = np.random.default_rng(3).normal(10, 1, 80)
    table.update_many(np.full(40, 6), ts[:40], vals[:40])
    blob = table.checkpoint(6)
    table.update_many(np.r_[np.full(40, 6), [2]], np.r_[ts[40:], T0], np.r_[vals[40:], 1.0])
    table.restore(6, blob)  # back to the point of the checkpoint
    assert len(table) == 2 and table.series_ids == [6, 2]
    assert table.checkpoint(6) == blob and table.n_seen(6) == 40
    # A restored series has nothing new to save; the other one still has.
    assert table.changed_ids() == [2]
    table.restore(9, blob)
    assert table.changed_ids() == [] and table.n_seen(9) == 40


def test_rows_added_by_growth_have_seen_nothing() -> None:
    table = table_for(create("default"), capacity=1)
    assert table is not None
    table.update_many([1], [T0], [1.0])
    rows = table.rows([1, 2, 3, 4])  # grows the arrays
    assert table.capacity >= 4
    assert table.last_ts(rows).tolist() == [T0, NO_TS, NO_TS, NO_TS]
    for s in (2, 3, 4):
        assert table.state_dict(s)["last_ts"] is None and table.n_seen(s) == 0
        assert table.checkpoint(s) == pack(create("default").state_dict())
    assert table.changed_ids() == [1]


# -- forgetting idle series ------------------------------------------------------------------


def _fresh_state() -> bytes:
    return pack(create("default").state_dict())


@settings(max_examples=40)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_series=st.integers(1, 10),
    capacity=st.sampled_from([1, 8, 64]),
    data=st.data(),
)
def test_forgetting_leaves_the_others_exact_and_a_forgotten_series_starts_afresh(
    seed: int, n_series: int, capacity: int, data: st.DataObject
) -> None:
    # The reference table never forgets: each life of a series (from its start or from its last
    # forgetting) is a series of its own there, so it scores as a fresh row would.
    rng = np.random.default_rng(seed)
    ids = ((np.arange(1, n_series + 1) * 2_654_435_761 + seed) % 2**40).tolist()  # distinct
    sid, ts, val = _interleave(_series(n_series, 40, seed), ids, seed)
    n_ticks = data.draw(st.integers(1, 8), "ticks")
    cuts = np.sort(rng.choice(np.arange(len(sid) + 1), n_ticks - 1))
    bounds = [0, *cuts.tolist(), len(sid)]
    table = table_for(create("default"), capacity=capacity)
    ref = table_for(create("default"))
    assert table is not None and ref is not None
    life = dict.fromkeys(ids, 0)
    held: set[int] = set()

    def alias(s: int) -> int:
        return s + life[s] * 2**41  # the reference's id of this life of s

    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        got = table.update_many(sid[a:b], ts[a:b], val[a:b])
        want = ref.update_many([alias(s) for s in sid[a:b].tolist()], ts[a:b], val[a:b])
        for k in ("score", "expected", "lower", "upper", "component"):
            np.testing.assert_array_equal(getattr(got, k), getattr(want, k), err_msg=k)
        held |= set(sid[a:b].tolist())
        gone = data.draw(st.lists(st.sampled_from([*ids, -7]), max_size=n_series), "forget")
        before = table.capacity
        assert table.forget(gone) == len(held & set(gone))
        for s in set(gone) & set(ids):
            life[s] += 1
        held -= set(gone)
        assert sorted(table.series_ids) == sorted(held) and len(table) == len(held)
        after, floor = table.capacity, max(64, capacity)
        assert after == before or floor <= after < before  # shrinks, but not below the floor
        assert (after < before) == (len(table) < before // 4 and before > floor)
        assert -7 not in table
        clear = data.draw(st.booleans(), "clear")
        live = {alias(s): s for s in held}
        ref_changed = {live[r] for r in ref.changed_ids(clear) if r in live}
        assert sorted(table.changed_ids(clear)) == sorted(ref_changed)
        order = sorted(held)
        want_ck = ref.checkpoints([alias(s) for s in order])
        assert table.checkpoints(order) == {s: want_ck[alias(s)] for s in order}
        for s in order:
            assert table.n_seen(s) == ref.n_seen(alias(s))
            assert table.last_ts(table.rows([s], create=False)).tolist() == [
                int(ts[:b][sid[:b] == s].max())
            ]


def test_forgetting_most_rows_shrinks_the_arrays_and_freed_rows_are_fresh() -> None:
    table = table_for(create("default"))
    untouched = table_for(create("default"))
    assert table is not None and untouched is not None
    ids = np.arange(1, 1001, dtype=np.int64)
    for k in range(30):
        v = np.sin(ids * 0.1 + k) + (k == 20) * 9.0
        t = np.full(len(ids), T0 + k * MIN, np.int64)
        table.update_many(ids, t, v)
        untouched.update_many(ids, t, v)
    assert table.capacity >= 1000
    assert table.forget([]) == 0 and table.forget([5000, -1]) == 0 and len(table) == 1000
    assert table.forget(ids[::2]) == 500 and table.capacity >= 1000  # half used: kept
    assert table.forget(ids[1:950:2]) == 475  # 25 of >= 1000 rows used: shrinks, to >= 64
    assert len(table) == 25 and 64 <= table.capacity <= 128
    kept = ids[951::2].tolist()
    assert table.series_ids == kept  # in the order their rows were made
    assert table.checkpoints(kept) == untouched.checkpoints(kept)
    assert sorted(table.changed_ids()) == kept
    # Rows freed by forgetting (shrunk or in place) are like rows never used.
    assert table.forget([kept[0]]) == 1
    rows = table.rows([2, 3, kept[0]])
    assert table.last_ts(rows).tolist() == [NO_TS] * 3
    for s in (2, 3, kept[0]):
        assert table.checkpoint(s) == _fresh_state() and table.n_seen(s) == 0
    assert table.changed_ids() == []
    assert 2 not in untouched or untouched.n_seen(2) == 30
