"""The executor interface: where per-series detector state lives and batches get scored.

The engine hands an executor a :class:`~relia.signals.MetricBatch` and gets back one row per
scored point as parallel arrays (:class:`ScoredPoints`). The executor owns the detector of every
series, sharded by ``series_id % n_shards`` (ids are hashes, so this spreads evenly). Everything
crossing the interface is arrays, ints and bytes, never shared mutable objects, so a shard can live
in another process (a Ray actor per shard implements the same protocol).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from relia.signals import MetricBatch

__all__ = ["Executor", "ScoredPoints", "shard_of"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def shard_of(series_id: npt.ArrayLike, n_shards: int) -> IntArray:
    """The shard owning each series id (``series_id % n_shards``)."""
    return np.asarray(np.asarray(series_id, dtype=np.int64) % n_shards, dtype=np.int64)


@dataclass(frozen=True)
class ScoredPoints:
    """Per-point detector output as parallel arrays, grouped by series and in time order within
    a series.

    ``component`` indexes the executor's ``components`` names (-1: nothing fired). ``expected``,
    ``lower`` and ``upper`` are NaN while a series' model warms up. ``dropped`` counts input
    points skipped because they were not newer than what the series had already seen.
    """

    series_id: IntArray
    ts: IntArray
    value: FloatArray
    score: FloatArray
    expected: FloatArray
    lower: FloatArray
    upper: FloatArray
    component: npt.NDArray[np.int8]
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def empty(cls, dropped: int = 0) -> ScoredPoints:
        f = np.empty(0, np.float64)
        i = np.empty(0, np.int64)
        return cls(
            i, i.copy(), f, f.copy(), f.copy(), f.copy(), f.copy(), np.empty(0, np.int8), dropped
        )

    @classmethod
    def concat(cls, parts: list[ScoredPoints]) -> ScoredPoints:
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(
            np.concatenate([p.series_id for p in parts]),
            np.concatenate([p.ts for p in parts]),
            np.concatenate([p.value for p in parts]),
            np.concatenate([p.score for p in parts]),
            np.concatenate([p.expected for p in parts]),
            np.concatenate([p.lower for p in parts]),
            np.concatenate([p.upper for p in parts]),
            np.concatenate([p.component for p in parts]),
            sum(p.dropped for p in parts),
        )

    def take(self, mask_or_index: npt.NDArray[np.bool_] | IntArray) -> ScoredPoints:
        """The rows selected by a boolean mask or index array (``dropped`` is kept)."""
        m = mask_or_index
        return ScoredPoints(
            self.series_id[m],
            self.ts[m],
            self.value[m],
            self.score[m],
            self.expected[m],
            self.lower[m],
            self.upper[m],
            self.component[m],
            self.dropped,
        )


@runtime_checkable
class Executor(Protocol):
    """Runs the streaming detectors of every series.

    ``process`` scores a batch (each series' points in time order through its detector, then
    learned). ``checkpoints`` returns detector state as bytes per series
    (``changed_only``: only series whose state moved since the last call with it set);
    ``restore`` loads such bytes back, returning how many series it restored; ``forget`` drops
    the state of series gone idle.
    """

    detector_name: str
    n_shards: int

    @property
    def components(self) -> tuple[str, ...]:
        """Names of the detector parts that can fire, indexed by ``ScoredPoints.component``."""
        ...

    def process(self, batch: MetricBatch) -> ScoredPoints: ...

    def checkpoints(self, changed_only: bool = False) -> dict[int, bytes]: ...

    def restore(self, checkpoints: dict[int, bytes]) -> int: ...

    def forget(self, series_ids: Collection[int]) -> int:
        """Drop the detector state of these series (ids it holds no state for are ignored);
        returns how many it held. Their state is not handed out by ``checkpoints`` afterwards,
        and a forgotten series that sends again starts afresh, exactly like a never-seen one."""
        ...

    def n_series(self) -> int: ...

    def close(self) -> None: ...
