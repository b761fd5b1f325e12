"""The store protocol, on every backend (tests/store/conftest.py: DuckDB and PostgreSQL):
series, bounded samples, checkpoints, findings, log progress, closing, threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relia.errors import ConfigError, DataError, StoreError
from relia.incidents.model import FindingKind, Severity
from relia.notify.outbox import OutboxItem, dedup_key
from relia.signals import MetricBatch
from relia.store import SeriesInfo, Store
from relia.store.base import LogCounts
from relia.store.migrations import latest_version, load_migrations
from tests.store.backends import batch, finding, reopen_empty

# -- opening and closing ----------------------------------------------------------------------


def test_a_fresh_store_is_a_store_at_the_latest_schema(store: Store, backend: str) -> None:
    assert isinstance(store, Store)
    if backend == "postgresql":
        from relia.store.postgres import packaged_migrations_dir

        latest = latest_version(load_migrations(packaged_migrations_dir()))
    else:
        latest = latest_version(load_migrations())
    assert store.schema_version == latest >= 5
    assert store.samples_per_series == 5  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", [0, -3, True, 2.5, "10"])
def test_samples_per_series_must_be_a_positive_integer(
    make_store: Callable[..., Any], bad: Any
) -> None:
    with pytest.raises(ConfigError, match="samples_per_series"):
        make_store(bad)


def test_close_is_idempotent_and_later_use_is_a_store_error(make_store: Callable[..., Any]) -> None:
    s = make_store()
    s.close()
    s.close()
    assert s.closed
    with pytest.raises(StoreError, match="closed"):
        s.list_series()
    with pytest.raises(StoreError, match="closed"):
        s.append_samples(batch([1], [1], [1.0]))


def test_context_manager_closes(make_store: Callable[..., Any]) -> None:
    with make_store() as s:
        pass
    assert s.closed


# -- series -----------------------------------------------------------------------------------


def test_upsert_series_keeps_known_ids_and_lists_in_name_then_label_order(store: Store) -> None:
    store.upsert_series(
        [
            (3, "mem", {}),
            (2, "cpu", {"host": "b"}),
            (1, "cpu", {"host": "a", "dc": "x"}),
            (4, "cpu", {"host": "a"}),
            (5, "cpu", {}),
        ]
    )
    # A known id keeps its first registration, within a call and across calls.
    store.upsert_series([(3, "renamed", {"a": "1"}), (6, "disk", {}), (6, "other", {})])
    infos = store.list_series()
    assert [(i.series_id, i.name) for i in infos] == [
        (5, "cpu"),
        (1, "cpu"),  # (dc, x) < (host, a)
        (4, "cpu"),
        (2, "cpu"),
        (6, "disk"),
        (3, "mem"),
    ]
    assert infos[1].labels == {"dc": "x", "host": "a"}
    assert all(i.first_ts is None and i.last_ts is None and i.n_samples == 0 for i in infos)


def test_series_labels_are_canonical(store: Store) -> None:
    store.upsert_series([(1, "up", {"__name__": "up", "job": "node"})], seen_at=7)
    assert store.list_series() == [SeriesInfo(1, "up", {"job": "node"}, seen_at=7)]


def test_list_series_reports_sample_range_and_count(store: Store) -> None:
    store.upsert_series([(1, "a", {}), (2, "b", {})], seen_at=9)
    store.append_samples(batch([1, 1, 2, 1], [30, 10, 5, 20], [1.0, 2.0, 3.0, np.nan]))
    assert store.list_series() == [
        SeriesInfo(1, "a", {}, first_ts=10, last_ts=30, n_samples=3, seen_at=9),
        SeriesInfo(2, "b", {}, first_ts=5, last_ts=5, n_samples=1, seen_at=9),
    ]


def test_series_info_is_one_series_as_the_list_says_it(store: Store) -> None:
    store.upsert_series([(1, "a", {"x": "1"}), (2, "b", {}), (3, "c", {})], seen_at=9)
    store.append_samples(batch([1, 1, 2, 1], [30, 10, 5, 20], [1.0, 2.0, 3.0, np.nan]))
    listed = {i.series_id: i for i in store.list_series()}
    assert store.series_info(1) == listed[1] == SeriesInfo(1, "a", {"x": "1"}, 10, 30, 3, 9)
    assert store.series_info(3) == listed[3]  # no samples: no range, a count of 0
    assert store.series_info(4) is None


# -- seen_at and idle series forgetting ---------------------------------------------------------


def seen(store: Store) -> dict[int, int | None]:
    return {i.series_id: i.seen_at for i in store.list_series()}


def test_upsert_series_sets_seen_at_given_or_the_wall_clock(store: Store) -> None:
    store.upsert_series([(1, "a", {})], seen_at=1_000)
    before = time.time_ns() // 1_000_000
    store.upsert_series([(2, "b", {})])
    after = time.time_ns() // 1_000_000
    got = seen(store)
    assert got[1] == 1_000
    assert got[2] is not None and before <= got[2] <= after


def test_upsert_of_a_known_id_raises_its_seen_at_but_never_lowers_it(store: Store) -> None:
    store.upsert_series([(1, "a", {"k": "v"}), (2, "b", {})], seen_at=5_000)
    store.upsert_series([(1, "renamed", {}), (2, "b", {}), (3, "c", {})], seen_at=2_000)
    assert seen(store) == {1: 5_000, 2: 5_000, 3: 2_000}
    store.upsert_series([(1, "renamed", {}), (3, "c", {})], seen_at=9_000)
    assert seen(store) == {1: 9_000, 2: 5_000, 3: 9_000}
    (one,) = [i for i in store.list_series() if i.series_id == 1]
    assert (one.name, one.labels) == ("a", {"k": "v"})  # name and labels stay as registered


def test_mark_series_seen_raises_only_and_ignores_unknown_ids(store: Store) -> None:
    store.upsert_series([(1, "a", {}), (2, "b", {}), (3, "c", {})], seen_at=5_000)
    store.mark_series_seen({1: 8_000, 2: 1_000, 99: 9_000, -4: 1})
    assert seen(store) == {1: 8_000, 2: 5_000, 3: 5_000}
    store.mark_series_seen({})
    assert seen(store) == {1: 8_000, 2: 5_000, 3: 5_000}
    assert [i.series_id for i in store.list_series()] == [1, 2, 3]  # nothing was added


def test_mark_series_seen_rejects_what_is_not_a_mapping_of_ints(store: Store) -> None:
    with pytest.raises(DataError, match="seen"):
        store.mark_series_seen([(1, 2)])  # type: ignore[arg-type]
    with pytest.raises(DataError, match="seen"):
        store.mark_series_seen({1: "soon"})  # type: ignore[dict-item]


def test_mark_series_seen_takes_many_ids_in_one_call(store: Store) -> None:
    n = 20_000
    store.upsert_series([(i, f"m{i}", {}) for i in range(n)], seen_at=1_000)
    store.mark_series_seen({i: 1_000 + i for i in range(0, 2 * n, 2)})
    got = seen(store)
    assert len(got) == n
    assert all(got[i] == (1_000 + i if i % 2 == 0 else 1_000) for i in range(n))


def test_forget_series_deletes_the_series_seen_before_the_cut_with_their_rows(
    store: Store,
) -> None:
    store.upsert_series([(1, "old", {}), (2, "edge", {}), (3, "new", {})], seen_at=1_000)
    store.mark_series_seen({2: 5_000, 3: 9_000})
    store.append_samples(batch([1, 1, 2, 3, 3], [10, 20, 10, 30, 40], [1, 2, 3, 4, 5]))
    store.save_checkpoints({1: b"one", 2: b"two", 3: b"three"})
    store.add_findings([finding("f1", 10, 20, series_id=1), finding("f3", 30, 40, series_id=3)])

    assert store.forget_series(5_000) == 1  # seen exactly at the cut: kept
    assert seen(store) == {2: 5_000, 3: 9_000}
    assert len(store.samples(1)[0]) == 0
    assert store.samples(2)[0].tolist() == [10]
    assert store.samples(3)[0].tolist() == [30, 40]
    assert store.load_checkpoints() == {2: b"two", 3: b"three"}
    assert {f.id for f in store.findings()} == {"f1", "f3"}  # findings stay

    assert store.forget_series(5_000) == 0  # nothing older is left
    assert store.forget_series(9_001) == 2
    assert store.list_series() == [] and store.load_checkpoints() == {}
    assert {f.id for f in store.findings()} == {"f1", "f3"}


def test_forget_series_in_an_empty_store_deletes_nothing(store: Store) -> None:
    assert store.forget_series(2**62) == 0


def test_a_forgotten_series_registered_again_is_a_new_one(make_store: Callable[..., Any]) -> None:
    s = make_store(4)
    s.upsert_series([(1, "cpu", {"h": "a"}), (2, "mem", {})], seen_at=1_000)
    # Enough samples that series 1 has been trimmed (and the DuckDB store keeps trim marks).
    for start in range(0, 40, 5):
        ts = list(range(start, start + 5))
        s.append_samples(batch([1] * 5 + [2] * 5, ts + ts, [float(t) for t in ts] * 2))
    s.save_checkpoints({1: b"old"})
    s.mark_series_seen({2: 2_000})
    assert s.forget_series(1_500) == 1

    s.mark_series_seen({1: 9_000})  # a forgotten id is unknown: nothing is registered
    assert [i.series_id for i in s.list_series()] == [2]
    s.upsert_series([(1, "cpu", {"h": "b"})], seen_at=3_000)
    # Back-filled ts older than what it had before it was forgotten: stored as new samples.
    s.append_samples(batch([1, 1], [3, 1], [30.0, 10.0]))
    assert s.samples(1)[0].tolist() == [1, 3]
    assert s.list_series()[0] == SeriesInfo(1, "cpu", {"h": "b"}, 1, 3, 2, seen_at=3_000)
    for start in range(100, 140, 5):  # grows past its bound: trimmed to the newest again
        ts = list(range(start, start + 5))
        s.append_samples(batch([1] * 5, ts, [float(t) for t in ts]))
    ts, value = s.samples(1)
    assert 4 <= len(ts) <= 4 + 4 // 8 and ts[-1] == 139
    assert ts.tolist() == list(range(140 - len(ts), 140))
    assert s.load_checkpoints() == {}
    s.save_checkpoints({1: b"new"})
    assert s.load_checkpoints() == {1: b"new"}
    assert s.samples(2)[0][-1] == 39  # the series that stayed is untouched


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ((1, "a"), "expected a tuple"),
        ("abc", "expected a tuple"),
        (("1", "a", {}), "series_id must be an integer"),
        ((2**63, "a", {}), "does not fit in int64"),
        ((1, "", {}), "name must be a non-empty string"),
        ((1, "a", [("k", "v")]), "labels must be a mapping"),
        # PostgreSQL cannot keep a NUL (text, jsonb); both stores refuse it alike, as bad data.
        ((1, "a\x00b", {}), "its metric name holds a NUL"),
        ((1, "a", {"k\x00": "v"}), "the label name 'k\\\\x00' holds a NUL"),
        ((1, "a", {"job": "a\x00b"}), "the value of label 'job' holds a NUL"),
    ],
)
def test_upsert_series_rejects_bad_entries(store: Store, entry: Any, message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        store.upsert_series([(9, "ok", {}), entry])
    assert "series[1]" in str(info.value)
    assert store.list_series() == []  # nothing of the call was written


# -- samples ----------------------------------------------------------------------------------


def test_samples_in_time_order_with_since_until_and_limit(store: Store) -> None:
    store.append_samples(batch([1, 1, 1, 1, 2], [40, 10, 30, 20, 15], [4, 1, 3, 2, 9]))
    ts, value = store.samples(1)
    assert ts.dtype == np.int64 and value.dtype == np.float64
    assert ts.tolist() == [10, 20, 30, 40] and value.tolist() == [1, 2, 3, 4]
    assert store.samples(1, since=20, until=30)[0].tolist() == [20, 30]
    assert store.samples(1, limit=2)[0].tolist() == [30, 40]
    assert store.samples(1, since=10, until=30, limit=2)[1].tolist() == [2, 3]
    assert store.samples(1, limit=0)[0].tolist() == []
    ts, value = store.samples(99)
    assert len(ts) == len(value) == 0 and ts.dtype == np.int64 and value.dtype == np.float64


def test_same_series_and_ts_replaces_and_last_in_batch_wins(store: Store) -> None:
    store.append_samples(batch([1, 1], [10, 20], [1.0, 2.0]))
    store.append_samples(batch([1, 1, 1], [20, 20, 30], [5.0, 6.0, 7.0]))
    ts, value = store.samples(1)
    assert ts.tolist() == [10, 20, 30] and value.tolist() == [1.0, 6.0, 7.0]


def test_nan_is_kept(store: Store) -> None:
    store.append_samples(batch([1, 1], [1, 2], [np.nan, 1.0]))
    value = store.samples(1)[1]
    assert np.isnan(value[0]) and value[1] == 1.0


def test_each_series_keeps_its_newest_samples(store: Store) -> None:
    # store keeps 5 per series
    store.append_samples(batch([1] * 8 + [2] * 3, list(range(8)) + [0, 1, 2], list(range(11))))
    assert store.samples(1)[0].tolist() == [3, 4, 5, 6, 7]
    assert store.samples(2)[0].tolist() == [0, 1, 2]
    # Older than what is kept: written and trimmed away at once; the rest is untouched.
    store.append_samples(batch([1, 2], [0, 3], [0.0, 0.0]))
    assert store.samples(1)[0].tolist() == [3, 4, 5, 6, 7]
    assert store.samples(2)[0].tolist() == [0, 1, 2, 3]
    store.append_samples(batch([1, 1], [100, 50], [1.0, 2.0]))
    assert store.samples(1)[0].tolist() == [5, 6, 7, 50, 100]


def test_a_late_sample_older_than_what_was_trimmed_is_not_kept(
    make_store: Callable[..., Any],
) -> None:
    # keep = 16: the DuckDB store may hold up to an eighth more between trims, but a back-filled
    # sample older than samples already dropped must go at once, as PostgreSQL's trim does: else
    # a point shows before a hole of samples that were received and dropped.
    with make_store(16) as s:
        s.upsert_series([(7, "m", {})])
        for t in range(40):
            s.append_samples(batch([7], [t], [float(t)]))
        s.append_samples(batch([7], [5], [5.0]))
        assert s.samples(7)[0].tolist() == list(range(24, 40))
        (info,) = s.list_series()
        assert (info.first_ts, info.n_samples) == (24, 16)
        s.append_samples(batch([7], [30], [0.5]))  # a replacement within what is kept
        ts, value = s.samples(7)
        assert ts.tolist() == list(range(24, 40)) and value[30 - 24] == 0.5


def test_append_rejects_what_is_not_a_batch(store: Store) -> None:
    with pytest.raises(DataError, match="expects a MetricBatch"):
        store.append_samples((np.array([1]), np.array([1]), np.array([1.0])))  # type: ignore[arg-type]
    store.append_samples(MetricBatch.empty())
    assert store.samples(1)[0].tolist() == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"series_id": "1"}, "series_id must be an integer"),
        ({"series_id": 1, "since": 1.5}, "since must be an integer"),
        ({"series_id": 1, "limit": -1}, "limit must be >= 0"),
    ],
)
def test_samples_rejects_bad_arguments(store: Store, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(DataError, match=message):
        store.samples(**kwargs)


def test_the_whole_int64_range_is_accepted_as_bounds(store: Store) -> None:
    lo, hi = -(2**63), 2**63 - 1
    store.append_samples(batch([1, 1, 1], [lo, 0, hi], [1.0, 2.0, 3.0]))
    assert store.samples(1, since=lo, until=hi)[0].tolist() == [lo, 0, hi]
    assert store.samples(1, since=hi)[1].tolist() == [3.0]
    assert store.samples(1, until=lo)[1].tolist() == [1.0]
    store.add_findings([finding("f", 0, hi)])
    assert [f.id for f in store.findings(since=hi)] == ["f"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    keep=st.integers(1, 6),
    batches=st.lists(
        st.lists(
            st.tuples(
                st.integers(0, 3),
                st.integers(-5, 25),
                st.floats(allow_nan=True, allow_infinity=True),
            ),
            max_size=30,
        ),
        min_size=1,
        max_size=5,
    ),
)
def test_property_last_n_unique_timestamps_with_last_written_value(
    store: Store, keep: int, batches: list[list[tuple[int, int, float]]]
) -> None:
    model: dict[int, dict[int, float]] = {}
    with reopen_empty(store, keep) as s:
        s.upsert_series([(sid, "m", {"s": str(sid)}) for sid in range(4)])
        for rows in batches:
            s.append_samples(
                batch([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
            )
            for r in rows:
                model.setdefault(r[0], {})[r[1]] = r[2]
        for sid in range(4):
            want_ts = sorted(model.get(sid, {}))[-keep:]
            want_value = [model[sid][t] for t in want_ts]
            ts, value = s.samples(sid)
            assert ts.tolist() == want_ts
            np.testing.assert_array_equal(value, np.array(want_value, np.float64))
        counts = {i.series_id: i.n_samples for i in s.list_series()}
        assert counts == {sid: min(keep, len(model.get(sid, {}))) for sid in range(4)}


# -- checkpoints ------------------------------------------------------------------------------


def test_checkpoints_replace_older_ones(store: Store) -> None:
    assert store.load_checkpoints() == {}
    store.save_checkpoints({1: b"one", 2: b"\x00\xff"})
    store.save_checkpoints({1: b"newer", 3: bytearray(b"")})  # type: ignore[dict-item]
    assert store.load_checkpoints() == {1: b"newer", 2: b"\x00\xff", 3: b""}


def test_bad_checkpoint_saves_none_of_the_call(store: Store) -> None:
    with pytest.raises(DataError, match="checkpoint of series 2 must be bytes"):
        store.save_checkpoints({1: b"ok", 2: "text"})  # type: ignore[dict-item]
    with pytest.raises(DataError, match="series_id must be an integer"):
        store.save_checkpoints({"x": b"ok"})  # type: ignore[dict-item]
    assert store.load_checkpoints() == {}


# -- findings ---------------------------------------------------------------------------------


def test_finding_round_trips_exactly(store: Store) -> None:
    f = finding(
        "f1",
        100,
        200,
        kind=FindingKind.SLO,
        severity=Severity.CRITICAL,
        score=0.9375,
        series_id=None,
        key="slo:checkout",
        evidence={
            "observed": 3.5,
            "expected": {"value": 1.0, "band": [0.5, 1.5]},
            "parts": [{"name": "mad", "score": 0.25}, None, True],
            "note": "ünïcode",
            "big": 2**62,
        },
    )
    assert store.add_findings([f]) == 1
    (back,) = store.findings()
    assert back == f
    assert isinstance(back.kind, FindingKind) and isinstance(back.severity, Severity)


def test_numpy_values_in_evidence_are_stored_as_plain_json(store: Store) -> None:
    f = finding("f1", 1, 2, evidence={"x": np.float64(1.5), "n": np.int64(3), "a": np.arange(2)})
    store.add_findings([f])
    assert store.findings()[0].evidence == {"x": 1.5, "n": 3, "a": [0, 1]}


def test_evidence_that_is_not_json_is_a_data_error(store: Store) -> None:
    with pytest.raises(DataError, match="finding bad: evidence cannot be stored as JSON"):
        store.add_findings([finding("ok", 1, 2), finding("bad", 1, 2, evidence={"x": object()})])
    assert store.findings() == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "b\x00"),
        ("key", 'cpu{host="a\x00"}'),
        ("summary", "a\x00b"),
        ("evidence", {"labels": {"job": "a\x00b"}}),
        ("evidence", {"k\x00": 1}),
    ],
)
def test_a_nul_in_a_finding_is_a_data_error_on_both_stores(
    store: Store, field: str, value: Any
) -> None:
    # PostgreSQL cannot keep a NUL (text, jsonb): both stores refuse it alike, and it is bad
    # data (a DataError), never a store that is away (a StoreError, which callers retry).
    bad = finding("b", 1, 2, **{field: value})
    with pytest.raises(DataError, match=f"findings\\[1\\]: its {field} holds a NUL") as info:
        store.add_findings([finding("ok", 1, 2), bad])
    assert not isinstance(info.value, StoreError)
    assert store.findings() == []


def test_findings_after_gives_each_write_once_in_store_order(store: Store) -> None:
    # What the HA leader's feed reads: every finding stored, new or replaced, after the last
    # number it read, whatever the findings' times (a backfilled one included).
    assert store.findings_seq() == 0 and store.findings_after(0) == []
    store.add_findings([finding("b", 50, 60), finding("a", 10, 20)])
    store.add_findings([finding("old", -(10**9), -(10**9) + 5)])
    first = store.findings_after(0)
    assert [(n, f.id) for n, f in first] == [(1, "a"), (2, "b"), (3, "old")]
    assert store.findings_seq() == 3
    grown = finding("a", 10, 40)
    store.add_findings([grown])
    assert store.findings_after(3) == [(4, grown)]  # stored again: after everything before
    assert [f.id for _, f in store.findings_after(1, limit=2)] == ["b", "old"]
    assert store.findings_after(4) == [] and store.findings_seq() == 4


def test_add_findings_upserts_by_id_and_counts_new(store: Store) -> None:
    assert store.add_findings([finding("a", 10, 20), finding("b", 15, 25)]) == 2
    grown = finding("a", 10, 40, score=0.95, severity=Severity.CRITICAL)
    # the same id twice in one call counts once; the last one given wins
    assert store.add_findings([finding("a", 10, 30), grown, finding("c", 1, 2)]) == 1
    got = {f.id: f for f in store.findings()}
    assert set(got) == {"a", "b", "c"}
    assert got["a"] == grown
    assert store.add_findings([]) == 0


def test_findings_newest_first_with_since_series_and_limit(store: Store) -> None:
    store.add_findings(
        [
            finding("old", 0, 10, series_id=1),
            finding("mid", 5, 20, series_id=2),
            finding("late_start", 15, 20, series_id=1),
            finding("new", 25, 30, series_id=None),
        ]
    )
    assert [f.id for f in store.findings()] == ["new", "late_start", "mid", "old"]
    assert [f.id for f in store.findings(since=20)] == ["new", "late_start", "mid"]
    assert [f.id for f in store.findings(since=21)] == ["new"]
    assert [f.id for f in store.findings(series_id=1)] == ["late_start", "old"]
    assert [f.id for f in store.findings(since=11, series_id=1)] == ["late_start"]
    assert [f.id for f in store.findings(limit=2)] == ["new", "late_start"]
    assert store.findings(limit=0) == []
    with pytest.raises(DataError, match="limit must be >= 0"):
        store.findings(limit=-1)


def test_findings_until_is_applied_before_the_limit(store: Store) -> None:
    # A bound applied after LIMIT would let later findings push those in the range out.
    store.add_findings(
        [finding("in", 10, 20)] + [finding(f"later{k}", 100 + k, 200 + k) for k in range(5)]
    )
    assert [f.id for f in store.findings(until=20, limit=2)] == ["in"]
    assert [f.id for f in store.findings(until=100, limit=2)] == ["later0", "in"]
    assert [f.id for f in store.findings(since=20, until=99, series_id=1)] == ["in"]


def test_findings_page_on_after_a_key_in_their_order(store: Store) -> None:
    # Ties on end, then on start, are broken by the id, ascending.
    store.add_findings(
        [
            finding("a", 5, 30),
            finding("c", 10, 30),
            finding("b", 10, 30),
            finding("d", 0, 20),
            finding("e", 0, 40),
        ]
    )
    order = [f.id for f in store.findings()]
    assert order == ["e", "b", "c", "a", "d"]
    for n, f in enumerate(store.findings()):
        after = store.findings(before=(f.end, f.start, f.id))
        assert [g.id for g in after] == order[n + 1 :]
    assert [f.id for f in store.findings(before=(30, 10, "b"), limit=1)] == ["c"]
    with pytest.raises(DataError, match="before"):
        store.findings(before=(30, "x", "b"))  # type: ignore[arg-type]


def test_findings_by_ids_whatever_their_age_newest_first(store: Store) -> None:
    store.add_findings([finding("old", 0, 10), finding("mid", 5, 20), finding("new", 25, 30)])
    # However many findings ended since: an incident's findings are fetched by id, not by time.
    store.add_findings([finding(f"later{i}", 100 + i, 200 + i) for i in range(50)])
    got = store.findings_by_ids(["old", "new", "gone", "old"])
    assert [f.id for f in got] == ["new", "old"]
    assert got[1] == finding("old", 0, 10)
    assert store.findings_by_ids([]) == []
    # One id is not a collection of ids (a str would be read as its characters).
    with pytest.raises(DataError, match="ids must be a collection of str, got str"):
        store.findings_by_ids("old")
    with pytest.raises(DataError, match="ids must be str, got 7"):
        store.findings_by_ids(["old", 7])  # type: ignore[list-item]
    with pytest.raises(DataError, match="ids must be a collection of str, got bytes"):
        store.findings_by_ids(b"old")  # type: ignore[arg-type]


def test_findings_by_ids_with_the_same_end_are_ordered_by_start_newest_first(
    store: Store,
) -> None:
    store.add_findings([finding("a-early", 5, 20), finding("b-late", 15, 20)])
    got = store.findings_by_ids(["a-early", "b-late"])
    assert [f.id for f in got] == ["b-late", "a-early"]


def test_add_findings_rejects_non_findings(store: Store) -> None:
    with pytest.raises(DataError, match=r"findings\[1\]: expected a Finding"):
        store.add_findings([finding("a", 1, 2), {"id": "b"}])  # type: ignore[list-item]


# -- log progress -----------------------------------------------------------------------------


def test_log_counts_add_up_and_states_are_replaced(make_store: Callable[..., Any]) -> None:
    store = make_store(10)
    counts = LogCounts(
        ["a", "a", "a", "b"],
        np.array([0, 0, 60, 0], np.int64),
        np.array([1, 1, 2, 1], np.int64),
        np.array([3, 4, 5, 6], np.int64),
    )
    assert len(store.log_counts()) == 0 and store.load_log_states() == {}
    store.commit_log_progress({"a": b"s1"}, counts)
    store.commit_log_progress({"a": b"s2", "b": b"x"}, counts)
    got = store.log_counts()
    assert got.file == ["a", "a", "b"]
    assert got.window_start.tolist() == [0, 60, 0]
    assert got.template_id.tolist() == [1, 2, 1]
    assert got.count.tolist() == [14, 10, 12]
    assert got.count.dtype == np.int64
    assert store.log_counts("a", since=60).count.tolist() == [10]
    assert store.load_log_states() == {"a": b"s2", "b": b"x"}
    # Only the newest samples_per_series windows of a file stay; other files are untouched.
    many = LogCounts(
        ["a"] * 20, np.arange(20, dtype=np.int64) * 60, np.zeros(20, np.int64),
        np.ones(20, np.int64),
    )  # fmt: skip
    store.commit_log_progress({}, many)
    kept = store.log_counts("a")
    assert sorted(set(kept.window_start.tolist())) == [60 * i for i in range(10, 20)]
    assert store.log_counts("b").count.tolist() == [12]
    store.commit_log_progress({}, LogCounts.empty())  # nothing to do


def test_log_progress_is_all_or_nothing(store: Store) -> None:
    ok = LogCounts(["a"], np.array([0]), np.array([1]), np.array([2]))
    store.commit_log_progress({"a": b"one"}, ok)
    with pytest.raises(DataError):
        store.commit_log_progress({"a": "not bytes"}, ok)  # type: ignore[dict-item]
    # A failure inside the transaction (a NULL file name) rolls the state back too.
    broken = LogCounts([None], np.array([0]), np.array([1]), np.array([2]))  # type: ignore[list-item]
    with pytest.raises(StoreError):
        store.commit_log_progress({"a": b"two"}, broken)
    assert store.load_log_states() == {"a": b"one"}
    assert store.log_counts().count.tolist() == [2]


def test_a_missing_file_name_among_others_is_a_store_error_and_writes_nothing(
    store: Store,
) -> None:
    counts = LogCounts(["a", None], np.array([0, 0]), np.array([1, 1]), np.array([2, 2]))  # type: ignore[list-item]
    with pytest.raises(StoreError):
        store.commit_log_progress({"a": b"state"}, counts)
    assert store.load_log_states() == {}
    assert len(store.log_counts()) == 0


# -- threads ----------------------------------------------------------------------------------


def test_readers_see_whole_writes_while_one_thread_writes(make_store: Callable[..., Any]) -> None:
    n_series, per_round, rounds, keep = 20, 7, 40, 50
    errors: list[BaseException] = []
    done = threading.Event()
    # The DuckDB store trims in batches: a series may hold up to an eighth more than `keep`.
    max_kept = keep + keep // 8
    with make_store(keep) as s:
        s.upsert_series([(i, "m", {"i": str(i)}) for i in range(n_series)])

        def write() -> None:
            try:
                for r in range(rounds):
                    ts = np.arange(r * per_round, (r + 1) * per_round, dtype=np.int64)
                    s.append_samples(
                        MetricBatch(
                            np.repeat(np.arange(n_series, dtype=np.int64), per_round),
                            np.tile(ts, n_series),
                            np.tile(ts.astype(np.float64), n_series),
                        )
                    )
                    s.save_checkpoints({i: str(r).encode() for i in range(n_series)})
                    s.add_findings([finding(f"f{r}", r, r + 1)])
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)
            finally:
                done.set()

        def read() -> None:
            try:
                while not done.is_set():
                    infos = s.list_series()
                    # every write touches all series in one transaction: never half seen
                    assert len({i.last_ts for i in infos}) == 1, infos
                    assert all(i.n_samples <= max_kept for i in infos), infos
                    ts, value = s.samples(3)
                    assert len(ts) <= max_kept and np.all(np.diff(ts) > 0)
                    np.testing.assert_array_equal(ts.astype(np.float64), value)
                    assert len(set(s.load_checkpoints().values())) <= 1
                    s.findings(limit=5)
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=write)] + [
            threading.Thread(target=read) for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        assert all(keep <= i.n_samples <= max_kept for i in s.list_series())
        ts0 = s.samples(0)[0]
        assert ts0[-1] == rounds * per_round - 1
        assert np.array_equal(ts0, np.arange(rounds * per_round - len(ts0), rounds * per_round))
        assert len(s.findings()) == rounds


def test_close_while_threads_read_ends_them_with_store_errors(
    make_store: Callable[..., Any],
) -> None:
    s = make_store(2000)
    s.append_samples(MetricBatch.for_series(1, np.arange(1000), np.zeros(1000)))
    outcomes: list[BaseException | None] = []
    started = threading.Barrier(5)

    def read() -> None:
        started.wait()
        try:
            while True:
                assert len(s.samples(1)[0]) == 1000
                s.list_series()
        except BaseException as e:
            outcomes.append(e)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    started.wait()
    s.close()
    for t in threads:
        t.join(timeout=30)
    assert len(outcomes) == 4
    assert all(isinstance(e, StoreError) and "closed" in str(e) for e in outcomes), outcomes


# -- notification outbox ----------------------------------------------------------------------


def _item(sink: str, incident_id: str, version: int, at: int, **kw: Any) -> OutboxItem:
    fields: dict[str, Any] = {
        "id": dedup_key(sink, incident_id, version),
        "sink": sink,
        "incident_id": incident_id,
        "version": version,
        "payload": {"title": f"{incident_id} v{version}"},
        "created_at": at,
        "next_attempt_at": at,
    }
    fields.update(kw)
    return OutboxItem(**fields)


def test_an_id_repeated_in_one_enqueue_keeps_the_first_item(store: Store) -> None:
    first = _item("am", "i1", 1, 100)
    again = _item("am", "i1", 1, 100, payload={"title": "other"})
    assert store.enqueue_notifications([first, again]) == 1
    assert store.due_notifications("am", 100, 10) == [first]


def test_an_item_is_due_from_its_next_attempt_on(store: Store) -> None:
    item = _item("am", "i1", 1, 100, next_attempt_at=500)
    store.enqueue_notifications([item])
    assert store.due_notifications("am", 499, 10) == []
    assert store.due_notifications("am", 500, 10) == [item]


def test_delivered_and_failed_items_stay_so(store: Store) -> None:
    done, given_up = _item("am", "i1", 1, 100), _item("am", "i2", 1, 100)
    store.enqueue_notifications([done, given_up])
    store.mark_delivered([done.id], 200)
    store.mark_attempt_failed(given_up.id, 1, 200, "HTTP 400", give_up=True)
    # A late report about either changes nothing: no redelivery, no revival, no recount.
    store.mark_attempt_failed(done.id, 2, 300, "timeout")
    store.mark_attempt_failed(given_up.id, 2, 300, "timeout")
    store.mark_delivered([given_up.id], 400)
    assert store.due_notifications("am", 10**12, 10) == []
    assert store.outbox_counts() == {"am": {"pending": 0, "delivered": 1, "failed": 1}}
