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

__all__ = ["SampleScores", "ScoredSamples", "SeriesInfo", "Store"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class SeriesInfo:
    """A series known to the store."""

    series_id: int
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    first_ts: int | None = None
    last_ts: int | None = None
    n_samples: int = 0


class SampleScores(Protocol):
    """What a detector said about samples, as parallel arrays: ``score``, and ``expected``,
    ``lower`` and ``upper`` (NaN while warming up). The engine's ``ScoredPoints`` is one."""

    @property
    def series_id(self) -> IntArray: ...

    @property
    def ts(self) -> IntArray: ...

    @property
    def score(self) -> FloatArray: ...

    @property
    def expected(self) -> FloatArray: ...

    @property
    def lower(self) -> FloatArray: ...

    @property
    def upper(self) -> FloatArray: ...


@dataclass(frozen=True)
class ScoredSamples:
    """Stored samples of one series in time order, with what the detector said about each.

    ``score``, ``expected``, ``lower`` and ``upper`` are NaN where there is none (the detector was
    warming up, the sample was stored without scores, or the store's schema predates them).
    """

    ts: IntArray
    value: FloatArray
    score: FloatArray
    expected: FloatArray
    lower: FloatArray
    upper: FloatArray

    def __len__(self) -> int:
        return len(self.ts)


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

    def append_samples(self, batch: MetricBatch, scores: SampleScores | None = None) -> None:
        """Add samples; keeps only the newest ``samples_per_series`` per series.

        A sample with the same (series, ts) as a stored one replaces it. ``scores`` (matched to
        the samples by series and ts; samples it lacks get none) stores the detector's score,
        expected value and band beside each sample; a replaced sample that ``scores`` lacks keeps
        the ones it had.
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

    def scored_samples(
        self,
        series_id: int,
        since: int | None = None,
        until: int | None = None,
        limit: int | None = None,
    ) -> ScoredSamples:
        """Like :meth:`samples`, with each sample's score, expected value and band."""
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
