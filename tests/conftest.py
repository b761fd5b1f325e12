"""Fixtures shared by every test package: the real PostgreSQL server (``tests/pgserver.py``)."""

from tests.pgserver import postgres_dsn, postgres_server

__all__ = ["postgres_dsn", "postgres_server"]
