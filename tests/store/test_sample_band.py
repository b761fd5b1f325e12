"""Schema 2: samples carry the detector's score, expected value and band (on every backend;
the DuckDB migration tests are DuckDB's, the PostgreSQL ones are in test_postgres.py)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest

from relia.engine.executor import ScoredPoints
from relia.errors import DataError
from relia.signals import MetricBatch
from relia.store import DuckDBStore, Store
from relia.store.base import SampleScores, ScoredSamples
from relia.store.migrations import load_migrations

NAN = np.nan


def scored(sid: list[int], ts: list[int], value: list[float], k: float = 1.0) -> ScoredPoints:
    """ScoredPoints whose band is a function of the value (so each row is recognisable)."""
    v = np.array(value, np.float64)
    n = len(v)
    exp = k * v + 0.5
    return ScoredPoints(
        np.array(sid, np.int64),
        np.array(ts, np.int64),
        v,
        np.linspace(0.0, 0.9, n),
        exp,
        exp - 2.0,
        exp + 2.0,
        np.full(n, -1, np.int8),
    )


def test_migration_0002_adds_nullable_band_columns() -> None:
    m = load_migrations()
    assert [x.name for x in m[:2]] == ["initial", "sample_band"]
    with duckdb.connect(":memory:") as conn:
        for x in m:
            conn.execute(x.sql)
        cols = conn.execute(
            "SELECT column_name, data_type, is_nullable FROM duckdb_columns() "
            "WHERE table_name = 'samples' ORDER BY column_index"
        ).fetchall()
    assert cols[3:] == [
        ("score", "DOUBLE", True),
        ("expected", "DOUBLE", True),
        ("lower", "DOUBLE", True),
        ("upper", "DOUBLE", True),
    ]


def test_scored_points_are_sample_scores(store: Store) -> None:
    p: SampleScores = scored([1], [1], [1.0])  # the engine's output is accepted as it is
    store.append_samples(MetricBatch(p.series_id, p.ts, np.ones(1)), p)
    assert store.scored_samples(1).expected.tolist() == [1.5]


def test_band_is_stored_matched_by_series_and_ts(store: Store) -> None:
    b = MetricBatch(np.array([2, 1, 1, 2]), np.array([10, 20, 10, 20]), np.array([1.0, 2, 3, 4]))
    # Scores in another order than the batch, with a warm-up NaN band and a point it lacks.
    p = scored([1, 1, 2], [10, 20, 20], [3.0, 2.0, 4.0])
    p = ScoredPoints(
        p.series_id,
        p.ts,
        p.value,
        p.score,
        np.array([NAN, 2.5, 4.5]),
        p.lower,
        p.upper,
        p.component,
    )
    store.append_samples(b, p)
    one = store.scored_samples(1)
    assert isinstance(one, ScoredSamples) and len(one) == 2
    assert one.ts.tolist() == [10, 20] and one.value.tolist() == [3.0, 2.0]
    np.testing.assert_array_equal(one.expected, [NAN, 2.5])  # NaN in, NULL stored, NaN out
    np.testing.assert_array_equal(one.lower, [1.5, 0.5])
    np.testing.assert_array_equal(one.upper, [5.5, 4.5])
    np.testing.assert_array_equal(one.score, [0.0, 0.45])
    two = store.scored_samples(2)
    assert two.ts.tolist() == [10, 20]
    np.testing.assert_array_equal(two.expected, [NAN, 4.5])  # (2, 10) was not scored
    np.testing.assert_array_equal(two.score, [NAN, 0.9])
    # samples() is unchanged by the band
    ts, value = store.samples(2)
    assert ts.tolist() == [10, 20] and value.tolist() == [1.0, 4.0]


def test_without_scores_the_band_is_null(store: Store) -> None:
    store.append_samples(MetricBatch.for_series(1, [1, 2], [5.0, NAN]))
    got = store.scored_samples(1)
    np.testing.assert_array_equal(got.value, [5.0, NAN])
    for c in (got.score, got.expected, got.lower, got.upper):
        assert np.isnan(c).all() and c.dtype == np.float64


def test_a_repeated_sample_keeps_its_band_unless_rescored(store: Store) -> None:
    store.append_samples(
        MetricBatch.for_series(1, [1, 2, 3], [1.0, 2, 3]), scored([1] * 3, [1, 2, 3], [1.0, 2, 3])
    )
    # A source repeats ts 2 and 3 (the detector skips them: no scores) and sends a new ts 4.
    again = MetricBatch.for_series(1, [2, 3, 4], [2.0, 30.0, 4.0])
    store.append_samples(again, scored([1], [4], [4.0]))
    got = store.scored_samples(1)
    assert got.value.tolist() == [1.0, 2.0, 30.0, 4.0]
    np.testing.assert_array_equal(got.expected, [1.5, 2.5, 3.5, 4.5])
    # Rescored (a detector that started afresh), the new output wins, warm-up NaN included.
    p = scored([1], [3], [30.0], k=0.0)
    p = ScoredPoints(
        p.series_id, p.ts, p.value, p.score, np.array([NAN]), p.lower, p.upper, p.component
    )
    store.append_samples(MetricBatch.for_series(1, [3], [30.0]), p)
    got = store.scored_samples(1)
    np.testing.assert_array_equal(got.expected, [1.5, 2.5, NAN, 4.5])
    np.testing.assert_array_equal(got.lower, [-0.5, 0.5, -1.5, 2.5])


def test_duplicates_in_one_batch_take_the_last_scores(store: Store) -> None:
    b = MetricBatch.for_series(1, [5, 5], [1.0, 2.0])
    p = scored([1, 1], [5, 5], [1.0, 2.0])
    store.append_samples(b, p)
    got = store.scored_samples(1)
    assert got.value.tolist() == [2.0] and got.expected.tolist() == [2.5]


def test_trim_since_until_and_limit_apply_to_the_band(store: Store) -> None:
    ts = list(range(1, 9))
    vals = [float(t) for t in ts]
    store.append_samples(MetricBatch.for_series(1, ts, vals), scored([1] * 8, ts, vals))
    got = store.scored_samples(1)
    assert got.ts.tolist() == [4, 5, 6, 7, 8]  # the newest 5 kept
    np.testing.assert_array_equal(got.expected, got.value + 0.5)
    window = store.scored_samples(1, since=5, until=7)
    assert window.ts.tolist() == [5, 6, 7] and window.upper.tolist() == [7.5, 8.5, 9.5]
    newest = store.scored_samples(1, limit=2)
    assert newest.ts.tolist() == [7, 8] and newest.lower.tolist() == [5.5, 6.5]
    assert len(store.scored_samples(99)) == 0


def test_bad_scores_are_data_errors_and_store_nothing(store: Store) -> None:
    b = MetricBatch.for_series(1, [1, 2], [1.0, 2.0])
    with pytest.raises(DataError, match="scores must have"):
        store.append_samples(b, object())  # type: ignore[arg-type]
    p = scored([1, 1], [1, 2], [1.0, 2.0])
    short = ScoredPoints(
        p.series_id, p.ts, p.value, p.score[:1], p.expected, p.lower, p.upper, p.component
    )
    with pytest.raises(DataError, match="differ in length"):
        store.append_samples(b, short)
    assert len(store.scored_samples(1)) == 0


def test_upgrade_from_schema_1_keeps_samples_with_null_band(tmp_path: Path) -> None:
    v1 = tmp_path / "v1"
    v1.mkdir()
    (v1 / "0001_initial.sql").write_text(load_migrations()[0].sql)
    path = tmp_path / "relia.duckdb"
    with DuckDBStore(path, migrations_dir=v1) as s:
        # Schema 1 has no band: scores are accepted and not stored; reads give NaN.
        s.append_samples(MetricBatch.for_series(1, [1, 2], [1.0, 2.0]), scored([1], [2], [2.0]))
        old = s.scored_samples(1)
        assert old.value.tolist() == [1.0, 2.0] and np.isnan(old.expected).all()
    with DuckDBStore(path) as s:
        assert s.schema_version >= 2
        s.append_samples(MetricBatch.for_series(1, [3], [3.0]), scored([1], [3], [3.0]))
        got = s.scored_samples(1)
        assert got.value.tolist() == [1.0, 2.0, 3.0]
        np.testing.assert_array_equal(got.expected, [NAN, NAN, 3.5])


def test_learned_samples_are_the_scored_ones_after_each_series_start(store: Store) -> None:
    # What a restart after a crash relearns, for many series in one read: per series, the
    # samples from its start on that were stored with a score (a NaN value scored too).
    b = MetricBatch(
        np.array([1, 1, 1, 2, 2, 3, 4]),
        np.array([10, 20, 30, 10, 20, 10, 10]),
        np.array([1.0, NAN, 3, 4, 5, 6, 7]),
    )
    p = scored([1, 1, 1, 2, 3], [10, 20, 30, 20, 10], [0.1, 0.2, 0.3, 0.4, 0.5])
    store.append_samples(b, p)  # (2, 10) and series 4 were stored without scores
    got = store.learned_samples({1: 20, 2: -(2**63), 4: 0, 9: 0})
    assert got.series_id.tolist() == [1, 1, 2]
    assert got.ts.tolist() == [20, 30, 20]
    np.testing.assert_array_equal(got.value, [NAN, 3.0, 5.0])
    for sid, start in ((1, 20), (2, -(2**63))):
        one = store.scored_samples(sid, since=start)  # the same as reading them one by one
        mask = ~np.isnan(one.score)
        assert one.ts[mask].tolist() == got.ts[got.series_id == sid].tolist()
    assert len(store.learned_samples({})) == 0
