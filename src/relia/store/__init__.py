"""Persistent state: series index, recent samples, detector checkpoints, findings.

Two stores share one protocol: :class:`DuckDBStore` (embedded, the default) and
:class:`~relia.store.postgres.PostgresStore` (shared by replicas; imported on first use, so that
importing :mod:`relia.store` does not import psycopg). :func:`open_store_url` picks one from the
``store`` setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from relia._urls import looks_like_conninfo
from relia.errors import ConfigError
from relia.store.base import SeriesInfo, Store
from relia.store.duckdb import DuckDBStore, open_store

if TYPE_CHECKING:
    from relia.store.postgres import PostgresStore

__all__ = ["DuckDBStore", "PostgresStore", "SeriesInfo", "Store", "open_store", "open_store_url"]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_store_url(
    store: str | None, data_dir: str | Path, samples_per_series: int = 2000
) -> DuckDBStore | PostgresStore:
    """The store the ``store`` setting names: a ``postgresql://`` (or ``postgres://``) URL opens
    the PostgreSQL store; unset opens the DuckDB store of ``data_dir``, a directory the DuckDB
    store there."""
    if store is not None and store.strip().lower().startswith(_POSTGRES_SCHEMES):
        from relia.store.postgres import PostgresStore

        scheme, sep, rest = store.strip().partition("://")
        # libpq takes the scheme in lower case only.
        return PostgresStore(f"{scheme.lower()}{sep}{rest}", samples_per_series)
    if store is not None and "://" in store:
        scheme = store.partition("://")[0]
        raise ConfigError(
            f"unsupported store {scheme!r}: use a directory or postgresql://…", where="store"
        )
    if store is not None and looks_like_conninfo(store):
        # Not a directory: else a DuckDB store would be made in one named after it.
        raise ConfigError(
            "a keyword/value connection string (host=… dbname=…) is not supported here: "
            "write the store as postgresql://user@host:port/dbname",
            where="store",
        )
    return open_store(Path(store) if store else Path(data_dir), samples_per_series)


def __getattr__(name: str) -> Any:
    # PostgresStore on first use: psycopg is only needed by those who choose PostgreSQL.
    if name == "PostgresStore":
        from relia.store.postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
