"""What only the PostgreSQL store does: migrations recorded in the database (and applied once
when two processes open a fresh one), connection errors that name the store without its
password, readers beside a writer on separate connections, reconnecting after a restart."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest

from relia.errors import ConfigError, StoreError
from relia.signals import MetricBatch
from relia.store import PostgresStore, open_store_url
from relia.store.migrations import latest_version, load_migrations
from relia.store.postgres import packaged_migrations_dir, redact_dsn
from tests.pgserver import PostgresServer
from tests.store.backends import finding

pytestmark = pytest.mark.integration

PG_MIGRATIONS = load_migrations(packaged_migrations_dir())


def applied(dsn: str) -> list[tuple[int, str]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY 1").fetchall()
    return [(int(v), str(n)) for v, n in rows]


def test_the_packaged_migrations_mirror_duckdbs() -> None:
    duck = [(m.version, m.name) for m in load_migrations()]
    pg = [(m.version, m.name) for m in PG_MIGRATIONS]
    assert pg[: len(duck)] == duck  # the same steps, in PostgreSQL's dialect
    assert all("DuckDB" not in m.sql or "mirrors" in m.sql for m in PG_MIGRATIONS)


def test_migrations_are_recorded_and_not_reapplied(postgres_dsn: str) -> None:
    with PostgresStore(postgres_dsn) as s:
        assert s.schema_version == latest_version(PG_MIGRATIONS)
    want = [(m.version, m.name) for m in PG_MIGRATIONS]
    assert applied(postgres_dsn) == want
    with PostgresStore(postgres_dsn) as s:  # reopening applies nothing
        assert s.schema_version == latest_version(PG_MIGRATIONS)
    assert applied(postgres_dsn) == want


def test_upgrade_from_schema_1_keeps_samples_with_null_band(
    postgres_dsn: str, tmp_path: Path
) -> None:
    v1 = tmp_path / "v1"
    v1.mkdir()
    (v1 / "0001_initial.sql").write_text(PG_MIGRATIONS[0].sql)
    with PostgresStore(postgres_dsn, migrations_dir=v1) as s:
        assert s.schema_version == 1
        s.append_samples(MetricBatch.for_series(1, [1, 2], [1.0, 2.0]))
        assert np.isnan(s.scored_samples(1).expected).all()  # no band in schema 1
    with PostgresStore(postgres_dsn) as s:
        assert s.schema_version == latest_version(PG_MIGRATIONS)
        assert s.samples(1)[1].tolist() == [1.0, 2.0]
        assert np.isnan(s.scored_samples(1).score).all()
    assert applied(postgres_dsn)[1] == (2, "sample_band")


def test_upgrade_from_schema_9_gives_stored_series_the_migrations_time(
    postgres_dsn: str, tmp_path: Path
) -> None:
    v9 = tmp_path / "v9"
    v9.mkdir()
    for m in PG_MIGRATIONS[:9]:
        (v9 / f"{m.version:04d}_{m.name}.sql").write_text(m.sql)
    with PostgresStore(postgres_dsn, migrations_dir=v9) as s:
        assert s.schema_version == 9
        s.upsert_series([(1, "cpu", {"host": "a"}), (2, "mem", {})])
        s.append_samples(MetricBatch.for_series(1, [1, 2], [1.0, 2.0]))
        assert s.list_series()[0].seen_at is None
        assert s.forget_series(2**62) == 0
    before = time.time_ns() // 1_000_000
    with PostgresStore(postgres_dsn) as s:
        after = time.time_ns() // 1_000_000
        assert s.schema_version == latest_version(PG_MIGRATIONS) >= 10
        got = {i.series_id: i.seen_at for i in s.list_series()}
        assert got.keys() == {1, 2}
        # The server's clock (same host here; a second of slack for rounding).
        assert all(v is not None and before - 1000 <= v <= after + 1000 for v in got.values())
        assert s.forget_series(before - 1000) == 0
        assert s.samples(1)[1].tolist() == [1.0, 2.0]
    assert applied(postgres_dsn)[9] == (10, "series_seen_at")
    with psycopg.connect(postgres_dsn) as conn:
        nullable = conn.execute(
            "SELECT is_nullable FROM information_schema.columns "
            "WHERE table_name = 'series' AND column_name = 'seen_at'"
        ).fetchone()
    assert nullable == ("NO",)


def test_a_newer_schema_is_refused(postgres_dsn: str, tmp_path: Path) -> None:
    PostgresStore(postgres_dsn).close()
    older = tmp_path / "older"
    older.mkdir()
    (older / "0001_initial.sql").write_text(PG_MIGRATIONS[0].sql)
    with pytest.raises(StoreError, match="written by a newer relia"):
        PostgresStore(postgres_dsn, migrations_dir=older)


def test_a_failing_migration_is_rolled_back_whole(postgres_dsn: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "0001_initial.sql").write_text(PG_MIGRATIONS[0].sql)
    (bad / "0002_broken.sql").write_text("CREATE TABLE t2 (x int); SELECT * FROM nowhere;")
    with pytest.raises(StoreError, match="migration 0002_broken failed"):
        PostgresStore(postgres_dsn, migrations_dir=bad)
    assert applied(postgres_dsn) == [(1, "initial")]
    with psycopg.connect(postgres_dsn) as conn:  # its first statement went with it
        assert conn.execute("SELECT to_regclass('t2')").fetchone() == (None,)


def test_two_processes_opening_a_fresh_database_apply_each_migration_once(
    postgres_dsn: str,
) -> None:
    code = (
        "import sys; from relia.store.postgres import PostgresStore; "
        "s = PostgresStore(sys.argv[1]); print(s.schema_version); s.close()"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, postgres_dsn], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert outs == [str(latest_version(PG_MIGRATIONS))] * 3
    # The primary key on version would have failed a second insert; the lock kept it from
    # being tried: every step is there exactly once.
    assert applied(postgres_dsn) == [(m.version, m.name) for m in PG_MIGRATIONS]


# -- errors -----------------------------------------------------------------------------------


def test_redact_dsn_drops_the_password() -> None:
    assert redact_dsn("postgresql://u:s3cret@db.example:5433/relia?sslmode=require") == (
        "postgresql://u@db.example:5433/relia"
    )
    assert redact_dsn("host=h dbname=d user=u password=s3cret") == "postgresql://u@h/d"
    assert "s3cret" not in redact_dsn("not a dsn password=s3cret")


def test_server_down_is_a_store_error_naming_the_store(postgres_server: PostgresServer) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dsn = f"postgresql://relia:s3cret@127.0.0.1:{port}/relia"
    with pytest.raises(StoreError, match="cannot connect to the store") as info:
        PostgresStore(dsn, connect_timeout=2)
    msg = str(info.value)
    assert f"postgresql://relia@127.0.0.1:{port}/relia" in msg
    assert "s3cret" not in msg and "\n" not in msg


def test_unknown_database_and_bad_password_are_store_errors(
    postgres_server: PostgresServer,
) -> None:
    base = postgres_server.dsn().rsplit("/", 1)[0]
    with pytest.raises(StoreError, match='database "nope" does not exist') as info:
        PostgresStore(base.replace("postgres@", "postgres:s3cret@") + "/nope")
    assert "s3cret" not in str(info.value)
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS relia_pw")
        conn.execute("CREATE ROLE relia_pw LOGIN PASSWORD 'right'")
    # The fixture's cluster trusts every local user (initdb --auth=trust), so a wrong password
    # is not refused there; an unknown role is the authentication failure it can show.
    with pytest.raises(StoreError, match='role "ghost" does not exist') as info:
        PostgresStore(base.replace("postgres@", "ghost:s3cret@") + "/postgres")
    assert "s3cret" not in str(info.value) and "ghost@" in str(info.value)


def test_open_store_url_picks_the_backend(postgres_dsn: str, tmp_path: Path) -> None:
    with open_store_url(postgres_dsn, tmp_path / "unused") as s:
        assert isinstance(s, PostgresStore)
    assert not (tmp_path / "unused").exists()
    with open_store_url(postgres_dsn.replace("postgresql://", "postgres://"), tmp_path) as s:
        assert isinstance(s, PostgresStore)
    with open_store_url(None, tmp_path / "d") as s:
        assert type(s).__name__ == "DuckDBStore"
    with open_store_url(str(tmp_path / "elsewhere"), tmp_path / "d") as s:
        assert type(s).__name__ == "DuckDBStore"
    assert (tmp_path / "elsewhere" / "relia.duckdb").is_file()
    with pytest.raises(ConfigError, match="unsupported store 'mysql'"):
        open_store_url("mysql://u:pw@h/db", tmp_path)


# -- connections ------------------------------------------------------------------------------


def test_readers_do_not_wait_for_an_open_write(postgres_dsn: str) -> None:
    with PostgresStore(postgres_dsn, samples_per_series=10) as s:
        s.append_samples(MetricBatch.for_series(1, [1, 2], [1.0, 2.0]))
        s.save_checkpoints({1: b"a"})
        entered, release = threading.Event(), threading.Event()

        def slow_write(c: psycopg.Connection[object]) -> None:
            c.execute("UPDATE checkpoints SET blob = 'b'")
            entered.set()
            assert release.wait(10)

        writer = threading.Thread(target=s._write, args=("a slow write", slow_write))
        writer.start()
        try:
            assert entered.wait(10)
            # A read while the write holds its transaction open: it runs on its own connection
            # and sees only what was committed.
            assert s.load_checkpoints() == {1: b"a"}
            assert s.samples(1)[0].tolist() == [1, 2]
        finally:
            release.set()
            writer.join(10)
        assert s.load_checkpoints() == {1: b"b"}


def test_reconnects_after_the_server_restarts(
    postgres_server: PostgresServer, postgres_dsn: str
) -> None:
    with PostgresStore(postgres_dsn, samples_per_series=10) as s:
        s.append_samples(MetricBatch.for_series(1, [1, 2], [1.0, 2.0]))
        assert len(s.list_series()) == 0 and s.samples(1)[0].tolist() == [1, 2]
        postgres_server.stop()
        try:
            with pytest.raises(StoreError, match="cannot connect to the store"):
                s.samples(1)
            with pytest.raises(StoreError, match="cannot connect to the store"):
                s.append_samples(MetricBatch.for_series(1, [3], [3.0]))
        finally:
            postgres_server.start()
        # Both the writer and the idle readers were cut off; the next calls reconnect.
        s.append_samples(MetricBatch.for_series(1, [3], [3.0]))
        assert s.samples(1)[0].tolist() == [1, 2, 3]
        s.upsert_series([(1, "m", {})])
        assert s.list_series()[0].n_samples == 3


def test_a_dropped_connection_is_replaced_without_an_error(postgres_dsn: str) -> None:
    with PostgresStore(postgres_dsn, samples_per_series=10) as s:
        s.append_samples(MetricBatch.for_series(1, [1], [1.0]))
        assert s.samples(1)[0].tolist() == [1]
        # Kill every backend of this store (as a failover or an idle timeout would).
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        s.append_samples(MetricBatch.for_series(1, [2], [2.0]))  # retried on a new connection
        assert s.samples(1)[0].tolist() == [1, 2]


def test_steady_appends_keep_counts_exact(postgres_dsn: str) -> None:
    # sample_counts is what the trim relies on: it must match the rows after every kind of
    # write (new, replaced, older than kept, lowered bound on reopening).
    with PostgresStore(postgres_dsn, samples_per_series=4) as s:
        for r in range(6):
            s.append_samples(MetricBatch.for_series(7, [r, r + 1, r - 10], [1.0, 2.0, 3.0]))
    with PostgresStore(postgres_dsn, samples_per_series=2) as s:
        s.append_samples(MetricBatch.for_series(7, [100], [1.0]))
        assert s.samples(7)[0].tolist() == [6, 100]
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(
            "SELECT c.n, (SELECT count(*) FROM samples WHERE series_id = 7) "
            "FROM sample_counts AS c WHERE c.series_id = 7"
        ).fetchall()
    assert rows == [(2, 2)]


def test_whether_a_sink_heard_of_an_incident_is_an_index_lookup(postgres_dsn: str) -> None:
    # notified_incidents (a sink's min_severity) asks this of an outbox holding months of
    # delivered rows, which the pending-only partial indexes do not hold.
    with PostgresStore(postgres_dsn):
        pass
    with psycopg.connect(postgres_dsn) as conn:
        conn.execute("SET enable_seqscan = off")  # an empty table: make the planner show its hand
        plan = "\n".join(
            str(r[0])
            for r in conn.execute(
                "EXPLAIN SELECT DISTINCT sink, incident_id FROM outbox "
                "WHERE sink = ANY(%s) AND incident_id = ANY(%s)",
                [["pager"], ["i1", "i2"]],
            ).fetchall()
        )
    assert "outbox_incident_sink" in plan, plan


@pytest.mark.parametrize(
    ("extra", "idle"), [("", "30"), ("keepalives_idle=7", "7")], ids=["default", "dsn"]
)
def test_connections_probe_a_vanished_server_unless_the_dsn_says_otherwise(
    postgres_dsn: str, extra: str, idle: str
) -> None:
    # Without TCP keepalives and a send timeout, a server that vanished without closing the
    # connection (a failover, a network cut) would hold a store call for the kernel's defaults.
    dsn = f"{postgres_dsn}{'&' if '?' in postgres_dsn else '?'}{extra}" if extra else postgres_dsn
    with PostgresStore(dsn, samples_per_series=10) as s, s._connect() as conn:
        params = conn.info.get_parameters()
        assert params["keepalives"] == "1"
        assert params["keepalives_idle"] == idle
        assert params["tcp_user_timeout"] == "60000"


def test_the_incident_listing_a_finding_is_found_through_an_index(postgres_dsn: str) -> None:
    # The correlator asks it of a store holding a month of incidents: not a scan of them all.
    with PostgresStore(postgres_dsn) as s:
        assert s.incident_listing("f1") is None
    with psycopg.connect(postgres_dsn) as conn:
        conn.execute("SET enable_seqscan = off")  # an empty table: make the planner show its hand
        plan = "\n".join(
            str(r[0])
            for r in conn.execute(
                "EXPLAIN SELECT id FROM incidents WHERE finding_ids @> %s::jsonb",
                ['["f1"]'],
            ).fetchall()
        )
    assert "incidents_by_finding" in plan, plan


def _migrations_up_to(tmp_path: Path, version: int) -> Path:
    """A migrations directory holding the packaged PostgreSQL steps 1..``version``: what a relia
    of that schema knows."""
    d = tmp_path / f"v{version}"
    d.mkdir()
    for m in PG_MIGRATIONS[:version]:
        (d / f"{m.version:04d}_{m.name}.sql").write_text(m.sql)
    return d


def _write_as_relia_before_schema_11(dsn: str, fid: str, end: int) -> None:
    """Store (or replace) a finding as relia before schema 11 did: no stored_seq."""
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO findings (id, kind, key, series_id, start_ts, end_ts, score, severity, "
            "detector, summary, evidence, created_at, updated_at) VALUES (%s, 'metric', "
            "'cpu{}', 1, 0, %s, 0.75, 'warning', 'default', 'old replica finding', '{}', now(), "
            "now()) ON CONFLICT (id) DO UPDATE SET end_ts = excluded.end_ts, "
            "updated_at = excluded.updated_at",
            [fid, end],
        )


def test_findings_a_not_yet_upgraded_replica_writes_reach_the_leaders_feed(
    postgres_dsn: str, tmp_path: Path
) -> None:
    # Rolling upgrade: a replica still at schema 10 stored findings with a NULL stored_seq, and
    # replaced them without a new number. findings_after (stored_seq > n) never returned them,
    # so the leader made no incident and sent no notification for them.
    with PostgresStore(postgres_dsn, migrations_dir=_migrations_up_to(tmp_path, 12)) as s:
        s.add_findings([finding("new1", 0, 10)])
    _write_as_relia_before_schema_11(postgres_dsn, "old1", 10)  # stored between 11 and 13
    with PostgresStore(postgres_dsn) as s:  # this relia: numbers what it finds unnumbered
        assert s.schema_version == latest_version(PG_MIGRATIONS)
        assert [f.id for _, f in s.findings_after(0)] == ["new1", "old1"]
        seq = s.findings_seq()
        assert [n for n, _ in s.findings_after(0)] == [1, 2] and seq == 2
        _write_as_relia_before_schema_11(postgres_dsn, "old2", 20)  # after the migration
        got = s.findings_after(seq)
        assert [(f.id, f.end) for _, f in got] == [("old2", 20)]
        seq = got[-1][0]
        _write_as_relia_before_schema_11(postgres_dsn, "old1", 30)  # it grew: replaced
        got = s.findings_after(seq)
        assert [(f.id, f.end) for _, f in got] == [("old1", 30)]
        assert s.findings_seq() == got[-1][0]  # numbered from the one counter
        # This relia's own writes keep their numbers (the trigger leaves them alone).
        s.add_findings([finding("new1", 0, 40), finding("new2", 0, 40)])
        assert [(n - got[-1][0], f.id) for n, f in s.findings_after(got[-1][0])] == [
            (1, "new1"),
            (2, "new2"),
        ]
    with psycopg.connect(postgres_dsn) as conn:
        nulls = conn.execute("SELECT count(*) FROM findings WHERE stored_seq IS NULL").fetchone()
    assert nulls == (0,)


def test_a_replica_whose_store_a_newer_relia_migrated_stops_writing_with_one_line(
    postgres_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    older = PostgresStore(postgres_dsn, migrations_dir=_migrations_up_to(tmp_path, 12))
    try:
        older.add_findings([finding("a", 0, 10)])  # its own schema: writes
        PostgresStore(postgres_dsn).close()  # a newer replica migrates the shared store
        with caplog.at_level("ERROR", logger="relia.store.postgres"):
            for _ in range(3):
                with pytest.raises(StoreError, match="migrated by a newer relia") as info:
                    older.add_findings([finding("b", 0, 20)])
                with pytest.raises(StoreError, match="migrated by a newer relia"):
                    older.save_checkpoints({1: b"x"})
        message = str(info.value)
        assert f"schema {latest_version(PG_MIGRATIONS)} > 12" in message
        assert "stop it and upgrade it" in message and "\n" not in message
        assert [r.getMessage() for r in caplog.records] == [message]  # said once
        assert older.outdated == message  # the HA elector's health: it does not lead
        assert [f.id for f in older.findings()] == ["a"]  # reads still answer
        assert older.load_checkpoints() == {}
    finally:
        older.close()
