"""Versioned migrations: loading, applying in order, upgrading, refusing newer stores."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pytest

from relia.errors import StoreError
from relia.signals import MetricBatch
from relia.store import DuckDBStore, SeriesInfo
from relia.store.migrations import Migration, latest_version, load_migrations

V2 = """
ALTER TABLE series ADD COLUMN note VARCHAR DEFAULT '';
CREATE TABLE annotations (series_id BIGINT, ts BIGINT, text VARCHAR);
"""


def write_dir(path: Path, files: dict[str, str]) -> Path:
    path.mkdir()
    for name, text in files.items():
        (path / name).write_text(text)
    return path


@pytest.fixture
def v1(tmp_path: Path) -> Path:
    return write_dir(tmp_path / "v1", {"0001_initial.sql": load_migrations()[0].sql})


@pytest.fixture
def v2(tmp_path: Path) -> Path:
    return write_dir(
        tmp_path / "v2",
        {"0001_initial.sql": load_migrations()[0].sql, "0002_annotations.sql": V2},
    )


def applied(path: Path) -> list[tuple[int, str]]:
    with duckdb.connect(str(path)) as conn:
        rows = conn.execute(
            "SELECT version, name FROM schema_migrations WHERE applied_at IS NOT NULL ORDER BY 1"
        ).fetchall()
    return [(int(v), str(n)) for v, n in rows]


def test_packaged_migrations_start_at_one_without_gaps() -> None:
    migrations = load_migrations()
    assert migrations[0] == Migration(1, "initial", migrations[0].sql)
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert latest_version(migrations) == len(migrations)
    assert latest_version([]) == 0
    assert "CREATE TABLE samples" in migrations[0].sql


def test_fresh_store_has_every_table() -> None:
    with DuckDBStore(":memory:") as s:
        assert s.schema_version == latest_version(load_migrations())
    with duckdb.connect(":memory:") as conn:
        for m in load_migrations():
            conn.execute(m.sql)
        tables = {r[0] for r in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert {"series", "samples", "checkpoints", "findings"} <= tables


def test_upgrade_from_v1_to_v2_keeps_data_and_applies_only_the_missing(
    tmp_path: Path, v1: Path, v2: Path
) -> None:
    path = tmp_path / "relia.duckdb"
    with DuckDBStore(path, migrations_dir=v1) as s:
        assert s.schema_version == 1
        s.upsert_series([(1, "cpu", {"host": "a"})])
        s.append_samples(MetricBatch.for_series(1, [1, 2], [0.5, 1.5]))
    assert applied(path) == [(1, "initial")]

    with DuckDBStore(path, migrations_dir=v2) as s:
        assert s.schema_version == 2
        assert s.list_series() == [SeriesInfo(1, "cpu", {"host": "a"}, 1, 2, 2)]
        assert s.samples(1)[1].tolist() == [0.5, 1.5]
    assert applied(path) == [(1, "initial"), (2, "annotations")]
    with duckdb.connect(str(path)) as conn:
        assert conn.execute("SELECT note FROM series").fetchall() == [("",)]

    # Reopening applies nothing again (0002 would fail: its table exists).
    with DuckDBStore(path, migrations_dir=v2) as s:
        assert s.schema_version == 2
    assert applied(path) == [(1, "initial"), (2, "annotations")]


def test_store_of_a_newer_relia_is_refused(tmp_path: Path, v1: Path, v2: Path) -> None:
    path = tmp_path / "relia.duckdb"
    DuckDBStore(path, migrations_dir=v2).close()
    with pytest.raises(StoreError, match=r"written by a newer relia \(schema 2 > 1\)") as info:
        DuckDBStore(path, migrations_dir=v1)
    assert str(path) in str(info.value)
    # The refused open let go of the file: the newer code still opens it.
    with DuckDBStore(path, migrations_dir=v2) as s:
        assert s.schema_version == 2


def test_failing_migration_is_rolled_back_whole(tmp_path: Path, v1: Path) -> None:
    path = tmp_path / "relia.duckdb"
    DuckDBStore(path, migrations_dir=v1).close()
    broken = write_dir(
        tmp_path / "broken",
        {
            "0001_initial.sql": load_migrations()[0].sql,
            "0002_broken.sql": "CREATE TABLE half_done (x INT);\nSELEC nonsense;",
        },
    )
    with pytest.raises(StoreError, match="migration 0002_broken failed") as info:
        DuckDBStore(path, migrations_dir=broken)
    assert str(path) in str(info.value)
    assert applied(path) == [(1, "initial")]
    with duckdb.connect(str(path)) as conn:
        names = {r[0] for r in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert "half_done" not in names


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"0001_a.sql": "", "0003_c.sql": ""}, r"without gaps, found \[1, 3\]"),
        ({"0002_b.sql": ""}, r"without gaps, found \[2\]"),
        ({"0001_a.sql": "", "0001_b.sql": ""}, "two migrations have version 1"),
        ({"1_a.sql": ""}, "'1_a.sql' is not named NNNN_name.sql"),
        ({"0001-a.sql": ""}, "is not named NNNN_name.sql"),
    ],
)
def test_bad_migration_directories_are_store_errors(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    directory = write_dir(tmp_path / "m", files)
    with pytest.raises(StoreError, match=message) as info:
        load_migrations(directory)
    assert str(directory) in str(info.value)


def test_other_files_are_ignored_and_order_is_by_version(tmp_path: Path) -> None:
    directory = write_dir(
        tmp_path / "m", {"0002_b.sql": "B", "0001_a.sql": "A", "README.md": "x", "notes.txt": ""}
    )
    assert load_migrations(directory) == [Migration(1, "a", "A"), Migration(2, "b", "B")]


def test_missing_migrations_directory_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="migrations directory does not exist"):
        load_migrations(tmp_path / "absent")
    with pytest.raises(StoreError, match="migrations directory does not exist"):
        DuckDBStore(":memory:", migrations_dir=tmp_path / "absent")


def test_empty_directory_gives_schema_zero(tmp_path: Path) -> None:
    directory = write_dir(tmp_path / "m", {})
    assert load_migrations(directory) == []
    with DuckDBStore(":memory:", migrations_dir=directory) as s:
        assert s.schema_version == 0


def test_upgrade_from_schema_9_gives_stored_series_the_migrations_time(tmp_path: Path) -> None:
    old = write_dir(
        tmp_path / "v9", {f"{m.version:04d}_{m.name}.sql": m.sql for m in load_migrations()[:9]}
    )
    path = tmp_path / "relia.duckdb"
    with DuckDBStore(path, migrations_dir=old) as s:
        assert s.schema_version == 9
        s.upsert_series([(1, "cpu", {"host": "a"})])
        s.append_samples(MetricBatch.for_series(1, [1, 2], [0.5, 1.5]))
        assert s.list_series()[0].seen_at is None  # no such column yet
        assert s.forget_series(2**62) == 0  # nothing can be judged without it
        s.mark_series_seen({1: 5})  # a no-op
    before = time.time_ns() // 1_000_000
    with DuckDBStore(path) as s:
        after = time.time_ns() // 1_000_000
        assert s.schema_version == latest_version(load_migrations()) >= 10
        (info,) = s.list_series()
        assert info.seen_at is not None and before - 1000 <= info.seen_at <= after + 1000
        assert s.forget_series(before - 1000) == 0  # not forgotten for what it was before
        assert s.samples(1)[1].tolist() == [0.5, 1.5]
        s.mark_series_seen({1: info.seen_at + 10})
        assert s.list_series()[0].seen_at == info.seen_at + 10
    assert applied(path)[9] == (10, "series_seen_at")


def test_upgrade_to_schema_11_numbers_the_stored_findings_by_their_last_write(
    tmp_path: Path,
) -> None:
    from tests.store.backends import finding

    old = write_dir(
        tmp_path / "v10", {f"{m.version:04d}_{m.name}.sql": m.sql for m in load_migrations()[:10]}
    )
    path = tmp_path / "relia.duckdb"
    with DuckDBStore(path, migrations_dir=old) as s:
        s.add_findings([finding("b", 1, 2)])
        time.sleep(0.01)  # updated_at orders them
        s.add_findings([finding("a", 1, 2)])
        with pytest.raises(StoreError, match="migration 0011"):
            s.findings_after(0)
    with DuckDBStore(path) as s:
        assert [(n, f.id) for n, f in s.findings_after(0)] == [(1, "b"), (2, "a")]
        s.add_findings([finding("c", 1, 2)])
        assert [(n, f.id) for n, f in s.findings_after(2)] == [(3, "c")]
