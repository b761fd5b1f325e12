"""What only the DuckDB store does: files, directories, locks, reopening a file.

The store protocol itself is tested on every backend in test_store.py."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from relia.errors import StoreError
from relia.signals import MetricBatch
from relia.store import DuckDBStore, SeriesInfo, Store, open_store
from relia.store.duckdb import STORE_FILE
from relia.store.migrations import latest_version, load_migrations
from tests.store.backends import batch, finding


@pytest.fixture
def store() -> Any:
    with DuckDBStore(":memory:", samples_per_series=5) as s:
        yield s


# -- opening ----------------------------------------------------------------------------------


def test_memory_store_has_no_file(store: DuckDBStore) -> None:
    assert isinstance(store, Store)
    assert store.schema_version == latest_version(load_migrations()) >= 1
    assert store.path == ":memory:"


def test_open_store_creates_the_directory(tmp_path: Path) -> None:
    data_dir = tmp_path / "a" / "b"
    with open_store(data_dir, samples_per_series=7) as s:
        assert s.path == str(data_dir / STORE_FILE)
        assert s.samples_per_series == 7
    assert (data_dir / STORE_FILE).is_file()


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most open umask, as a careless service manager may leave it; restored after."""
    old = os.umask(0)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.usefixtures("open_umask")
def test_the_store_is_private_whatever_the_umask(tmp_path: Path) -> None:
    # Series, samples, findings (log lines) and incidents: what a read token guards over HTTP.
    data_dir = tmp_path / "made" / "data"
    with open_store(data_dir) as s:
        s.upsert_series([(1, "m", {"a": "b"})])
        s.append_samples(batch([1], [1_700_000_000_000], [1.0]))
        wal = data_dir / f"{STORE_FILE}.wal"
        assert wal.is_file()  # DuckDB's own WAL, made at the first write after a checkpoint
        assert _mode(wal) == 0o600
    assert _mode(data_dir / STORE_FILE) == 0o600
    assert _mode(data_dir) == _mode(data_dir.parent) == 0o700


