"""The PostgreSQL fixture itself: a real server, fresh databases, stop and start."""

from __future__ import annotations

import pytest

from tests.pgserver import PostgresServer

pytestmark = pytest.mark.integration


def test_fresh_database_is_empty_and_writable(postgres_dsn: str) -> None:
    import psycopg

    with psycopg.connect(postgres_dsn) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_server_restarts_on_the_same_port_with_its_data(postgres_server: PostgresServer) -> None:
    import psycopg

    dsn = postgres_server.create_database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (7)")
    port = postgres_server.port
    postgres_server.stop()
    assert not postgres_server.running
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=1)
    postgres_server.start()
    assert postgres_server.port == port
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT x FROM kept").fetchall() == [(7,)]
    postgres_server.drop_database(dsn)
