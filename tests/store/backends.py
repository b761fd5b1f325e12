"""The store backends the backend-neutral store tests run against.

``duckdb``: an in-memory DuckDB store. ``postgresql``: a :class:`PostgresStore` on a fresh
database of the real server from the ``postgres_server`` fixture (marked ``integration``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from relia.incidents.model import Finding, FindingKind, Severity
from relia.signals import MetricBatch
from relia.store import DuckDBStore, Store

__all__ = ["BACKENDS", "open_backend", "reopen_empty", "wipe"]

BACKENDS = ["duckdb", pytest.param("postgresql", marks=pytest.mark.integration)]

# Every table a store writes (wipe() empties them between property-test examples).
_TABLES = (
    "series, samples, sample_counts, checkpoints, findings, log_state, log_counts, incidents, "
    "outbox"
)


def open_backend(request: pytest.FixtureRequest, backend: str, samples_per_series: int) -> Any:
    """A fresh, empty store of ``backend`` (the caller closes it)."""
    if backend == "duckdb":
        return DuckDBStore(":memory:", samples_per_series=samples_per_series)
    if backend == "postgresql":
        from relia.store.postgres import PostgresStore

        dsn = request.getfixturevalue("postgres_dsn")
        return PostgresStore(dsn, samples_per_series=samples_per_series)
    raise ValueError(backend)


def reopen_empty(store: Store, samples_per_series: int) -> Any:
    """An empty store of the same backend as ``store`` (closed by the caller), reusing its
    database for PostgreSQL (a new database per hypothesis example would be slow)."""
    if isinstance(store, DuckDBStore):
        return DuckDBStore(":memory:", samples_per_series=samples_per_series)
    from relia.store.postgres import PostgresStore

    assert isinstance(store, PostgresStore)
    wipe(store)
    return PostgresStore(store._dsn, samples_per_series=samples_per_series)


def wipe(store: Any) -> None:
    """Empty every table of a PostgreSQL store."""
    import psycopg

    with psycopg.connect(store._dsn, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {_TABLES}")


def batch(sid: list[int], ts: list[int], value: list[float]) -> MetricBatch:
    """A batch from plain lists."""
    return MetricBatch(np.array(sid, np.int64), np.array(ts, np.int64), np.array(value, np.float64))


def finding(fid: str, start: int, end: int, *, series_id: int | None = 1, **kw: Any) -> Finding:
    """A metric finding with test defaults; ``kw`` overrides any field."""
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