def test_open_store_on_a_file_names_it(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(StoreError, match="cannot create the data directory") as info:
        open_store(not_a_dir)
    assert str(not_a_dir) in str(info.value)


@pytest.mark.parametrize("content", [b"", b"this is not a database\n" * 400])
def test_non_duckdb_file_is_a_store_error_naming_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / STORE_FILE
    path.write_bytes(content)
    with pytest.raises(StoreError, match="not a relia store") as info:
        DuckDBStore(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_parent_directory_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / STORE_FILE
    with pytest.raises(StoreError, match="cannot open the store") as info:
        DuckDBStore(path)
    assert str(path) in str(info.value)


def test_file_held_by_another_process_is_a_store_error(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from relia.store import open_store; s = open_store(sys.argv[1]); "
            "print('ready', flush=True); sys.stdin.readline(); s.close()",
            str(tmp_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreError, match="another relia may be running") as info:
            open_store(tmp_path)
        assert str(tmp_path / STORE_FILE) in str(info.value)
        assert f"process {holder.pid}" in str(info.value)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    # Once the other process is gone the store opens.
    with open_store(tmp_path) as s:
        assert s.schema_version >= 1


# -- durability -------------------------------------------------------------------------------


def test_restart_resumes_from_what_was_written(tmp_path: Path) -> None:
    evidence = {"observed": 2.0, "parts": [{"name": "cusum", "score": 0.5}]}
    with open_store(tmp_path, samples_per_series=3) as s:
        version = s.schema_version
        s.upsert_series([(1, "cpu", {"host": "a"})], seen_at=77)
        s.append_samples(batch([1, 1, 1, 1], [1, 2, 3, 4], [1.0, np.nan, 3.0, 4.0]))
        s.save_checkpoints({1: b"state-1", 2: b"state-2"})
        s.add_findings([finding("f", 1, 4, evidence=evidence)])
    with open_store(tmp_path, samples_per_series=3) as s:
        assert s.schema_version == version
        assert s.list_series() == [SeriesInfo(1, "cpu", {"host": "a"}, 2, 4, 3, seen_at=77)]
        ts, value = s.samples(1)
        assert ts.tolist() == [2, 3, 4]
        np.testing.assert_array_equal(value, [np.nan, 3.0, 4.0])
        assert s.load_checkpoints() == {1: b"state-1", 2: b"state-2"}
        assert s.findings() == [finding("f", 1, 4, evidence=evidence)]
        # appending after a restart still replaces and trims
        s.append_samples(batch([1, 1], [4, 5], [40.0, 5.0]))
        assert s.samples(1)[1].tolist() == [3.0, 40.0, 5.0]


def test_trimming_is_batched_within_an_eighth_and_keeps_the_newest(tmp_path: Path) -> None:
    # Trimming reads every row of the series it trims, so the store lets a series grow up to
    # keep + keep // 8 before trimming it back to keep, at a point that differs per series.
    keep, n_series, rounds = 64, 40, 60
    ids = np.arange(n_series, dtype=np.int64) * 7919 + 3
    seen: set[int] = set()
    with open_store(tmp_path, samples_per_series=keep) as s:
        for r in range(rounds):
            ts = np.array([r * 2, r * 2 + 1], np.int64)
            s.append_samples(
                MetricBatch(np.repeat(ids, 2), np.tile(ts, n_series), np.tile([1.0, 2.0], n_series))
            )
            counts = {i.series_id: i.n_samples for i in s.list_series()} if r else {}
            for sid in ids.tolist():
                got, _ = s.samples(sid)
                n = len(got)
                assert min(2 * (r + 1), keep) <= n <= keep + keep // 8
                # always the newest ones, without gaps
                assert np.array_equal(got, np.arange(2 * (r + 1) - n, 2 * (r + 1)))
                seen.add(n)
            assert not counts or all(c >= min(2 * (r + 1), keep) for c in counts.values())
        assert keep in seen and max(seen) > keep  # trimmed, and after some slack
        assert len({len(s.samples(sid)[0]) for sid in ids.tolist()}) > 1  # not in lockstep
    # The counts survive a reopen: the next appends trim from what is stored.
    with open_store(tmp_path, samples_per_series=keep) as s:
        s.append_samples(MetricBatch(ids, np.full(n_series, 10_000, np.int64), np.ones(n_series)))
        assert all(keep <= len(s.samples(sid)[0]) <= keep + keep // 8 for sid in ids.tolist())
    # Lowering the bound takes effect at a series' next append.
    with open_store(tmp_path, samples_per_series=16) as s:
        s.append_samples(MetricBatch(ids[:1], np.array([10_001], np.int64), np.ones(1)))
        assert len(s.samples(int(ids[0]))[0]) == 16
        assert len(s.samples(int(ids[1]))[0]) > 16


def test_forward_appends_skip_the_replace_path_and_reopened_stores_still_replace(
    tmp_path: Path,
) -> None:
    """Appends newer than everything stored take a plain insert; an older or equal ts (also
    after a reopen, which reloads the newest ts per series) must still replace, not duplicate."""
    with open_store(tmp_path, samples_per_series=100) as s:
        s.append_samples(batch([1, 1, 2], [10, 20, 5], [1.0, 2.0, 3.0]))
        s.append_samples(batch([1, 2], [30, 6], [3.0, 4.0]))  # forward only
        s.append_samples(batch([1, 2], [20, 7], [9.0, 5.0]))  # 20 is stored: replaced
        assert s.samples(1)[0].tolist() == [10, 20, 30]
        assert s.samples(1)[1].tolist() == [1.0, 9.0, 3.0]
    with open_store(tmp_path, samples_per_series=100) as s:
        s.append_samples(batch([1, 2], [30, 8], [7.0, 6.0]))  # 30 is stored: replaced
        assert s.samples(1)[0].tolist() == [10, 20, 30]
        assert s.samples(1)[1].tolist() == [1.0, 9.0, 7.0]
        assert s.samples(2)[0].tolist() == [5, 6, 7, 8]


def test_incident_writes_do_not_wait_for_the_engine_and_never_conflict_with_it(
    tmp_path: Path,
) -> None:
    import threading

    from relia.notify.outbox import notifications_for
    from tests.store.test_incidents_store import incident

    st = DuckDBStore(tmp_path / "s.duckdb", samples_per_series=50)
    # While the engine's writer is busy (its lock held), incidents and the outbox still save.
    with st._write_lock:
        done = threading.Event()

        def save() -> None:
            st.save_incidents([incident(1)])
            st.enqueue_notifications(notifications_for(incident(1), ["log"], 0))
            done.set()

        threading.Thread(target=save, daemon=True).start()
        assert done.wait(10)
    # Both writers at once, many times: no transaction conflict, nothing lost.
    errors: list[BaseException] = []

    def engine() -> None:
        try:
            for k in range(60):
                st.append_samples(batch([1, 2], [k, k], [1.0, 2.0]))
                st.add_findings([finding(f"f{k}", k, k + 1)])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def incidents() -> None:
        try:
            for k in range(60):
                inc = incident(k % 7, version=k + 1)
                st.save_incidents([inc])
                st.enqueue_notifications(notifications_for(inc, ["log"], k))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=engine), threading.Thread(target=incidents)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(st.samples(1)[0]) == 50 and len(st.findings(limit=1000)) == 60
    assert len(st.incidents()) == 7 and st.incident("inc6") is not None
    assert st.outbox_counts()["log"]["pending"] == 1 + 60
    st.close()


def test_forgetting_after_a_restart_and_coming_back(tmp_path: Path) -> None:
    with open_store(tmp_path, samples_per_series=3) as s:
        s.upsert_series([(1, "cpu", {}), (2, "mem", {})], seen_at=10)
        s.append_samples(batch([1, 1, 1, 2], [5, 6, 7, 5], [1.0, 2.0, 3.0, 4.0]))
    with open_store(tmp_path, samples_per_series=3) as s:  # counts and newest ts read at open
        s.mark_series_seen({2: 20})
        assert s.forget_series(15) == 1
        s.upsert_series([(1, "cpu", {})], seen_at=30)
        s.append_samples(batch([1, 1], [1, 2], [10.0, 20.0]))  # older than what it had
        assert s.samples(1)[0].tolist() == [1, 2]
        assert [(i.series_id, i.n_samples) for i in s.list_series()] == [(1, 2), (2, 1)]
    with open_store(tmp_path, samples_per_series=3) as s:
        assert [(i.series_id, i.seen_at) for i in s.list_series()] == [(1, 30), (2, 20)]


def test_a_store_file_cut_short_is_one_store_error_naming_it(tmp_path: Path) -> None:
    # A copy cut short (a full disk): the file opens, the first full read fails.
    # Two sessions put the second's catalog early enough that half the file still opens.
    n = 100_000
    for sid in (1, 2):
        with open_store(tmp_path, samples_per_series=n) as s:
            s.upsert_series([(sid, "cpu", {})])
            s.append_samples(batch([sid] * n, list(range(n)), [float(i) for i in range(n)]))
    path = tmp_path / STORE_FILE
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)
    with pytest.raises(StoreError, match="cannot read the store") as info:
        open_store(tmp_path)
    assert str(path) in str(info.value)
    assert "looks damaged" in str(info.value)
    assert "\n" not in str(info.value)
