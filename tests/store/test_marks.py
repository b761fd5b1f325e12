"""Trim marks: cutting a series at a remembered ts leaves exactly the rows the marks promise.

The store-level properties run on DuckDB (the only store that uses the marks); the protocol's own
trimming contract is in test_store.py for every backend."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from relia.signals import MetricBatch, series_runs
from relia.store import DuckDBStore, open_store
from relia.store._marks import TrimMarks
from relia.store.duckdb import _trim_at


def _append(marks: TrimMarks, stored: dict[int, list[int]], sid: list[int], ts: list[int]) -> None:
    """Feed one append to the marks and to a plain model of what is stored (sorted ts lists)."""
    order = np.lexsort((np.array(ts, np.int64), np.array(sid, np.int64)))
    s = np.array(sid, np.int64)[order]
    t = np.array(ts, np.int64)[order]
    ids, first, n_rows = series_runs(s)
    newest = np.array([stored[k][-1] if stored.get(k) else -(2**63) for k in ids.tolist()])
    marks.appended(marks.rows(ids), t[first] > newest, first, n_rows, t)
    for k, x in zip(s.tolist(), t.tolist(), strict=True):
        stored[k] = sorted({*stored.get(k, []), x})


@settings(max_examples=80, deadline=None)
@given(
    keep=st.integers(1, 100),
    steps=st.lists(
        st.tuples(st.integers(0, 2), st.integers(1, 60), st.booleans()), min_size=1, max_size=40
    ),
)
def test_a_known_cut_leaves_exactly_the_rows_it_promises(
    keep: int, steps: list[tuple[int, int, bool]]
) -> None:
    marks = TrimMarks(keep)
    stored: dict[int, list[int]] = {}
    clock = 1_000
    for k, n, back in steps:
        if back and stored.get(k):
            # a back-fill between stored samples: the marks of k must stop being trusted
            ts = [stored[k][0] - 1 - i * 2 for i in range(n)]
        else:
            ts = [clock + i for i in range(n)]
            clock += n
        _append(marks, stored, [k] * n, ts)
        rows = marks.rows(np.array([k], np.int64))
        have = np.array([len(stored[k])], np.int64)
        if have[0] <= keep:
            continue
        known, cutoff, after = marks.cuts(rows, have)
        if known[0]:
            left = [x for x in stored[k] if x >= cutoff[0]]
            assert len(left) == after[0]
            assert keep <= after[0] < keep + marks.step
            stored[k] = left
        else:
            assert after[0] == keep
            stored[k] = stored[k][-keep:]  # what the exact SQL does


def test_steady_appends_cut_at_marks_and_a_reopen_cuts_exactly_until_marks_return() -> None:
    keep = 64  # step 2: a cut at a mark can leave keep + 1, the exact cut never does
    with tempfile.TemporaryDirectory() as tmp:
        sid = 12345
        after_trim: set[int] = set()
        with open_store(Path(tmp), samples_per_series=keep) as s:
            prev = 0
            for t in range(400):
                s.append_samples(MetricBatch([sid], [t], [float(t)]))
                n = len(s.samples(sid)[0])
                if n < prev:
                    after_trim.add(n)
                    got = s.samples(sid)[0]
                    assert got.tolist() == list(range(t + 1 - n, t + 1))  # the newest, no gap
                prev = n
            assert keep + 1 in after_trim <= {keep, keep + 1}  # keep + 1: cut at a mark
        with open_store(Path(tmp), samples_per_series=keep) as s:
            after_trim.clear()
            prev = len(s.samples(sid)[0])
            for t in range(400, 400 + keep):  # fewer than keep new samples: no usable mark
                s.append_samples(MetricBatch([sid], [t], [float(t)]))
                n = len(s.samples(sid)[0])
                if n < prev:
                    after_trim.add(n)
                prev = n
            assert after_trim == {keep}


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 2), st.integers(1, 50), st.sampled_from(["fwd", "back", "same"])),
        min_size=1,
        max_size=30,
    )
)
def test_store_trims_only_the_oldest_and_counts_what_it_keeps(
    steps: list[tuple[int, int, str]],
) -> None:
    keep = 70  # step 2
    with DuckDBStore(":memory:", samples_per_series=keep) as s:
        s.upsert_series([(k, "m", {"k": str(k)}) for k in range(3)])
        model: dict[int, dict[int, float]] = {}
        clock = 0
        for i, (k, n, how) in enumerate(steps):
            have = sorted(model.get(k, {}))
            if how == "back" and have:
                ts = [have[0] - 1 - 3 * j for j in range(n)]
            elif how == "same" and have:
                ts = have[-n:]  # replaces stored rows
            else:
                ts = list(range(clock, clock + n))
                clock += n
            s.append_samples(MetricBatch([k] * len(ts), ts, [float(i)] * len(ts)))
            merged = model.setdefault(k, {})
            merged.update({t: float(i) for t in ts})
            got_ts, got_v = s.samples(k)
            whole = sorted(merged)
            if len(whole) > _trim_at(k, keep):
                assert keep <= len(got_ts) <= keep + keep // 32
            elif how == "back" and have and len(whole) > keep:
                # A back-fill over keep is trimmed exactly at once (as PostgreSQL trims).
                assert len(got_ts) == keep
            else:
                assert len(got_ts) == len(whole)
            # only the oldest go, every kept value is the last written
            assert got_ts.tolist() == whole[len(whole) - len(got_ts) :]
            assert got_v.tolist() == [merged[t] for t in got_ts.tolist()]
            model[k] = {t: merged[t] for t in got_ts.tolist()}
        counts = {i.series_id: i.n_samples for i in s.list_series()}
        assert counts == {k: len(model.get(k, {})) for k in range(3)}


def test_a_forgotten_series_frees_its_row_for_the_next_new_id() -> None:
    marks = TrimMarks(64)
    stored: dict[int, list[int]] = {}
    for start in range(0, 300, 30):
        _append(marks, stored, [1] * 30 + [2] * 30 + [3] * 30, [*range(start, start + 30)] * 3)
    rows = marks.rows(np.array([1, 2, 3], np.int64))
    assert sorted(rows.tolist()) == [0, 1, 2]
    marks.forget(np.array([2, 42], np.int64))  # 42 was never seen: ignored
    # A new id takes the freed row, with no position and no usable marks: a fresh series.
    (row,) = marks.rows(np.array([7], np.int64)).tolist()
    assert row == rows[1]
    known, _, _ = marks.cuts(np.array([row], np.int64), np.array([100], np.int64))
    assert not known.any()
    # Once the free rows are used up, new ids get new rows; the others kept theirs.
    assert marks.rows(np.array([8, 1, 9, 3], np.int64)).tolist() == [3, rows[0], 4, rows[2]]
    assert marks.cuts(rows[[0]], np.array([300], np.int64))[0].all()  # series 1's marks hold
    # Several freed rows, handed out in one call beside known and brand-new ids.
    marks.forget(np.array([1, 3, 8], np.int64))
    got = marks.rows(np.array([10, 7, 11, 12, 13, 14], np.int64)).tolist()
    assert got[1] == row and len(set(got)) == 6
    assert sorted(set(got) - {row}) == sorted({rows[0], rows[2], 3, 5, 6})


def test_a_forgotten_series_that_comes_back_is_trimmed_exactly() -> None:
    with DuckDBStore(":memory:", samples_per_series=64) as s:
        for start in range(0, 400, 40):
            ts = list(range(start, start + 40))
            s.append_samples(MetricBatch(*(np.array(a) for a in ([1] * 40, ts, [1.0] * 40))))
        s.upsert_series([(1, "cpu", {})], seen_at=1)
        assert s.forget_series(2) == 1
        assert len(s.samples(1)[0]) == 0
        s.upsert_series([(1, "cpu", {})], seen_at=3)
        # Back in time from what it had: a forward append for the new series (nothing stored).
        for start in range(-1000, -600, 40):
            ts = list(range(start, start + 40))
            s.append_samples(MetricBatch(*(np.array(a) for a in ([1] * 40, ts, [2.0] * 40))))
        ts, value = s.samples(1)
        assert 64 <= len(ts) <= 64 + 8 and ts[-1] == -601
        assert ts.tolist() == list(range(-600 - len(ts), -600)) and (value == 2.0).all()
