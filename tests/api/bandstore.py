"""The in-memory test store with the per-sample band of schema 2 (score, expected, lower, upper).

tests/engine/memstore.py predates the band; this adds it, so API tests run against both stores.
"""

from __future__ import annotations

import numpy as np

from relia.signals import MetricBatch
from relia.store.base import SampleScores, ScoredSamples
from tests.engine.memstore import MemoryStore

_NONE = (np.nan, np.nan, np.nan, np.nan)


class BandMemoryStore(MemoryStore):
    def __init__(self, samples_per_series: int = 2000) -> None:
        super().__init__(samples_per_series)
        self._band: dict[tuple[int, int], tuple[float, float, float, float]] = {}

    @property
    def schema_version(self) -> int:
        return 2

    def append_samples(self, batch: MetricBatch, scores: SampleScores | None = None) -> None:
        super().append_samples(batch)
        if scores is None:
            return
        cols = (scores.score, scores.expected, scores.lower, scores.upper)
        for sid, ts, *band in zip(
            scores.series_id.tolist(), scores.ts.tolist(), *(c.tolist() for c in cols), strict=True
        ):
            self._band[(sid, ts)] = (band[0], band[1], band[2], band[3])

    def scored_samples(
        self,
        series_id: int,
        since: int | None = None,
        until: int | None = None,
        limit: int | None = None,
    ) -> ScoredSamples:
        ts, value = self.samples(series_id, since, until, limit)
        band = np.array([self._band.get((series_id, t), _NONE) for t in ts.tolist()], np.float64)
        band = band.reshape(len(ts), 4)
        return ScoredSamples(ts, value, *(np.ascontiguousarray(band[:, j]) for j in range(4)))
