"""The state store protocol: what the engine, API and CLI need from persistent state.

Two implementations share it: DuckDB in a local file (default, ``./relia-data/``) and, later,
PostgreSQL for several replicas. Schema changes are versioned migrations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from relia.incidents.model import Finding
from relia.signals import MetricBatch

__all__ = ["SeriesInfo", "Store"]


@dataclass(frozen=True)
class SeriesInfo:
    """A series known to the store."""

    series_id: int
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    first_ts: int | None = None
    last_ts: int | None = None
    n_samples: int = 0


@runtime_checkable
class Store(Protocol):
    """Persistent state of relia. All times are int64 ms UTC."""

    @property
    def schema_version(self) -> int:
        """The migration the schema is at."""
        ...

    def upsert_series(self, series: list[tuple[int, str, dict[str, str]]]) -> None:
        """Register series (id, metric name, labels); known ids are left as they are."""
        ...

    def list_series(self) -> list[SeriesInfo]:
        """Every known series with its sample range and count, ordered by name then labels."""
        ...

    def append_samples(self, batch: MetricBatch) -> None:
        """Add samples; keeps only the newest ``samples_per_series`` per series.

        A sample with the same (series, ts) as a stored one replaces it.
        """
        ...

    def samples(
        self,
        series_id: int,
        since: int | None = None,
        until: int | None = None,
        limit: int | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """(ts, value) of one series in time order, ``since <= ts <= until``; ``limit`` keeps
        the newest."""
        ...

    def save_checkpoints(self, checkpoints: dict[int, bytes]) -> None:
        """Store detector checkpoints by series id (replacing older ones), in one transaction."""
        ...

    def load_checkpoints(self) -> dict[int, bytes]:
        """Every stored detector checkpoint by series id."""
        ...

    def add_findings(self, findings: list[Finding]) -> int:
        """Persist findings; one with a known id replaces it (a window grew). Returns how many
        were new."""
        ...

    def findings(
        self,
        since: int | None = None,
        series_id: int | None = None,
        limit: int = 1000,
    ) -> list[Finding]:
        """Findings whose end is at or after ``since``, newest first."""
        ...

    def close(self) -> None: ...
