"""Persistent state: series index, recent samples, detector checkpoints, findings."""

from relia.store.base import SeriesInfo, Store

__all__ = ["SeriesInfo", "Store"]
