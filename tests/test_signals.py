from __future__ import annotations

import random

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


def test_label_order_and_name_label_do_not_change_the_series() -> None:
    index = SeriesIndex()
    sid = index.get_or_add("up", {"job": "a", "instance": "b"})
    assert index.get_or_add("up", {"instance": "b", "job": "a"}) == sid
    # A label set that still carries __name__ (as Prometheus hands it) is the same series.
    assert index.get_or_add("up", {"__name__": "up", "instance": "b", "job": "a"}) == sid
    assert index.labels(sid) == {"instance": "b", "job": "a"}
    assert len(index) == 1


def test_a_label_with_an_empty_value_is_no_label_as_in_prometheus() -> None:
    # Prometheus' data model: an empty label value is the same as the label not being there, so
    # a scrape page writing job="" and one leaving job out give one series.
    index = SeriesIndex()
    sid = index.get_or_add("up", {"instance": "b"})
    assert index.get_or_add("up", {"instance": "b", "job": ""}) == sid
    assert index.labels(sid) == {"instance": "b"}
    assert describe(series_key("up", {"job": "", "instance": "b"})) == 'up{instance="b"}'
    assert len(index) == 1


def test_label_values_differing_in_case_or_whitespace_are_different_series() -> None:
    index = SeriesIndex()
    ids = {index.get_or_add("up", {"job": v}) for v in ("api", "API", "api ", " api", "a pi")}
    assert len(ids) == 5
    assert len({index.get_or_add("up", {k: "x"}) for k in ("job", "Job", "job ")}) == 3
    assert index.labels(index.get_or_add("up", {"job": "api "})) == {"job": "api "}


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.dictionaries(st.sampled_from("abc"), st.sampled_from(["x", "X", "x ", ""]), max_size=3),
        min_size=1,
        max_size=8,
    ),
    st.randoms(use_true_random=False),
)
def test_ids_do_not_depend_on_registration_order(
    label_sets: list[dict[str, str]], rnd: random.Random
) -> None:
    a, b = SeriesIndex(), SeriesIndex()
    want = [a.get_or_add("m", labels) for labels in label_sets]
    shuffled = list(enumerate(label_sets))
    rnd.shuffle(shuffled)
    for i, labels in shuffled:
        reordered = dict(reversed(list(labels.items())))
        assert b.get_or_add("m", reordered) == want[i]
    assert sorted(a) == sorted(b) and len(a) == len(b) == len(set(want))


