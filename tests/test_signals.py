from __future__ import annotations

import numpy as np
import pytest

from relia.errors import DataError
from relia.signals import LogBatch, MetricBatch, SeriesIndex, describe, series_key


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
