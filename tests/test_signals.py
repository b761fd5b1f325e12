from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relia.errors import DataError
from relia.signals import (
    LogBatch,
    MetricBatch,
    SeriesIndex,
    describe,
    is_sorted_by_series,
    series_key,
    series_runs,
)


def test_series_ids_are_stable_across_indexes() -> None:
    a, b = SeriesIndex(), SeriesIndex()
    sid = a.get_or_add("cpu", {"host": "x", "cpu": "0"})
    assert b.get_or_add("cpu", {"cpu": "0", "host": "x"}) == sid
    assert a.get_or_add("cpu", {"host": "x", "cpu": "1"}) != sid
    assert a.labels(sid) == {"cpu": "0", "host": "x"}
    assert a.name(sid) == "cpu"
    assert 0 <= sid < 2**63
    assert a.find("cpu", {"host": "x", "cpu": "0"}) == sid
    with pytest.raises(DataError, match="unknown series"):
        a.key(12345)


def test_describe_is_promql_like() -> None:
    assert describe(series_key("up", {"job": "a", "instance": "b"})) == 'up{instance="b",job="a"}'
    assert describe(series_key("up")) == "up"


def test_metric_batch_validates_and_splits() -> None:
    with pytest.raises(DataError, match="differ in length"):
        MetricBatch(np.zeros(2, np.int64), np.zeros(3, np.int64), np.zeros(2))
    batch = MetricBatch(
        np.array([2, 1, 2, 1]), np.array([20, 10, 10, 5]), np.array([np.nan, 1.0, 2.0, 3.0])
    )
    parts = {sid: (ts.tolist(), v.tolist()) for sid, ts, v in batch.split()}
    assert parts[1] == ([5, 10], [3.0, 1.0])
    assert parts[2][0] == [10, 20] and np.isnan(parts[2][1][1])
    assert len(MetricBatch.concat([batch, MetricBatch.empty()])) == 4
    assert list(MetricBatch.empty().split()) == []


def test_log_batch_columns_must_match() -> None:
    with pytest.raises(DataError, match="message"):
        LogBatch(np.zeros(2, np.int64), ["a", "b"], ["x"])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-3, 3), st.integers(0, 4)), max_size=30),
    st.booleans(),
)
def test_sorting_once_and_runs_agree_with_numpy(rows: list[tuple[int, int]], presort: bool) -> None:
    sid = np.array([r[0] for r in rows], np.int64)
    ts = np.array([r[1] for r in rows], np.int64)
    b = MetricBatch(sid, ts, np.arange(len(rows), dtype=np.float64))
    if presort:
        b = b.sorted()
    order = np.lexsort((b.ts, b.series_id))
    assert is_sorted_by_series(b.series_id, b.ts) == bool((order == np.arange(len(b))).all())
    s = b.sorted()
    # Stable: equal (series, ts) keep their arrival order (the value is the arrival index).
    assert s.value.tolist() == b.value[order].tolist()
    assert s.sorted() is s
    ids, first, counts = series_runs(s.series_id)
    want_ids, want_first, want_counts = np.unique(
        s.series_id, return_index=True, return_counts=True
    )
    assert ids.tolist() == want_ids.tolist()
    assert first.tolist() == want_first.tolist()
    assert counts.tolist() == want_counts.tolist()
