"""Incidents in the stores (DuckDB, PostgreSQL, the engine tests' in-memory fake): round trip,
upsert, filters; DuckDB: reopening the file, migration from schema 3."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from relia.errors import DataError
from relia.incidents.model import Finding, FindingKind, Incident, IncidentStatus, Severity
from relia.store import DuckDBStore
from relia.store.migrations import load_migrations
from tests.engine.memstore import MemoryStore
from tests.store.backends import BACKENDS, open_backend

T0 = 1_700_000_000_000


def incident(n: int, **update: object) -> Incident:
    inc = Incident(
        id=f"inc{n}",
        status=IncidentStatus.OPEN,
        title=f'cpu{{job="api"}} and {n} more on job=api',
        severity=Severity.WARNING,
        labels={"job": "api"},
        start=T0 + n,
        end=T0 + n + 60_000,
        opened_at=T0 + n,
        updated_at=T0 + 1000 * n,
        version=1,
        finding_ids=[f"f{n}a", f"f{n}b"],
        keys=['cpu{job="api"}', 'mem{job="api"}'],
        cause=[{"key": 'cpu{job="api"}', "score": 0.61, "reason": "went wrong first"}],
    )
    return inc.model_copy(update=update)


@pytest.fixture(params=[*BACKENDS, "memory"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    s = MemoryStore() if request.param == "memory" else open_backend(request, request.param, 2000)
    yield s
    s.close()


def test_round_trip_upsert_and_filters(store: Any) -> None:
    assert store.incidents() == [] and store.incident("nope") is None
    a, b, c = incident(1), incident(2), incident(3)
    store.save_incidents([a, b, c])
    assert store.incident("inc2") == b
    assert [i.id for i in store.incidents()] == ["inc3", "inc2", "inc1"]
    done = b.model_copy(
        update={
            "status": IncidentStatus.RESOLVED, "resolved_at": T0 + 9000, "updated_at": T0 + 9000,
            "version": 2, "merged_into": "inc1", "finding_ids": [],
        }
    )  # fmt: skip
    store.save_incidents([done])
    assert store.incident("inc2") == done
    assert [i.id for i in store.incidents()] == ["inc2", "inc3", "inc1"]
    assert [i.id for i in store.incidents(status=IncidentStatus.OPEN)] == ["inc3", "inc1"]
    assert store.incidents(status=IncidentStatus.RESOLVED) == [done]
    assert [i.id for i in store.incidents(since=T0 + 2000)] == ["inc2", "inc3"]
    assert [i.id for i in store.incidents(limit=1)] == ["inc2"]
    assert store.incidents(since=T0 + 2000, status=IncidentStatus.OPEN) == [c]


@pytest.mark.parametrize("backend", BACKENDS)
def test_stores_reject_what_is_not_an_incident(
    request: pytest.FixtureRequest, backend: str
) -> None:
    with open_backend(request, backend, 2000) as s:
        with pytest.raises(DataError, match=r"incidents\[1\]: expected an Incident"):
            s.save_incidents([incident(1), "x"])
        assert s.incidents() == []  # nothing of the batch was written
        s.save_incidents([])


def test_cause_with_nan_scores_round_trips(store: Any) -> None:
    # cause is JSON text, not JSONB, because of this: Python writes NaN, JSONB refuses it.
    inc = incident(1, cause=[{"key": "cpu", "score": float("nan"), "reason": "?"}])
    store.save_incidents([inc])
    back = store.incident("inc1")
    assert back is not None and back.cause[0]["score"] != back.cause[0]["score"]


def test_incidents_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "relia.duckdb"
    with DuckDBStore(path) as s:
        s.save_incidents([incident(1), incident(2)])
    with DuckDBStore(path) as s:
        assert s.incident("inc1") == incident(1)
        assert len(s.incidents()) == 2


def test_migration_from_a_schema_3_store_keeps_its_findings(tmp_path: Path) -> None:
    old = tmp_path / "v3"
    old.mkdir()
    for m in load_migrations()[:3]:
        (old / f"{m.version:04d}_{m.name}.sql").write_text(m.sql)
    path = tmp_path / "relia.duckdb"
    f = Finding(
        id="f1", kind=FindingKind.METRIC, key="cpu", start=T0, end=T0, score=0.7,
        severity=Severity.WARNING, detector="t", summary="s",
    )  # fmt: skip
    with DuckDBStore(path, migrations_dir=old) as s:
        assert s.schema_version == 3
        s.add_findings([f])
    with duckdb.connect(str(path)) as conn:
        tables = {r[0] for r in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert "incidents" not in tables
    with DuckDBStore(path) as s:
        assert s.schema_version >= 4
        assert s.findings() == [f]
        s.save_incidents([incident(1)])
        assert s.incidents() == [incident(1)]
    with duckdb.connect(str(path)) as conn:
        names = conn.execute("SELECT version, name FROM schema_migrations ORDER BY 1").fetchall()
    assert (4, "incidents") in names


def test_since_includes_an_incident_updated_exactly_then(store: Any) -> None:
    store.save_incidents([incident(1), incident(2), incident(3)])
    assert [i.id for i in store.incidents(since=T0 + 2000)] == ["inc3", "inc2"]
    assert [i.id for i in store.incidents(since=T0 + 2001)] == ["inc3"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_incidents_updated_at_the_same_time_are_listed_by_id(
    request: pytest.FixtureRequest, backend: str
) -> None:
    # The in-memory fake of the engine tests orders such ties the other way (id descending).
    same = [incident(n, updated_at=T0) for n in (2, 3, 1)]
    with open_backend(request, backend, 2000) as s:
        s.save_incidents(same)
        assert [i.id for i in s.incidents()] == ["inc1", "inc2", "inc3"]
        assert [i.id for i in s.incidents(limit=2)] == ["inc1", "inc2"]


@pytest.mark.parametrize("backend", [*BACKENDS, "memory"])
def test_incidents_page_on_after_a_key_in_their_order(
    request: pytest.FixtureRequest, backend: str
) -> None:
    s = MemoryStore() if backend == "memory" else open_backend(request, backend, 2000)
    try:
        s.save_incidents([incident(n, updated_at=T0 + 1000 * (n // 2)) for n in range(7)])
        order = [i.id for i in s.incidents()]
        assert order == ["inc6", "inc4", "inc5", "inc2", "inc3", "inc0", "inc1"]
        for n, inc in enumerate(s.incidents()):
            after = s.incidents(before=(inc.updated_at, inc.id))
            assert [i.id for i in after] == order[n + 1 :]
        page = s.incidents(status=IncidentStatus.OPEN, limit=2, before=(T0 + 2000, "inc4"))
        assert [i.id for i in page] == ["inc5", "inc2"]
    finally:
        s.close()


def test_finding_count_round_trips(store: Any) -> None:
    # An incident keeps the newest findings of each key; finding_count counts them all.
    inc = incident(1, finding_count=1_134)
    store.save_incidents([inc])
    back = store.incident("inc1")
    assert back == inc and back is not None and back.finding_count == 1_134
    assert incident(2).finding_count == 2  # built without it: its finding_ids


def _stored_finding(fid: str, end: int) -> Finding:
    return Finding(
        id=fid, kind=FindingKind.METRIC, key="cpu", start=end, end=end, score=0.7,
        severity=Severity.WARNING, detector="t", summary="s",
    )  # fmt: skip


def test_findings_without_incident_are_those_no_stored_incident_lists(store: Any) -> None:
    # What a restart correlates again: whatever the correlator had loaded, a finding listed by
    # any stored incident (open, resolved or merged away, however old) is not an orphan.
    fs = [_stored_finding(fid, T0 + n) for n, fid in enumerate(["f1a", "f2b", "lone", "old"])]
    fs[-1] = _stored_finding("old", T0 - 10)
    store.add_findings(fs)
    store.save_incidents([incident(1), incident(2, status=IncidentStatus.RESOLVED)])
    assert [f.id for f in store.findings_without_incident(T0)] == ["lone"]
    assert [f.id for f in store.findings_without_incident(T0 - 10)] == ["lone", "old"]
    assert [f.id for f in store.findings_without_incident(T0 - 10, limit=1)] == ["lone"]
    store.save_incidents([incident(3, finding_ids=["lone"])])
    assert [f.id for f in store.findings_without_incident(T0 - 10)] == ["old"]


def test_incident_listing_is_the_one_whose_finding_ids_list_the_finding(store: Any) -> None:
    # What the correlator recalls for a forgotten incident's finding that grows again: by an
    # exact id in the list, not a part of one; a merged-away incident lists none.
    assert store.incident_listing("f1a") is None
    a = incident(1, finding_ids=["f1a", "f1b"])
    b = incident(2, finding_ids=["f2a", 'odd "id", \\ é'], status=IncidentStatus.RESOLVED)
    gone = incident(3, finding_ids=[], merged_into="inc1", status=IncidentStatus.RESOLVED)
    store.save_incidents([a, b, gone])
    assert store.incident_listing("f1b") == a
    assert store.incident_listing("f2a") == b
    assert store.incident_listing('odd "id", \\ é') == b
    for absent in ("f1", "1a", "f1a, f1b", '"f1a"', "inc1", "", "%", "f_a"):
        assert store.incident_listing(absent) is None, absent
    # Moved by a save (a merge): it is listed by the incident that lists it now.
    store.save_incidents([a.model_copy(update={"finding_ids": ["f1b"], "version": 2})])
    store.save_incidents([b.model_copy(update={"finding_ids": ["f2a", "f1a"], "version": 2})])
    assert store.incident_listing("f1a") == store.incident("inc2")
    assert store.incident_listing("f1b") == store.incident("inc1")
    # Listed by two (stored by an older relia): the most recently updated, then by id.
    twice = [
        incident(4, finding_ids=["dup"], updated_at=T0 + 50_000),
        incident(5, finding_ids=["x", "dup"], updated_at=T0 + 60_000),
        incident(6, finding_ids=["dup"], updated_at=T0 + 60_000),
    ]
    store.save_incidents(twice)
    listing = store.incident_listing("dup")
    assert listing is not None and listing.id == "inc5"


def _written_before_finding_count(migrations_dir: Path) -> None:
    """Write the migrations up to schema 7 (before incidents had finding_count) to a folder."""
    migrations_dir.mkdir()
    for m in load_migrations()[:7]:
        (migrations_dir / f"{m.version:04d}_{m.name}.sql").write_text(m.sql)


def test_an_incident_stored_before_finding_count_reads_as_its_finding_ids(tmp_path: Path) -> None:
    old = tmp_path / "v7"
    _written_before_finding_count(old)
    path = tmp_path / "relia.duckdb"
    with DuckDBStore(path, migrations_dir=old) as s:
        assert s.schema_version == 7
    with duckdb.connect(str(path)) as conn:  # a row as a relia of schema 7 wrote it
        conn.execute(
            "INSERT INTO incidents VALUES ('inc1', 'open', 't', 'warning', '{}', 1, 2, 1, 2, NULL,"
            ' 1, \'["f1", "f2", "f3"]\', \'["cpu"]\', \'[]\', NULL)'
        )
    with DuckDBStore(path) as s:
        assert s.schema_version >= 8
        back = s.incident("inc1")
        assert back is not None and back.finding_count == 3
        s.save_incidents([back.model_copy(update={"finding_count": 40, "finding_ids": ["f3"]})])
        again = s.incident("inc1")
        assert again is not None and (again.finding_count, again.finding_ids) == (40, ["f3"])


@pytest.mark.integration
def test_a_postgresql_incident_stored_before_finding_count_reads_as_its_finding_ids(
    postgres_dsn: str, tmp_path: Path
) -> None:
    import psycopg

    from relia.store.postgres import PostgresStore, packaged_migrations_dir

    old = tmp_path / "v7"
    old.mkdir()
    for m in load_migrations(packaged_migrations_dir())[:7]:
        (old / f"{m.version:04d}_{m.name}.sql").write_text(m.sql)
    with PostgresStore(postgres_dsn, migrations_dir=old) as s:
        assert s.schema_version == 7
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO incidents VALUES ('inc1', 'open', 't', 'warning', '{}', 1, 2, 1, 2, NULL,"
            ' 1, \'["f1", "f2", "f3"]\', \'["cpu"]\', \'[]\', NULL)'
        )
    with PostgresStore(postgres_dsn) as s:
        assert s.schema_version >= 8
        back = s.incident("inc1")
        assert back is not None and back.finding_count == 3