def test_series_ids_are_the_same_in_another_process() -> None:
    import os
    import subprocess
    import sys

    code = (
        "from relia.signals import SeriesIndex;"
        "print(SeriesIndex().get_or_add('cpu', {'host': 'x', 'cpu': '0'}))"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert int(out.stdout) == SeriesIndex().get_or_add("cpu", {"cpu": "0", "host": "x"})


def test_ids_restored_from_the_store_win() -> None:
    index = SeriesIndex()
    hashed = index.get_or_add("up", {"job": "a"})  # e.g. decoded while the WAL was replayed
    index.add(42, "up", {"job": "a"})  # the id the store knows this series by
    index.add(7, "down", {"__name__": "down"})
    assert index.get_or_add("up", {"job": "a"}) == 42
    assert index.find("up", {"job": "a"}) == 42
    assert index.name(42) == "up" and index.labels(42) == {"job": "a"}
    assert index.get_or_add("down") == 7 and index.labels(7) == {}
    assert 7 in index and 42 in index and hashed != 42


def test_index_membership_listing_and_find_do_not_register() -> None:
    index = SeriesIndex()
    assert len(index) == 0 and list(index) == [] and index.items() == []
    assert index.find("up", {"job": "a"}) is None
    assert len(index) == 0
    a = index.get_or_add("up", {"job": "a"})
    b = index.get_or_add("up", {"job": "b"})
    index.get_or_add("up", {"job": "a"})
    assert len(index) == 2
    assert a in index and b in index and 12345 not in index
    assert sorted(index) == sorted([a, b])
    assert sorted(index.items()) == sorted(
        [(a, ("up", (("job", "a"),))), (b, ("up", (("job", "b"),)))]
    )


def test_metric_batch_rejects_mismatched_or_nested_columns() -> None:
    with pytest.raises(DataError, match="differ in length"):
        MetricBatch(np.zeros(2, np.int64), np.zeros(2, np.int64), np.zeros(3))
    with pytest.raises(DataError, match="one-dimensional"):
        MetricBatch(np.zeros((2, 1), np.int64), np.zeros((2, 1), np.int64), np.zeros((2, 1)))


def test_metric_batch_columns_are_int64_int64_float64() -> None:
    batches = [
        MetricBatch(np.array([1, 2]), np.array([10, 20]), np.array([1, 2])),
        MetricBatch(np.array([1], np.int32), np.array([10], np.int32), np.array([1], np.float32)),
        MetricBatch.empty(),
        MetricBatch.for_series(3, [10, 20], [1, 2]),
        MetricBatch.concat([]),
    ]
    for b in batches:
        assert (b.series_id.dtype, b.ts.dtype, b.value.dtype) == (
            np.dtype(np.int64),
            np.dtype(np.int64),
            np.dtype(np.float64),
        )
    # Milliseconds since the epoch do not fit in 32 bits.
    big = MetricBatch(np.array([1]), np.array([1_700_000_000_123]), np.array([0.1]))
    assert big.ts.tolist() == [1_700_000_000_123] and big.value.tolist() == [0.1]


def test_for_series_and_concat_keep_rows_aligned() -> None:
    one = MetricBatch.for_series(7, [10, 20], [1.0, np.nan])
    assert one.series_id.tolist() == [7, 7] and one.ts.tolist() == [10, 20]
    assert len(MetricBatch.for_series(7, [], [])) == 0
    two = MetricBatch.for_series(9, [5], [3.0])
    both = MetricBatch.concat([one, two])
    assert both.series_id.tolist() == [7, 7, 9]
    assert both.ts.tolist() == [10, 20, 5]
    assert both.value[[0, 2]].tolist() == [1.0, 3.0] and np.isnan(both.value[1])
    assert len(MetricBatch.concat([])) == 0


def test_describe_escapes_label_values_so_two_series_never_read_the_same() -> None:
    # A finding's id is made from this text: were two series to read the same, one's findings
    # would overwrite the other's.
    forged = describe(series_key("m", {"a": 'x",b="y'}))
    plain = describe(series_key("m", {"a": "x", "b": "y"}))
    assert plain == 'm{a="x",b="y"}'
    assert forged != plain
    assert forged == 'm{a="x\\",b=\\"y"}'
    assert describe(series_key("m", {"a": "back\\slash\nline"})) == 'm{a="back\\\\slash\\nline"}'


# -- the cap on series (max_series) ----------------------------------------------------------


def test_an_index_at_its_limit_refuses_new_series_and_keeps_known_ones() -> None:
    index = SeriesIndex(max_series=2)
    a = index.get_or_add("cpu", {"host": "a"}, source="s")
    b = index.get_or_add("cpu", {"host": "b"}, source="s")
    assert a is not None and b is not None
    assert index.get_or_add("cpu", {"host": "c"}, source="s") is None
    assert index.get_or_add("mem", source="t") is None
    assert index.find("cpu", {"host": "c"}) is None
    assert len(index) == 2
    # Known series keep their ids, whatever their label order.
    assert index.get_or_add("cpu", {"host": "a"}) == a
    assert index.get_or_add("cpu", {"host": "b"}, source="s") == b
    assert index.refused() == {"s": 1, "t": 1}


def test_an_index_without_a_limit_refuses_nothing() -> None:
    index = SeriesIndex()
    assert all(index.get_or_add("m", {"i": str(i)}) is not None for i in range(1000))
    assert index.refused() == {}


def test_series_loaded_from_the_store_are_never_refused() -> None:
    index = SeriesIndex(max_series=1)
    index.add(11, "a")
    index.add(12, "b")  # over the limit: accepted before, kept
    assert len(index) == 2
    assert index.get_or_add("a") == 11 and index.get_or_add("b") == 12
    assert index.get_or_add("c") is None


@pytest.mark.parametrize("bad", [0, -1])
def test_the_limit_must_be_positive(bad: int) -> None:
    with pytest.raises(ValueError, match="max_series"):
        SeriesIndex(max_series=bad)


def test_threads_registering_at_once_never_pass_the_limit() -> None:
    import threading

    limit = 500
    index = SeriesIndex(max_series=limit)
    got: list[list[int | None]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def register(k: int) -> None:
        start.wait()
        # Overlapping names: several threads race for the same new series.
        for i in range(400):
            got[k].append(index.get_or_add("m", {"i": str((i * 7 + k * 50) % 1200)}))

    threads = [threading.Thread(target=register, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(index) == limit
    ids = {sid for g in got for sid in g if sid is not None}
    assert len(ids) == limit
    # A series one thread was given an id for is never refused to another.
    assert all(
        index.get_or_add("m", {"i": str(i)}) in ids
        for i in range(1200)
        if index.find("m", {"i": str(i)}) is not None
    )
    assert sum(index.refused().values()) == sum(g.count(None) for g in got)


def test_refusals_are_logged_once_then_at_most_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    index = SeriesIndex(max_series=1, clock=lambda: now[0])
    index.get_or_add("kept")
    with caplog.at_level("WARNING", logger="relia.signals"):
        for i in range(5):
            assert index.get_or_add("new", {"i": str(i)}, source="remote_write") is None
        now[0] = 59.0
        index.get_or_add("new", {"i": "x"})
        assert len(caplog.records) == 1
        first = caplog.records[0].getMessage()
        assert "max_series is 1" in first and "RELIA_MAX_SERIES" in first
        assert "1 new series refused" in first and "'remote_write'" in first
        now[0] = 60.0
        index.get_or_add("new", {"i": "y"}, source="scrape")
        assert len(caplog.records) == 2
        # The second line counts every refusal since the first.
        assert "6 new series refused" in caplog.records[1].getMessage()
        index.get_or_add("kept")  # a known series: no refusal, no line
        now[0] = 200.0
        index.get_or_add("kept")
        assert len(caplog.records) == 2
    assert index.refused() == {"remote_write": 5, "": 1, "scrape": 1}


def test_forgotten_series_free_their_place_and_come_back_under_the_same_id() -> None:
    index = SeriesIndex(max_series=2)
    a = index.get_or_add("cpu", {"host": "a"})
    b = index.get_or_add("cpu", {"host": "b"})
    assert a is not None and b is not None
    assert index.get_or_add("cpu", {"host": "c"}) is None
    assert index.forget([a, 12345]) == 1  # an unknown id is ignored
    assert a not in index and len(index) == 1
    assert index.find("cpu", {"host": "a"}) is None
    # Its place is free: a new series is taken, and the forgotten one, named again, is new too.
    c = index.get_or_add("cpu", {"host": "c"})
    assert c is not None
    assert index.get_or_add("cpu", {"host": "a"}) is None  # the limit holds again
    index.forget([c])
    assert index.get_or_add("cpu", {"host": "a"}) == a  # ids are hashes of the key
    assert index.get_or_add("cpu", {"host": "b"}) == b


def test_a_forgotten_series_is_still_named_until_the_next_forget() -> None:
    index = SeriesIndex()
    a = index.get_or_add("cpu", {"host": "a"})
    b = index.get_or_add("cpu", {"host": "b"})
    assert a is not None and b is not None
    index.forget([a])
    # A sample resolved to its id just before it was forgotten can still be named and stored.
    assert index.key(a) == ("cpu", (("host", "a"),))
    assert a not in index
    index.add(a, "cpu", {"host": "a"})  # the engine takes it back
    assert a in index and index.find("cpu", {"host": "a"}) == a
    index.forget([b])
    index.forget([])
    with pytest.raises(DataError, match="unknown series id"):
        index.key(b)  # the tombstone lasts one forget


def test_describe_quotes_names_that_are_not_legacy_ones_as_prometheus_3_does() -> None:
    from relia.signals import describe

    assert describe(series_key("up", {"job": "a"})) == 'up{job="a"}'  # legacy: unchanged
    assert describe(series_key("a:b_c", {})) == "a:b_c"
    assert describe(series_key("my metric", {"job": "a"})) == '{"my metric",job="a"}'
    assert describe(series_key("kc", {"label-name": 'x"y'})) == 'kc{"label-name"="x\\"y"}'
    assert describe(series_key('kc{job="a"}', {})) != describe(series_key("kc", {"job": "a"}))
    assert describe(series_key("log-session", {"f": "x"}), quote_name=False) == 'log-session{f="x"}'
