"""What only the DuckDB store does: files, directories, locks, reopening a file.

The store protocol itself is tested on every backend in test_store.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from relia.errors import StoreError
from relia.incidents.model import Finding, FindingKind, Severity
from relia.signals import MetricBatch
from relia.store import DuckDBStore, SeriesInfo, Store, open_store
from relia.store.duckdb import STORE_FILE
from relia.store.migrations import latest_version, load_migrations


def batch(sid: list[int], ts: list[int], value: list[float]) -> MetricBatch:
    return MetricBatch(np.array(sid, np.int64), np.array(ts, np.int64), np.array(value, np.float64))


def finding(fid: str, start: int, end: int, *, series_id: int | None = 1, **kw: Any) -> Finding:
    fields: dict[str, Any] = {
        "id": fid,
        "kind": FindingKind.METRIC,
        "key": 'cpu{host="a"}',
        "series_id": series_id,
        "start": start,
        "end": end,
        "score": 0.75,
        "severity": Severity.WARNING,
        "detector": "default",
        "summary": "cpu above its band",
        "evidence": {},
    }
    fields.update(kw)
    return Finding(**fields)


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
        s.upsert_series([(1, "cpu", {"host": "a"})])
        s.append_samples(batch([1, 1, 1, 1], [1, 2, 3, 4], [1.0, np.nan, 3.0, 4.0]))
        s.save_checkpoints({1: b"state-1", 2: b"state-2"})
        s.add_findings([finding("f", 1, 4, evidence=evidence)])
    with open_store(tmp_path, samples_per_series=3) as s:
        assert s.schema_version == version
        assert s.list_series() == [SeriesInfo(1, "cpu", {"host": "a"}, 2, 4, 3)]
        ts, value = s.samples(1)
        assert ts.tolist() == [2, 3, 4]
        np.testing.assert_array_equal(value, [np.nan, 3.0, 4.0])
        assert s.load_checkpoints() == {1: b"state-1", 2: b"state-2"}
        assert s.findings() == [finding("f", 1, 4, evidence=evidence)]
        # appending after a restart still replaces and trims
        s.append_samples(batch([1, 1], [4, 5], [40.0, 5.0]))
        assert s.samples(1)[1].tolist() == [3.0, 40.0, 5.0]
