"""Persistent state: series index, recent samples, detector checkpoints, findings."""

from relia.store.base import SeriesInfo, Store
from relia.store.duckdb import DuckDBStore, open_store

__all__ = ["DuckDBStore", "SeriesInfo", "Store", "open_store"]
